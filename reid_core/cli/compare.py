"""The command line of ``workflows/compare.py``."""

from __future__ import annotations

import argparse

from reid_core.cli.options import add_common_arguments, dataset_name, parse_assignments
from reid_core.settings import Settings


def _names(text: str | None) -> list[str]:
    return [s.strip() for s in (text or "").split(",") if s.strip()]


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="compare.py",
        description="Train every method x species x seed as Ray tasks, test each with the species' protocol and "
                    "print AER Table 2 (mean ± 95% CI over seeds); log an MLflow parent run (experiment "
                    "'reid-compare') with a child run per training; write Parquet/CSV/Markdown and a bar chart. "
                    "--set applies to every method (ablations: --set losses.lambda_dve=0).")
    parser.add_argument("--methods", default="dve", help="comma-separated methods, e.g. dve,arbase (default: dve)")
    parser.add_argument("--species", default=None,
                        help="comma-separated species (default: every species of the manifest)")
    parser.add_argument("--seeds", type=int, default=3, help="trainings per method x species: seeds --seed + i")
    parser.add_argument("--cpus-per-run", type=float, default=1.0, help="CPUs of each training's Ray task")
    parser.add_argument("--out", default=None, help="output folder (default: REID_HOME/compare/compare-<time>)")
    add_common_arguments(parser, settings)
    return parser


def main(argv: list[str]) -> int:
    settings = Settings.from_env()
    args = build_parser(settings).parse_args(argv)
    from reid_core.data import manifest
    from reid_core.pipelines import console
    from reid_core.pipelines.compare import CompareRequest, run_compare

    console.configure(args.verbose)

    species = _names(args.species)
    if not species:
        species = sorted(manifest.read(args.manifest)["species"].unique().to_list())
    request = CompareRequest(
        manifest=args.manifest, methods=_names(args.methods), species=species, seeds=args.seeds,
        base_seed=args.seed, preset=args.preset, overrides=parse_assignments(args.overrides, "--set"),
        epochs=args.epochs, use_masked=not args.original_images, use_gpu=args.use_gpu,
        cpus_per_run=args.cpus_per_run, dataset=args.dataset or dataset_name(args.manifest), out_dir=args.out,
        verbose=args.verbose)
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
