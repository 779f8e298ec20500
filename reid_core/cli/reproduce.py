"""``reid reproduce CLAIM``: a paper's claim as a comparison over seeds, ours beside theirs."""

from __future__ import annotations

import argparse
import time

from reid_core.cli.options import (
    Parser,
    UsageError,
    add_options,
    at_least,
    dataset_name,
    names,
    parse_assignments,
)
from reid_core.reports.claims import CLAIMS
from reid_core.settings import Settings

# The synthetic data a claim trains on when no --manifest is given (made as the demo makes it).
SYNTHETIC = {"individuals": 40, "images": 12, "size": 128, "seed": 0}
NOCROP_FOLDER = "segmented-nocrop"


def build_parser(settings: Settings) -> Parser:
    listing = "\n".join(f"  {name:<20} {claim.table}: {claim.statement}" for name, claim in CLAIMS.items())
    parser = Parser(
        prog="reid reproduce",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Measure a paper's claim: train its arms (e.g. lambda_DVE = 0 and > 0) x species x seeds as "
                    "Ray tasks (the compare pipeline), print ours (mean ± 95% CI) beside the paper's reported "
                    "numbers (theirs, on their data), the direction of each effect and whether the intervals "
                    "separate; log an MLflow parent run 'reproduce-CLAIM' (experiment 'reid-reproduce') with a "
                    "child run per training. Without --manifest the synthetic species are generated and their "
                    "backgrounds removed with the reference masks, as `reid demo` does.",
        epilog=f"claims:\n{listing}")
    parser.add_argument("claim", choices=list(CLAIMS), metavar="CLAIM", help="one of: " + ", ".join(CLAIMS))
    add_options(parser, settings, "manifest", "species", "seeds", "epochs", "seed", "preset", "set", "use_gpu",
                "dataset", "verbose",
                manifest={"default": None, "help": "manifest Parquet (local or s3://); default: the synthetic "
                                                   "species, generated and segmented if absent"},
                species={"help": "comma-separated species (default: the claim's; tiger, yak, elephant for "
                                 "aer-transfer)"},
                preset={"default": "cpu", "help": "'cpu' (default: random weights, 2 CPU cores) or 'paper' (the "
                                                  "paper's recipe, for a GPU cluster and real data)"})
    parser.add_argument("--cpus-per-run", type=float, default=1.0, help="CPUs of each training's Ray task")
    parser.add_argument("--out", default=None, help="output folder (default: REID_HOME/reproduce/CLAIM-<time>)")
    return parser


def synthetic_manifest(settings: Settings, data: str, verbose: bool) -> tuple[str, str]:
    """The synthetic species with backgrounds removed (cropped, or the photo's frame kept), made if absent;
    returns the manifest and how it was made."""
    from reid_core.cli.demo import ensure_synthetic, segment_with_reference_masks
    from reid_core.pipelines.ray_runtime import init_ray

    ensure_synthetic(settings, SYNTHETIC["individuals"], SYNTHETIC["images"], SYNTHETIC["size"], SYNTHETIC["seed"])
    init_ray(settings, verbose=verbose)
    crop = data == "masked-crop"
    source = str(settings.synthetic_dir / "manifest.parquet")
    output = None if crop else str(settings.synthetic_dir / NOCROP_FOLDER)
    print(f"Background removal with the synthetic reference masks ({'cropped to the animal' if crop else 'whole frame'}):")
    masked = segment_with_reference_masks(settings, source, verbose, crop=crop, output=output)
    made = (f"synthetic species ({SYNTHETIC['individuals']} individuals x {SYNTHETIC['images']} images, "
            f"{SYNTHETIC['size']} px), backgrounds removed with the reference masks"
            f"{', cropped to the animal' if crop else ', whole frame'}")
    return masked, made


def main(argv: list[str]) -> int:
    settings = Settings.from_env()
    args = build_parser(settings).parse_args(argv)
    at_least("--seeds", args.seeds, 1)
    at_least("--epochs", args.epochs, 1)
    at_least("--cpus-per-run", args.cpus_per_run, 0)
    from reid_core.pipelines import console
    from reid_core.pipelines.reproduce import ReproduceRequest, run_claim

    console.configure(args.verbose)
    started = time.perf_counter()
    claim = CLAIMS[args.claim]
    species = names(args.species) or None
    if args.species is not None and not species:
        raise UsageError("--species names no species: give one or more, comma-separated")
    overrides = parse_assignments(args.overrides, "--set")
    settings.ensure_dirs()
    if args.manifest:
        manifest, made = args.manifest, f"manifest {args.manifest}"
    else:
        manifest, made = synthetic_manifest(settings, claim.data, args.verbose)
    request = ReproduceRequest(
        claim=args.claim, manifest=manifest, species=species, seeds=args.seeds, base_seed=args.seed,
        preset=args.preset, overrides=overrides, epochs=args.epochs, use_gpu=args.use_gpu,
        cpus_per_run=args.cpus_per_run, dataset=args.dataset or dataset_name(manifest), data=made,
        out_dir=args.out, verbose=args.verbose)
    result = run_claim(request, settings)
    compare = result.compare
    skipped = int(compare.runs["skipped_training"].sum())
    if skipped:  # an arm with the same config, manifest and seed as an earlier claim's (or an earlier run)
        print(f"note: {skipped} of {len(compare.runs)} trainings were finished already (checkpoints reused)")
    print("\n" + result.markdown)
    print(f"Finished in {(time.perf_counter() - started) / 60:.1f} min (data preparation included).")
    print(f"Files: {compare.out_dir} (claim.md, runs, summary)")
    print(f"MLflow: run {compare.run_id} ({len(compare.child_run_ids)} child runs) in experiment "
          f"'reid-reproduce' ({settings.tracking_uri})")
    return 0
