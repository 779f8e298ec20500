"""``reid detect``: find every animal in a manifest's whole photos with Ray Data and crop each into its
own manifest row (resumable)."""

from __future__ import annotations

import argparse
import json

from reid_core.cli.options import Parser, UsageError, add_options, check_method
from reid_core.pipelines.detect import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_METHOD,
    DEFAULT_THRESHOLD,
    DetectJob,
    DetectReport,
    check_options,
    run,
)
from reid_core.settings import Settings


def build_parser(settings: Settings) -> Parser:
    parser = Parser(
        prog="reid detect",
        description="Detect the animals in every photo of a manifest with Ray Data and crop each into its own "
                    "row (<output>/manifest.parquet: the input of segment, train and identify); every photo is "
                    "kept in <output>/photos.parquet, empty ones counted. Resumable: a rerun skips finished photos.")
    add_options(parser, settings, "manifest")
    parser.add_argument("--output", default=None,
                        help="folder or s3:// prefix for crops, detections and manifests "
                             "(default: detected-<method> next to the manifest)")
    parser.add_argument("--method", default=DEFAULT_METHOD,
                        help="detector name (megadetector, reference) or package.module:builder")
    parser.add_argument("--set", dest="options", action="append", metavar="KEY=VALUE",
                        help="detector option, e.g. --set weights=/models/MDV6-rtdetr_x.pth (repeatable)")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                        help="keep boxes scoring at least this (MegaDetector's usual 0.2)")
    parser.add_argument("--categories", default="animal",
                        help="comma-separated categories to crop (MegaDetector: animal, person, vehicle)")
    parser.add_argument("--max-detections", type=int, default=20, help="at most this many animals per photo")
    parser.add_argument("--margin", type=float, default=0.1, help="crop margin, a fraction of the box per side")
    parser.add_argument("--crop-format", choices=("png", "jpg"), default="png")
    add_options(parser, settings, "species", species={"help": "comma-separated species to process (default: all)"})
    parser.add_argument("--limit", type=int, default=None, help="process at most N photos in this run")
    parser.add_argument("--dry-run", action="store_true", help="print what would be done and stop")
    parser.add_argument("--actors", type=int, default=1, help="detector actors (one model each)")
    parser.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per actor; 0.5 puts two actors on a GPU")
    parser.add_argument("--num-cpus", type=float, default=1.0, help="CPUs per actor")
    parser.add_argument("--batch-size", type=int, default=8, help="photos per actor call")
    parser.add_argument("--io-threads", type=int, default=4, help="read/write threads per actor")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help="refuse photos with more pixels (decompression bombs, panoramas)")
    add_options(parser, settings, "verbose", verbose={"help": "full tracebacks and Ray's and Ray Data's own output"})
    return parser


def job_from_args(args: argparse.Namespace) -> DetectJob:
    from reid_core.cli.options import parse_assignments

    for flag, value, low in (("--actors", args.actors, 1), ("--batch-size", args.batch_size, 1),
                             ("--io-threads", args.io_threads, 1), ("--max-detections", args.max_detections, 1)):
        if value < low:
            raise UsageError(f"{flag} must be >= {low}, got {value}")
    if args.num_gpus < 0 or args.num_cpus < 0 or (args.limit is not None and args.limit < 0) or args.margin < 0:
        raise UsageError("--num-gpus, --num-cpus, --limit and --margin must not be negative")
    if not 0 <= args.threshold <= 1:
        raise UsageError(f"--threshold must be in [0, 1], got {args.threshold}")
    categories = tuple(c.strip() for c in args.categories.split(",") if c.strip())
    if not categories:
        raise UsageError("--categories names none: give e.g. --categories animal")
    species = tuple(s.strip() for s in (args.species or "").split(",") if s.strip())
    return DetectJob(
        manifest=args.manifest, output=args.output, method=args.method,
        options=parse_assignments(args.options, "--set"), threshold=args.threshold, categories=categories,
        max_detections=args.max_detections, margin=args.margin, crop_format=args.crop_format, species=species,
        limit=args.limit, actors=args.actors, batch_size=args.batch_size, num_gpus=args.num_gpus,
        num_cpus=args.num_cpus, io_threads=args.io_threads, max_pixels=args.max_pixels)


def format_report(report: DetectReport) -> str:
    from reid_core.reports.stage_report import stage_report_text

    extra = [] if report.dry_run else [f"animals cropped: {report.animals} from {report.photos_with_animals} photos; "
             f"empty photos: {report.empty}" + (f" ({', '.join(report.empty_photos)})" if report.empty else ""),
             f"every photo, with its detection status: {report.photos_manifest}"]
    if report.converted:
        extra.append("converted: " + ", ".join(f"{k} {v}" for k, v in report.converted.items()))
    return stage_report_text(report, {}, extra)


def main(argv: list[str]) -> int:
    settings = Settings.from_env()
    args = build_parser(settings).parse_args(argv)
    from reid_core.pipelines import console

    console.configure(args.verbose)
    job = job_from_args(args)
    from reid_core.detection.registry import names

    check_method(job.method, names())
    check_options(job.method, job.options)
    report = run(job, settings=settings, dry_run=args.dry_run, verbose=args.verbose)
    print("\n" + format_report(report))
    print(json.dumps({"summary": report.to_dict()}, default=str))
    return 0
