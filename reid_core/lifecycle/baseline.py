"""Untrained baselines on a manifest's test split: the floor any trained model has to clear."""

from __future__ import annotations

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F

from reid_core.data.transforms import eval_transform
from reid_core.engine.evaluate import embed_rows, protocol_for
from reid_core.evaluation.protocols import evaluate_manifest
from reid_core.nn.untrained import BASELINES


def _embed(model: torch.nn.Module, rows: pl.DataFrame, size: int) -> np.ndarray:
    model.eval()
    return embed_rows(lambda images: F.normalize(model(images).flatten(1), dim=1), rows, eval_transform(size))


def chance(rows: pl.DataFrame, protocol: str, seeds: int = 5) -> dict[str, float]:
    """Metrics of random embeddings, averaged over seeds: what a model that learnt nothing scores."""
    runs = [evaluate_manifest(np.random.default_rng(s).standard_normal((len(rows), 64)), rows, protocol, split=None)
            for s in range(seeds)]
    return {k: float(np.mean([r[k] for r in runs])) for k in ("mAP", "rank1")}


def baseline_table(df: pl.DataFrame, size: int = 128, seed: int = 0) -> pl.DataFrame:
    """One row per species: test-split mAP / rank-1 for chance and each untrained baseline."""
    out = []
    for species in sorted(df["species"].unique().to_list()):
        rows = df.filter((pl.col("species") == species) & (pl.col("split") == "test"))
        if rows.is_empty():
            continue
        protocol = protocol_for(rows)
        row = {"species": species, "protocol": protocol, "test_images": len(rows)}
        row |= {f"chance_{k}": round(v, 3) for k, v in chance(rows, protocol).items()}
        for name, build in BASELINES.items():
            metrics = evaluate_manifest(_embed(build(seed=seed), rows, size), rows, protocol, split=None)
            row |= {f"{name}_mAP": round(metrics["mAP"], 3), f"{name}_rank1": round(metrics["rank1"], 3)}
        out.append(row)
    return pl.DataFrame(out)
