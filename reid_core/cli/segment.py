"""``reid segment``: remove the backgrounds of a manifest's images with Ray Data (resumable)."""

from __future__ import annotations

import argparse
import json

from reid_core.cli.options import Parser, UsageError, add_options, check_method
from reid_core.pipelines.segment import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_METHOD,
    SegmentJob,
    SegmentReport,
    check_options,
    run,
)
from reid_core.segmentation.masking import MaskingConfig
from reid_core.settings import Settings


def _parse_fill(text: str) -> tuple[int, int, int]:
    values = [int(v) for v in text.split(",")]
    if len(values) == 1:
        values *= 3
    if len(values) != 3 or not all(0 <= v <= 255 for v in values):
        raise argparse.ArgumentTypeError(f"--fill expects R,G,B (0-255) or one grey level, got {text!r}")
    return tuple(values)


def build_parser(settings: Settings) -> Parser:
    parser = Parser(
        prog="reid segment",
        description="Remove backgrounds from every image of a manifest with Ray Data; resumable: a rerun "
                    "skips finished rows and finishes what a killed run left.")
    add_options(parser, settings, "manifest")
    parser.add_argument("--output", default=None,
                        help="folder or s3:// prefix for masks, masked images and the updated manifest "
                             "(default: segmented-<method> next to the manifest)")
    parser.add_argument("--method", default=DEFAULT_METHOD,
                        help="segmenter name (e.g. sam+isnet, reference) or package.module:builder")
    parser.add_argument("--set", dest="options", action="append", metavar="KEY=VALUE",
                        help="segmenter option, e.g. --set points_per_side=16 (repeatable)")
    add_options(parser, settings, "species", species={"help": "comma-separated species to process (default: all)"})
    parser.add_argument("--limit", type=int, default=None, help="process at most N rows in this run")
    parser.add_argument("--dry-run", action="store_true", help="print what would be done and stop")
    parser.add_argument("--actors", type=int, default=1, help="segmenter actors (one model each)")
    parser.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per actor; 0.5 puts two actors on a GPU")
    parser.add_argument("--num-cpus", type=float, default=1.0, help="CPUs per actor")
    parser.add_argument("--batch-size", type=int, default=8, help="rows per actor call")
    parser.add_argument("--io-threads", type=int, default=4, help="read/write threads per actor")
    parser.add_argument("--fill", type=_parse_fill, default=(255, 255, 255), help="background colour R,G,B")
    parser.add_argument("--crop", action=argparse.BooleanOptionalAction, default=False,
                        help="crop masked images to the animal (with a margin)")
    parser.add_argument("--crop-margin", type=float, default=MaskingConfig.crop_margin)
    parser.add_argument("--masked-format", choices=("png", "jpg"), default="png")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help="refuse images with more pixels (decompression bombs, panoramas)")
    parser.add_argument("--no-quality", dest="quality", action="store_false",
                        help="skip the IoU against reference masks (ref_mask_uri)")
    add_options(parser, settings, "verbose", verbose={"help": "full tracebacks and Ray's and Ray Data's own output"})
    return parser


def job_from_args(args: argparse.Namespace) -> SegmentJob:
    from reid_core.cli.options import parse_assignments

    for flag, value, low in (("--actors", args.actors, 1), ("--batch-size", args.batch_size, 1),
                             ("--io-threads", args.io_threads, 1)):
        if value < low:
            raise UsageError(f"{flag} must be >= {low}, got {value}")
    if args.num_gpus < 0 or args.num_cpus < 0 or (args.limit is not None and args.limit < 0):
        raise UsageError("--num-gpus, --num-cpus and --limit must not be negative")
    species = tuple(s.strip() for s in (args.species or "").split(",") if s.strip())
    return SegmentJob(
        manifest=args.manifest, output=args.output, method=args.method,
        options=parse_assignments(args.options, "--set"),
        masking=MaskingConfig(fill=args.fill, crop=args.crop, crop_margin=args.crop_margin),
        species=species, limit=args.limit, actors=args.actors, batch_size=args.batch_size,
        num_gpus=args.num_gpus, num_cpus=args.num_cpus, io_threads=args.io_threads, max_pixels=args.max_pixels,
        masked_format=args.masked_format, quality=args.quality)


def format_report(report: SegmentReport) -> str:
    from reid_core.reports.stage_report import rounded, stage_report_text

    converted = ["converted: " + ", ".join(f"{k} {v}" for k, v in report.converted.items())] if report.converted else []
    return stage_report_text(report, {"IoU vs ref": rounded(report.iou_mean, 3)}, converted)


def main(argv: list[str]) -> int:
    settings = Settings.from_env()
    args = build_parser(settings).parse_args(argv)
    from reid_core.pipelines import console

    console.configure(args.verbose)
    job = job_from_args(args)
    from reid_core.segmentation.registry import names

    check_method(job.method, names())
    check_options(job.method, job.options)  # a ValueError naming the option: a usage error
    report = run(job, settings=settings, dry_run=args.dry_run, verbose=args.verbose)
    print("\n" + format_report(report))
    print(json.dumps({"summary": report.to_dict()}, default=str))
    return 0
