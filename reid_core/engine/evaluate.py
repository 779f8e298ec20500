"""Embed a manifest's images with a method's test-time embedding and score them with a protocol."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl
import torch
from torch.utils.data import DataLoader

from reid_core.data.dataset import ManifestDataset, images_to_evaluate
from reid_core.evaluation.protocols import evaluate_manifest
from reid_core.methods.config import MethodConfig
from reid_core.methods.contract import Method


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
def embed_rows(
    embed: Callable[[torch.Tensor], torch.Tensor],
    df: pl.DataFrame,
    transform,
    *,
    column: str = "image_uri",
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    num_workers: int = 0,
) -> np.ndarray:
    """``embed`` (a batch of transformed images -> embeddings) over the rows of ``df``, in row order.

    Takes a callable rather than a network so a loaded pt2 program (which cannot be put in eval mode
    and has its test-time embedding baked in) shares this loop with a training network.
    """
    dataset = ManifestDataset(df, transform, column=column)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    chunks = [embed(batch["image"].to(device)).float().cpu() for batch in loader]
    return torch.cat(chunks).numpy()


def embed_manifest(
    method: Method,
    model: torch.nn.Module,
    df: pl.DataFrame,
    transform,
    **embed_kwargs,
) -> np.ndarray:
    """The method's test-time embedding of every row of ``df`` (the model in eval mode meanwhile)."""
    was_training = model.training
    model.eval()
    try:
        return embed_rows(lambda images: method.embed(model, images), df, transform, **embed_kwargs)
    finally:
        model.train(was_training)


def evaluate_split(
    method: Method,
    model: torch.nn.Module,
    df: pl.DataFrame,
    transform,
    split: str,
    *,
    protocol: str | None = None,
    use_masked: bool = True,
    config: MethodConfig | None = None,
    **embed_kwargs,
) -> dict[str, float]:
    """Metrics of ``model`` on the rows of ``split`` (names as evaluate_manifest returns them), and with
    ``config`` the method's own ``evaluation_scores`` (e.g. PAW-ViT's ``part_mIoU``).

    Masked images when the rows have them; rows whose segmentation failed are left out (with a
    warning), never evaluated on their original image among masked ones."""
    rows = df.filter(pl.col("split") == split)
    if rows.is_empty():
        raise ValueError(f"the manifest has no {split!r} rows to evaluate on")
    images = images_to_evaluate(rows, use_masked, split)
    features = embed_manifest(method, model, images.rows, transform, column=images.column, **embed_kwargs)
    scores = evaluate_manifest(features, images.rows, protocol or protocol_for(rows), split=None)
    if config is not None:
        scores |= method.evaluation_scores(model, config, images.rows, images.column, transform,
                                           batch_size=embed_kwargs.get("batch_size", 64),
                                           device=embed_kwargs.get("device", "cpu"))
    return scores
