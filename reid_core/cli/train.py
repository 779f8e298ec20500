"""The command line of ``workflows/train.py``: one training run, tracked and registered."""

from __future__ import annotations

import argparse

from reid_core.cli.options import add_common_arguments, dataset_name, parse_assignments
from reid_core.data import files as rio
from reid_core.reports.tables import markdown_table
from reid_core.settings import Settings


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train.py",
        description="Train one re-ID model on Ray Train (DDP) or in-process, evaluate it on the test split, "
                    "log it to MLflow and register it with the alias 'candidate'.")
    parser.add_argument("--method", default="dve")
    parser.add_argument("--species", required=True)
    parser.add_argument("--workers", type=int, default=0, help="0 = in-process; N = DDP with N Ray Train workers")
    parser.add_argument("--run-name", default=None,
                        help="stable name: rerunning with the same name resumes from the last checkpoint")
    parser.add_argument("--max-failures", type=int, default=2, help="worker losses tolerated (DDP)")
    add_common_arguments(parser, settings)
    return parser


def main(argv: list[str]) -> int:
    settings = Settings.from_env()
    args = build_parser(settings).parse_args(argv)
    from reid_core.pipelines import console

    console.configure(args.verbose)
    from reid_core import tracking
    from reid_core.engine.loop import TrainJob, check_job, load_species_rows
    from reid_core.lifecycle.publish import publish
    from reid_core.lifecycle.restore import restore
    from reid_core.methods.registry import get_method
    from reid_core.pipelines.train import original_images_note, run_training

    settings.ensure_dirs()
    overrides = parse_assignments(args.overrides, "--set")
    epochs_key = get_method(args.method).epochs_key
    if args.epochs and epochs_key:  # None: the method trains nothing
        overrides[epochs_key] = args.epochs
    run_name = args.run_name or f"{args.method}-{args.species}"
    job = TrainJob(manifest=args.manifest, species=args.species, method=args.method, preset=args.preset,
                   overrides=overrides, seed=args.seed, use_masked=not args.original_images, use_gpu=args.use_gpu)
    # Fail fast, before Ray starts: manifest, species, method, config keys, batches against the data.
    rows = load_species_rows(args.manifest, args.species)
    images = check_job(job, rows, max(1, args.workers))
    if images.left_out:
        print(f"left out {images.left_out} training rows whose segmentation failed (no masked image)")
    note = original_images_note(job, images.column)
    if note:
        print(note)

    outcome = run_training(job, workers=args.workers, run_name=run_name, settings=settings,
                           max_failures=args.max_failures, verbose=args.verbose)
    restored = restore(outcome.checkpoint_dir)
    experiment = tracking.experiment_name(args.method)
    experiment_id = tracking.get_or_create_experiment(experiment, settings)
    tags = tracking.standard_tags(species=args.species, method=args.method,
                                  dataset=args.dataset or dataset_name(args.manifest), data_version=tracking.data_version(rows),
                                  manifest=rio.absolute(args.manifest))
    client = tracking.configure(settings)
    run_id = client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id
    tracking.log_manifest_input(run_id, rows, args.manifest, tracking.dataset_name(tags["dataset"], args.species),
                                settings=settings)
    meta = restored.progress.meta
    tracking.log_params(run_id, {"workers": args.workers, "seed": args.seed, "use_masked": job.use_masked,
                                 "preset": job.preset, **meta["config"]},
                        settings=settings)
    tracking.log_metrics(run_id, {"data.left_out_unmasked": meta.get("left_out_unmasked", 0)}, settings=settings)
    tracking.log_metrics_history(run_id, restored.progress.history, settings=settings)
    published = publish(restored, rows, run_id, species=args.species, tags=tags, use_masked=job.use_masked)
    tracking.end_run(run_id, "FINISHED", settings=settings)
    print("\n" + markdown_table([{"species": args.species, **{k: round(v, 4) for k, v in published.metrics.items()
                                                             if k.startswith("test.") and "n_" not in k},
                                "model": f"{published.registered_name} v{published.version}"}]))
    print(f"\nrun {run_id} in experiment '{experiment}' ({settings.tracking_uri})")
    return 0
