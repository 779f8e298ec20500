"""The command line of ``workflows/tune_<method>.py``: one parser for every method."""

from __future__ import annotations

import argparse
import sys

from reid_core.cli.options import (
    add_common_arguments,
    dataset_name,
    parse_assignments,
    parse_bounds,
    run_command,
)
from reid_core.reports.tables import markdown_table
from reid_core.settings import Settings


def build_parser(method: str, settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"tune_{method}.py",
        description=f"Search {method} hyperparameters per species (Ray Tune + Optuna TPE + ASHA), "
                    "track every trial in MLflow and register the best model as a candidate.")
    parser.add_argument("--species", required=True, help="comma-separated species, one study each")
    parser.add_argument("--num-samples", type=int, default=8, help="trials per species")
    parser.add_argument("--max-concurrent", type=int, default=2, help="trials running at once")
    parser.add_argument("--workers-per-trial", type=int, default=0,
                        help="0 = train in the trial process; N = DDP with N Ray Train workers")
    parser.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per trial (or per DDP worker)")
    parser.add_argument("--max-failures", type=int, default=2,
                        help="restarts of a trial after a lost worker or node (from its last checkpoint)")
    parser.add_argument("--resume", action="store_true",
                        help="continue each species' latest sweep after a killed driver: the same MLflow parent "
                             "run, finished trials kept, the rest resumed from their checkpoints")
    parser.add_argument("--bound", action="append", metavar="KEY=LOW:HIGH|A,B",
                        help="override a search range by its dotted key, e.g. --bound losses.lambda_dve=0:1 "
                             "--bound losses.circle_gamma=32,64")
    add_common_arguments(parser, settings)
    return parser


def main(method: str, argv: list[str]) -> int:
    settings = Settings.from_env()
    args = build_parser(method, settings).parse_args(argv)
    from reid_core.pipelines import console
    from reid_core.pipelines.tune import TuneRequest, run_tuning

    console.configure(args.verbose)
    if args.max_failures < 0:
        raise SystemExit(f"--max-failures must be >= 0, got {args.max_failures}")

    request = TuneRequest(
        method=method,
        species=[s.strip() for s in args.species.split(",") if s.strip()],
        manifest=args.manifest,
        preset=args.preset,
        num_samples=args.num_samples,
        max_concurrent=args.max_concurrent,
        workers_per_trial=args.workers_per_trial,
        cpus_per_trial=args.cpus_per_trial,
        epochs=args.epochs,
        use_gpu=args.use_gpu,
        seed=args.seed,
        bounds=parse_bounds(args.bound),
        overrides=parse_assignments(args.overrides, "--set"),
        use_masked=not args.original_images,
        dataset=args.dataset or dataset_name(args.manifest),
        verbose=args.verbose,
        max_failures=args.max_failures,
        resume=args.resume,
    )
    settings.ensure_dirs()
    table = run_tuning(request, settings)
    print("\n" + markdown_table(table.to_dicts()))
    print(f"\nMLflow: experiment 'reid-{method}' in {settings.tracking_uri}  (open it with `make ui`)")
    return 0


def main_with_method(argv: list[str]) -> int:
    """``workflows/tune.py``: ``--method NAME`` picks the method, the rest is the tune command line."""
    picker = argparse.ArgumentParser(add_help=False)
    picker.add_argument("--method", default=None)
    known, rest = picker.parse_known_args(argv)
    if known.method is None:
        from reid_core.methods.registry import method_names

        raise SystemExit(f"tune.py needs --method (one of: {', '.join(method_names())})")
    from reid_core.methods.registry import get_method

    get_method(known.method)  # an unknown method is a usage error before anything starts
    return main(known.method, rest)


if __name__ == "__main__":
    sys.exit(run_command(lambda argv: main(sys.argv[1], argv), sys.argv[2:]))
