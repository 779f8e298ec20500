"""``reid part-masks``: PAW-ViT's pseudo part masks for a segmented manifest, with Ray Data."""

from __future__ import annotations

import argparse
import json

from reid_core.cli.options import Parser, UsageError, add_options
from reid_core.parts.mapping import DEFAULT_MAPPING
from reid_core.parts.render import DEFAULT_SIZE, MIN_VISIBILITY
from reid_core.pipelines.part_masks import KEYPOINT_COLUMN, PartMaskJob, PartMaskReport, run
from reid_core.settings import Settings


def build_parser(settings: Settings) -> Parser:
    parser = Parser(
        prog="reid part-masks",
        description="Make PAW-ViT's pseudo part masks (64x64 label maps) from keypoints and the foreground "
                    "masks of a segmented manifest, with Ray Data; resumable: a rerun skips finished rows.")
    add_options(parser, settings, "manifest", manifest={"required": True, "default": None,
                "help": "a segmented manifest (mask_uri; local path or s3:// URI), e.g. "
                             "segmented-sam-isnet/manifest.parquet"})
    parser.add_argument("--keypoints", action="append", metavar="FILE|COLUMN",
                        help="ATRW's reid_keypoints_*.json or a COCO keypoint file (repeatable: train and test), "
                             "matched to rows by the image file name; or a manifest column of flat [x, y, v, ...] "
                             f"lists (default: the '{KEYPOINT_COLUMN}' column the ATRW adapter writes)")
    parser.add_argument("--mapping", default=DEFAULT_MAPPING,
                        help="keypoint name -> part, skeleton and tail: a shipped mapping (atrw) or a JSON file")
    parser.add_argument("--scheme", default=None,
                        help="the part scheme to check the mapping against (tiger, yak, elephant; default: each "
                             "row's species); masks are written in the full vocabulary either way")
    parser.add_argument("--output", default=None,
                        help="folder or s3:// prefix for the label maps and the updated manifest "
                             "(default: parts-<mapping> next to the manifest)")
    add_options(parser, settings, "species", species={"help": "comma-separated species to process (default: all)"})
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help="label map side in pixels (PAW-ViT: 64)")
    parser.add_argument("--min-visibility", type=float, default=MIN_VISIBILITY,
                        help="a keypoint is used when its v (flag or score) is above this")
    parser.add_argument("--actors", type=int, default=1, help="Ray Data actors")
    parser.add_argument("--batch-size", type=int, default=32, help="rows per actor call")
    parser.add_argument("--dry-run", action="store_true", help="print what would be done and stop")
    add_options(parser, settings, "verbose", verbose={"help": "full tracebacks and Ray's and Ray Data's own output"})
    return parser


def job_from_args(args: argparse.Namespace) -> PartMaskJob:
    for flag, value in (("--actors", args.actors), ("--batch-size", args.batch_size)):
        if value < 1:
            raise UsageError(f"{flag} must be >= 1, got {value}")
    species = tuple(s.strip() for s in (args.species or "").split(",") if s.strip())
    return PartMaskJob(manifest=args.manifest, output=args.output, keypoints=tuple(args.keypoints or ()),
                       mapping=args.mapping, scheme=args.scheme, species=species, size=args.size,
                       min_visibility=args.min_visibility, actors=args.actors, batch_size=args.batch_size)


def format_report(report: PartMaskReport) -> str:
    from reid_core.reports.stage_report import stage_report_text

    return stage_report_text(report)


def main(argv: list[str]) -> int:
    settings = Settings.from_env()
    args = build_parser(settings).parse_args(argv)
    from reid_core.pipelines import console

    console.configure(args.verbose)
    job = job_from_args(args)
    # Bad input (ValueError, FileNotFoundError) names the file and the fix: run_command prints it as one line.
    report = run(job, settings=settings, dry_run=args.dry_run, verbose=args.verbose)
    print("\n" + format_report(report))
    print(json.dumps({"summary": report.to_dict()}, default=str))
    return 0
