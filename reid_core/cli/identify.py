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
    add_options(parser, settings, "verbose")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
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
                      sheets=not args.no_sheets, verbose=args.verbose)
    try:
        report = run(job, settings)
    except ModelNotFoundError as error:
        raise UsageError(str(error)) from None
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
