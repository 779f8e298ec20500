"""``reid identify``: which known individual is each new photo, and which are new individuals."""

from __future__ import annotations

from reid_core.cli.options import Parser, UsageError, add_options
from reid_core.settings import Settings


def build_parser(settings: Settings | None = None) -> Parser:
    settings = settings or Settings.from_env()
    parser = Parser(
        prog="reid identify",
        description="Identify the animals in new photos with a registered model: per image its most similar "
                    "gallery images by the model, verified by local-feature matching, both scores calibrated to "
                    "P(same individual) and averaged; the top-k known individuals and a known / new decision at the "
                    "model's operating point for the gallery's size; the photos called new grouped into proposed "
                    "individuals new-1, new-2, ... Writes identifications.parquet/.csv, a contact sheet per image and "
                    "per group, and index.html.")
    parser.add_argument("--model", required=True, help="NAME@ALIAS or NAME/VERSION, e.g. reid-dve-tiger@production")
    parser.add_argument("--images", required=True, help="a folder of photos (local or s3://) or a manifest (.parquet)")
    parser.add_argument("--gallery", required=True, help="manifest of the known individuals (segmented if the "
                                                         "model was trained on masked images)")
    parser.add_argument("--top-k", type=int, default=5, help="known individuals listed per image (default: 5)")
    add_options(parser, settings, "matcher", "shortlist", matcher={
        "default": "sift", "help": "local-feature matcher verifying the shortlist (default: sift, needs no weights; "
                                   "none: the global model alone)"})
    parser.add_argument("--threshold", type=float, default=None,
                        help="fused probability of the best individual at or below which an image is a new "
                             "individual (default: the model version's operating point for a gallery of this many "
                             "individuals, calibrated on the validation split when it was published)")
    parser.add_argument("--no-groups", action="store_true", help="do not group the photos called new")
    parser.add_argument("--out", default=None, help="output folder or s3:// prefix (default: "
                                                    "REID_HOME/identify/<model>-v<version>)")
    parser.add_argument("--flip-tta", action="store_true", help="average the embeddings of each image and its mirror")
    parser.add_argument("--rerank", action="store_true", help="order matches by k-reciprocal re-ranked distance")
    parser.add_argument("--actors", type=int, default=1, help="embedding actors (one model each)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per actor; 0.5 puts two actors on a GPU")
    parser.add_argument("--num-cpus", type=float, default=1.0, help="CPUs per actor")
    parser.add_argument("--cache", default=None, help="gallery embedding cache root (default: REID_HOME/gallery-cache)")
    parser.add_argument("--no-sheets", action="store_true", help="skip the contact sheets and index.html")
    parser.add_argument("--detect", default=None, metavar="DETECTOR",
                        help="whole photos: find every animal first with this detector (megadetector, reference; "
                             "`reid detect`'s stage) and identify each crop; the sheets show each photo with its "
                             "boxes labelled (default: one animal per image, as given)")
    parser.add_argument("--detect-set", dest="detect_options", action="append", metavar="KEY=VALUE",
                        help="detector option, e.g. --detect-set weights=/models/MDV6-rtdetr_x.pth (repeatable)")
    parser.add_argument("--detect-threshold", type=float, default=0.2, help="keep boxes scoring at least this")
    parser.add_argument("--detect-margin", type=float, default=0.1, help="crop margin, a fraction of the box per side")
    add_options(parser, settings, "verbose")
    return parser


def main(argv: list[str]) -> int:
    from reid_core.cli.options import parse_assignments

    args = build_parser().parse_args(argv)
    detector_options = parse_assignments(args.detect_options, "--detect-set")
    if args.detect_options and not args.detect:
        raise UsageError("--detect-set needs --detect DETECTOR")
    if args.detect:
        from reid_core.detection.registry import names, parse_options

        if ":" not in args.detect and args.detect not in names():
            raise UsageError(f"unknown --detect {args.detect!r}; choose one of {', '.join(names())} "
                             "or give package.module:builder")
        parse_options(args.detect, detector_options)  # a ValueError naming the option: a usage error
    if not 0 <= args.detect_threshold <= 1 or args.detect_margin < 0:
        raise UsageError("--detect-threshold must be in [0, 1] and --detect-margin >= 0")
    from reid_core.pipelines.console import configure
    from reid_core.pipelines.identify import IdentifyJob, run
    from reid_core.tracking.versions import ModelNotFoundError

    configure(args.verbose)
    settings = Settings.from_env()
    settings.ensure_dirs()
    job = IdentifyJob(model=args.model, images=args.images, gallery=args.gallery, out=args.out, top_k=args.top_k,
                      threshold=args.threshold, matcher=args.matcher, shortlist=args.shortlist,
                      group_new=not args.no_groups, flip_tta=args.flip_tta, rerank=args.rerank, actors=args.actors,
                      batch_size=args.batch_size, num_cpus=args.num_cpus, num_gpus=args.num_gpus, cache=args.cache,
                      sheets=not args.no_sheets, verbose=args.verbose, detector=args.detect,
                      detector_options=detector_options, detect_threshold=args.detect_threshold,
                      detect_margin=args.detect_margin)
    try:
        report = run(job, settings)
    except ModelNotFoundError as error:
        raise UsageError(str(error)) from None
    if args.detect:
        print(f"{report.photos} whole photos: {report.images} animals found by {args.detect}, {report.photos_empty} "
              f"empty, {report.photos_failed} failed")
    print(f"{report.images} images: {report.known} known, {report.new} new in {report.groups} proposed individuals, "
          f"{report.failed} failed "
          f"(embedded now {report.embedded}, before {report.skipped}); gallery {report.gallery_images} images of "
          f"{report.gallery_individuals} individuals, cache {report.gallery_cache}")
    print(f"matcher {report.matcher}: {report.pairs_matched} pairs matched, {report.pair_failures} failed; known when "
          f"the fused probability > {report.threshold:.4f} ({report.threshold_source})")
    for image_id, error in report.failures:
        print(f"  failed: {image_id}: {error}")
    print(f"Files: {report.out}/identifications.csv, {report.out}/index.html")
    print(f"MLflow: run {report.run_id} in experiment 'reid-identify' ({settings.tracking_uri})")
    return 0
