"""``reid train``: one training run, tracked and registered."""

from __future__ import annotations

from reid_core.cli.options import (
    TRAINING,
    Parser,
    add_options,
    calibration_matchers,
    dataset_name,
    matcher_options,
)
from reid_core.reports.tables import markdown_table
from reid_core.settings import Settings


def build_parser(settings: Settings) -> Parser:
    parser = Parser(
        prog="reid train",
        description="Train one re-ID model on Ray Train (DDP) or in-process, evaluate it on the test split, "
                    "log it to MLflow and register it with the alias 'candidate'.")
    add_options(parser, settings, "method", "species", "workers",
                species={"required": True, "help": "the species to train on, e.g. tiger"})
    parser.add_argument("--run-name", default=None,
                        help="stable name: rerunning with the same name resumes from the last checkpoint")
    parser.add_argument("--max-failures", type=int, default=2, help="worker losses tolerated (DDP)")
    add_options(parser, settings, "storage", "calibrate", "matcher_set", *TRAINING)
    return parser


def main(argv: list[str]) -> int:
    from reid_core.cli.jobs import command_settings, train_job

    args = build_parser(Settings.from_env()).parse_args(argv)
    job = train_job(args)  # the command line's own mistakes, before the data is read
    matchers, options = calibration_matchers(args), matcher_options(args)
    settings = command_settings(args)
    from reid_core.pipelines import console

    console.configure(args.verbose)
    from reid_core.engine.loop import check_job, load_species_rows
    from reid_core.lifecycle.train_and_register import train_and_register
    from reid_core.pipelines.train import original_images_note, trainer

    settings.ensure_dirs()
    run_name = args.run_name or f"{args.method}-{args.species}"
    # Fail fast, before Ray starts: manifest, species, method, config keys, batches against the data.
    rows = load_species_rows(args.manifest, args.species)
    images = check_job(job, rows, max(1, args.workers))
    if images.left_out:
        print(f"left out {images.left_out} training rows whose segmentation failed (no masked image)")
    note = original_images_note(job, images.column)
    if note:
        print(note)

    registered = train_and_register(
        job, run_name=run_name, dataset=args.dataset or dataset_name(args.manifest), rows=rows, settings=settings,
        params={"workers": args.workers}, matchers=matchers, matcher_options=options,
        trainer=trainer(workers=args.workers, settings=settings, max_failures=args.max_failures,
                        verbose=args.verbose))
    print("\n" + markdown_table([registered.row(args.species)]))
    print(f"\nrun {registered.run_id} in experiment '{registered.experiment}' ({settings.tracking_uri})")
    return 0
