"""``reid tune``: search a method's hyperparameters per species (one parser for every method;
``workflows/tune_<method>.py`` is this command with ``--method <method>``)."""

from __future__ import annotations

from reid_core.cli.options import TRAINING, Parser, add_options
from reid_core.settings import Settings


def build_parser(method: str | None, settings: Settings) -> Parser:
    """The parser of ``reid tune``; with ``method`` (an alias's), ``--method`` defaults to it."""
    parser = Parser(
        prog="reid tune",
        description=f"Search {method or 'a method'}'s hyperparameters per species (Ray Tune + Optuna TPE + ASHA), "
                    "track every trial in MLflow and register the best model as a candidate.")
    add_options(parser, settings, "method", "species",
                method={"default": method, "required": method is None,
                        "help": "the registered method to tune, e.g. dve, pawvit, care"},
                species={"required": True, "help": "comma-separated species, one study each"})
    parser.add_argument("--num-samples", type=int, default=8, help="trials per species")
    parser.add_argument("--max-concurrent", type=int, default=2, help="trials running at once")
    add_options(parser, settings, "workers", workers={
        "flags": ("--workers-per-trial", "--workers"), "dest": "workers_per_trial",
        "help": "0 = train in the trial process; N = DDP with N Ray Train workers per trial"})
    parser.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per trial (or per DDP worker)")
    parser.add_argument("--max-failures", type=int, default=2,
                        help="restarts of a trial after a lost worker or node (from its last checkpoint)")
    parser.add_argument("--resume", action="store_true",
                        help="continue each species' latest sweep after a killed driver: the same MLflow parent "
                             "run, finished trials kept, the rest resumed from their checkpoints")
    add_options(parser, settings, "bound", "storage", "calibrate", "matcher_set", *TRAINING)
    return parser


def main(method: str | None, argv: list[str]) -> int:
    from reid_core.cli.jobs import command_settings, tune_request

    args = build_parser(method, Settings.from_env()).parse_args(argv)
    request = tune_request(args)  # every usage mistake before Ray starts
    settings = command_settings(args)
    from reid_core.pipelines import console
    from reid_core.pipelines.tune import run_tuning
    from reid_core.reports.tables import markdown_table

    console.configure(args.verbose)
    settings.ensure_dirs()
    table = run_tuning(request, settings)
    print("\n" + markdown_table(table.to_dicts()))
    print(f"\nMLflow: experiment 'reid-{request.method}' in {settings.tracking_uri}  (open it with `make ui`)")
    return 0


def main_with_method(argv: list[str]) -> int:
    """``reid tune`` / ``workflows/tune.py``: ``--method NAME`` picks the method."""
    return main(None, argv)
