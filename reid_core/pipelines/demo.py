"""``make demo``: everything a new user should see work, on one machine, in minutes."""

from __future__ import annotations

import argparse
import time

import polars as pl

from reid_core.data import manifest, synthetic
from reid_core.pipelines.baseline import baseline_table
from reid_core.pipelines.cli import format_table
from reid_core.settings import Settings

SPECIES = ("tiger", "yak", "elephant")


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


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="demo.py", description=__doc__)
    parser.add_argument("--individuals", type=int, default=40)
    parser.add_argument("--images-per-individual", type=int, default=12)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    settings = Settings.from_env()
    settings.ensure_dirs()
    df = ensure_synthetic(settings, args.individuals, args.images_per_individual, args.size, args.seed)
    print("\n" + format_table(manifest.summary(df).to_dicts()))
    print("\nUntrained baselines on the test split (disjoint query/gallery, same-id-same-camera removed):")
    print(format_table(baseline_table(df, size=args.size, seed=args.seed).to_dicts()))
    return 0
