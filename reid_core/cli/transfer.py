"""``reid transfer``: the cross-species transfer matrix (AER Table A.5) from the registry."""

from __future__ import annotations

import sys

from reid_core.cli.options import Parser, UsageError, add_options, dataset_name, local_rerank, names
from reid_core.settings import Settings


def _species(text: str | None) -> list[str] | None:
    return names(text) or None


def parse_models(items: list[str] | None) -> dict[str, str]:
    """``tiger=7``, ``yak=@candidate``, ``elephant=run:<run_id>`` -> {species: reference}."""
    out = {}
    for item in items or []:
        species, sep, reference = item.partition("=")
        if not sep or not species.strip() or not reference.strip():
            raise UsageError(f"--model expects SPECIES=VERSION|@ALIAS|run:RUN_ID|models:/URI, got {item!r}")
        out[species.strip()] = reference.strip()
    return out


def build_parser(settings: Settings) -> Parser:
    parser = Parser(
        prog="reid transfer",
        description="Evaluate every species' model on every species' test set (mAP, rank-1, each with the test "
                    "species' protocol) as Ray tasks; write Parquet/CSV/Markdown/heatmap and log an MLflow run.")
    add_options(parser, settings, "method", "manifest", "species",
                method={"help": "method whose registered models reid-<method>-<species> are compared (default: dve)"},
                manifest={"help": "manifest with a test split per species; default: the synthetic species"},
                species={"help": "comma-separated training species (rows); default: every species of the manifest "
                                 "with a model at --alias"})
    parser.add_argument("--test-species", help="comma-separated test species (columns); default: the rows' species")
    parser.add_argument("--alias", default="production", help="alias of each species' model (default: production)")
    parser.add_argument("--model", action="append", metavar="SPECIES=REF",
                        help="a species' model instead of the alias: a version (tiger=7), an alias "
                             "(tiger=@candidate), a run (tiger=run:<run_id>) or a model URI")
    parser.add_argument("--cpus-per-task", type=float, default=1.0, help="CPUs per cell task")
    parser.add_argument("--out", help="output folder (default: REID_HOME/transfer/<method>-<time>)")
    add_options(parser, settings, "dataset", "original_images", "matcher", "shortlist", "matcher_set", "verbose")
    return parser


def main(argv: list[str]) -> int:
    settings = Settings.from_env()
    args = build_parser(settings).parse_args(argv)
    from reid_core.pipelines.transfer import TransferRequest, run_transfer_matrix
    from reid_core.reports.transfer import format_changes
    from reid_core.tracking import ModelNotFoundError

    request = TransferRequest(
        method=args.method, manifest=args.manifest, species=_species(args.species),
        test_species=_species(args.test_species), alias=args.alias, models=parse_models(args.model),
        use_masked=not args.original_images, cpus_per_task=args.cpus_per_task,
        dataset=args.dataset or dataset_name(args.manifest), out_dir=args.out, rerank=local_rerank(args))
    settings.ensure_dirs()
    try:
        result = run_transfer_matrix(request, settings)
    except (ModelNotFoundError, ValueError, FileNotFoundError) as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    for species in result.skipped:
        print(f"note: no reid-{args.method}-{species}@{args.alias}; row {species} skipped")
    print("\n" + result.markdown)
    if result.changes is None:
        print("No previous transfer-matrix run to compare with.")
    else:
        print(f"Change against the previous run {result.previous_run_id}:\n\n{format_changes(result.changes)}")
    print(f"Files: {result.out_dir}")
    print(f"MLflow: run {result.run_id} in experiment 'reid-{args.method}' ({settings.tracking_uri})")
    return 0

