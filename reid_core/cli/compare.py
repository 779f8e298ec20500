"""``reid compare``: every method x species x seed as Ray tasks, AER Table 2 (or an ablation)."""

from __future__ import annotations

from reid_core.cli.options import TRAINING, Parser, add_options
from reid_core.settings import Settings


def build_parser(settings: Settings) -> Parser:
    parser = Parser(
        prog="reid compare",
        description="Train every method x species x seed as Ray tasks, test each with the species' protocol and "
                    "print AER Table 2 (mean ± 95% CI over seeds); log an MLflow parent run (experiment "
                    "'reid-compare') with a child run per training; write Parquet/CSV/Markdown and a bar chart. "
                    "--set applies to every method (ablations: --set losses.lambda_dve=0).")
    add_options(parser, settings, "methods", "species", "seeds")
    parser.add_argument("--cpus-per-run", type=float, default=1.0, help="CPUs of each training's Ray task")
    parser.add_argument("--out", default=None, help="output folder (default: REID_HOME/compare/compare-<time>)")
    add_options(parser, settings, *TRAINING,
                epochs={"help": "epochs per training of each method that trains (default: the preset's)"})
    add_options(parser, settings, "matcher", "shortlist", "matcher_set")
    return parser


def main(argv: list[str]) -> int:
    settings = Settings.from_env()
    args = build_parser(settings).parse_args(argv)
    from reid_core.cli.jobs import compare_request
    from reid_core.pipelines import console
    from reid_core.pipelines.compare import run_compare

    console.configure(args.verbose)
    request = compare_request(args)
    settings.ensure_dirs()
    result = run_compare(request, settings)
    skipped = int(result.runs["skipped_training"].sum())
    if skipped:
        print(f"note: {skipped} of {len(result.runs)} trainings were finished already (checkpoints reused)")
    print("\n" + result.markdown)
    print(f"Files: {result.out_dir}")
    print(f"MLflow: run {result.run_id} ({len(result.child_run_ids)} child runs) in experiment 'reid-compare' "
          f"({settings.tracking_uri})")
    return 0
