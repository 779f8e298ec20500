"""``reid demo`` (``make demo``): everything a new user should see work, on one machine, in minutes."""

from __future__ import annotations

import time

import polars as pl

from reid_core.cli.options import Parser, add_options, names
from reid_core.data import manifest, synthetic
from reid_core.lifecycle.baseline import baseline_table
from reid_core.reports.tables import markdown_table
from reid_core.settings import Settings

SPECIES = ("tiger", "yak", "elephant")
# The demo trains DVE's ``cpu`` preset (reid_core/methods/dve/method.py says why each choice) and searches
# the two values that mattered most in single runs on the tiger-like species.
DEMO_PRESET = "cpu"
DEMO_BOUNDS = {"optim.lr": (2e-3, 4e-3), "losses.lambda_dve": (0.2, 0.6), "losses.lambda_reid": 0,
               "losses.circle_gamma": 32}


def ensure_synthetic(settings: Settings, individuals: int, images: int, size: int, seed: int) -> pl.DataFrame:
    path = settings.synthetic_dir / "manifest.parquet"
    if path.exists():
        print(f"synthetic species already in {settings.synthetic_dir} (delete it to regenerate)")
        return manifest.read(str(path))
    started = time.perf_counter()
    df = synthetic.generate(settings.synthetic_dir, species=SPECIES, individuals=individuals,
                            images_per_individual=images, size=size, seed=seed)
    print(f"generated {len(df)} images of {', '.join(SPECIES)} in {time.perf_counter() - started:.1f} s "
          f"-> {path}")
    return df


def segment_with_reference_masks(settings: Settings, manifest_uri: str, verbose: bool = False, crop: bool = True,
                                 output: str | None = None) -> str:
    """Background removal for the demo. The synthetic species come with exact masks, so the demo runs
    the segmentation pipeline with them (``--method reference``) instead of SAM + ISNet, whose weights a
    fresh machine does not have. Cropped to the animal: from random weights at 64 px, the network
    otherwise learns the home scenes of the training split (test mAP 0.09 on original images). Without
    ``crop`` the masked images keep the photo's frame (part maps line up; only the background differs)."""
    from reid_core.cli.segment import format_report
    from reid_core.pipelines.segment import SegmentJob, run
    from reid_core.segmentation.masking import MaskingConfig

    job = SegmentJob(manifest=manifest_uri, output=output, method="reference", masking=MaskingConfig(crop=crop),
                     actors=1, batch_size=64)
    report = run(job, settings=settings, verbose=verbose)
    print(format_report(report))
    return report.manifest_out


HELD_OUT_INDIVIDUALS = 3


def identify_example(manifest_uri: str, settings: Settings, species: str = "tiger") -> tuple[str, str]:
    """Two manifests for trying ``identify``: the test split's query photos, and its gallery photos
    less ``HELD_OUT_INDIVIDUALS`` individuals (so some photos show individuals the gallery lacks)."""
    test = manifest.read(manifest_uri).filter((pl.col("species") == species) & (pl.col("split") == "test"))
    held_out = sorted(test["individual"].unique().to_list())[:HELD_OUT_INDIVIDUALS]
    gallery = test.filter((pl.col("role") != "query") & ~pl.col("individual").is_in(held_out))
    photos = test.filter(pl.col("role") == "query")
    paths = (str(settings.data_dir / f"identify_{species}_photos.parquet"),
             str(settings.data_dir / f"identify_{species}_gallery.parquet"))
    manifest.write(photos, paths[0])
    manifest.write(gallery, paths[1])
    return paths


def main(argv: list[str]) -> int:
    settings = Settings.from_env()
    parser = Parser(prog="reid demo", description=__doc__.splitlines()[0])
    parser.add_argument("--individuals", type=int, default=40)
    parser.add_argument("--images-per-individual", type=int, default=12)
    parser.add_argument("--size", type=int, default=128)
    add_options(parser, settings, "seed")
    parser.add_argument("--num-samples", type=int, default=2, help="trials per species")
    add_options(parser, settings, "epochs", epochs={
        "default": 26, "help": "epochs per trial (26 keeps 3 species within 15 min on 2 cores; 30 took 15 min 11 s)"})
    parser.add_argument("--max-concurrent", type=int, default=2, help="trials at a time")
    add_options(parser, settings, "species", species={"default": ",".join(SPECIES),
                                                       "help": "comma-separated species to tune"})
    parser.add_argument("--no-tune", action="store_true", help="stop after the data and the baselines")
    add_options(parser, settings, "verbose")
    args = parser.parse_args(argv)
    from reid_core.pipelines import console

    console.configure(args.verbose)
    started = time.perf_counter()

    settings.ensure_dirs()
    df = ensure_synthetic(settings, args.individuals, args.images_per_individual, args.size, args.seed)
    print("\n" + markdown_table(manifest.summary(df).to_dicts()))
    print("\nUntrained baselines on the test split (disjoint query/gallery, same-id-same-camera removed):")
    baselines = baseline_table(df, size=args.size, seed=args.seed)
    print(markdown_table(baselines.to_dicts()))
    if args.no_tune:
        return 0

    from reid_core.pipelines.ray_runtime import init_ray
    from reid_core.pipelines.tune import TuneRequest, run_tuning

    init_ray(settings, verbose=args.verbose)
    print("\nBackground removal (Ray Data; the synthetic reference masks stand in for SAM + ISNet):")
    masked_manifest = segment_with_reference_masks(settings, str(settings.synthetic_dir / "manifest.parquet"),
                                                   args.verbose)
    species = names(args.species)
    print(f"\nTuning DVE per species (Ray Tune + Optuna TPE + ASHA): {args.num_samples} trials x "
          f"{args.epochs} epochs, {args.max_concurrent} at a time ...")
    request = TuneRequest(method="dve", species=species, manifest=masked_manifest, num_samples=args.num_samples,
                          max_concurrent=args.max_concurrent, epochs=args.epochs, seed=args.seed,
                          preset=DEMO_PRESET, bounds=DEMO_BOUNDS, dataset="synthetic", cache_images=True,
                          verbose=args.verbose)
    summary = run_tuning(request, settings).join(
        baselines.select("species", pl.col("chance_mAP"), pl.col("chance_rank1")), on="species", how="left")
    print("\nBest DVE model per species (test split; chance = random embeddings):")
    print(markdown_table(summary.to_dicts()))
    print(f"\nDemo finished in {time.perf_counter() - started:.0f} s. MLflow store: {settings.tracking_uri}\n"
          "Open the UI with `make ui` -> http://127.0.0.1:5000 (experiment 'reid-dve'; registered models "
          "reid-dve-<species> with the alias 'candidate'). Promote one with "
          "`reid promote --model reid-dve-tiger --alias candidate`.")
    photos, gallery = identify_example(masked_manifest, settings)
    print("Identify new photos with it: the tiger test split's query photos against a gallery of its other "
          f"photos without {HELD_OUT_INDIVIDUALS} individuals, which should come out as new:\n"
          f"  reid identify --model reid-dve-tiger@candidate --images {photos} --gallery {gallery}")
    return 0
