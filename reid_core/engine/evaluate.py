"""Embed a manifest's images with a method's test-time embedding and score them with a protocol."""

from __future__ import annotations

import numpy as np
import polars as pl
import torch
from torch.utils.data import DataLoader

from reid_core.data.dataset import ManifestDataset, image_column
from reid_core.evaluation.protocols import evaluate_manifest
from reid_core.models.registry import Method


def protocol_for(df: pl.DataFrame) -> str:
    """The species' protocol, read off the manifest rather than guessed from names.

    ATRW test rows carry ``atrw_query``; manifests with query/gallery roles use them; otherwise every
    image is probe and gallery with the query itself removed (ELPephants, AER).
    """
    if "atrw_query" in df.columns and df["atrw_query"].drop_nulls().len() > 0:
        return "atrw"
    roles = set(df["role"].drop_nulls().to_list()) if "role" in df.columns else set()
    if "query" in roles and ("gallery" in roles or "both" in roles):
        return "disjoint"
    return "probe_gallery"


@torch.inference_mode()
def embed_manifest(
    method: Method,
    model: torch.nn.Module,
    df: pl.DataFrame,
    transform,
    *,
    use_masked: bool = True,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    num_workers: int = 0,
) -> np.ndarray:
    was_training = model.training
    model.eval()
    dataset = ManifestDataset(df, transform, column=image_column(df, use_masked))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    chunks = [method.embed(model, batch["image"].to(device)).float().cpu() for batch in loader]
    model.train(was_training)
    return torch.cat(chunks).numpy()


def evaluate_split(
    method: Method,
    model: torch.nn.Module,
    df: pl.DataFrame,
    transform,
    split: str,
    *,
    protocol: str | None = None,
    **embed_kwargs,
) -> dict[str, float]:
    """Metrics of ``model`` on the rows of ``split`` (names as evaluate_manifest returns them)."""
    rows = df.filter(pl.col("split") == split)
    if rows.is_empty():
        raise ValueError(f"the manifest has no {split!r} rows to evaluate on")
    features = embed_manifest(method, model, rows, transform, **embed_kwargs)
    return evaluate_manifest(features, rows, protocol or protocol_for(rows), split=None)
