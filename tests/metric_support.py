"""An independent test mAP, to check the value a pipeline logs rather than only that it lies in [0, 1].

The embeddings come from the model the test holds (in memory or loaded from the registry) and are ranked
the plain way, one query at a time with scikit-learn's average precision, under the rules of the
"disjoint" protocol that the synthetic manifests use: query against gallery by cosine similarity, a
gallery image of the query's entity from the query's camera left out (junk), queries without any
positive skipped. None of reid_core's evaluation code is involved.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl
import torch
from sklearn.metrics import average_precision_score

from reid_core.data.dataset import ManifestDataset


def embed_images(embed: Callable[[torch.Tensor], torch.Tensor], rows: pl.DataFrame, transform,
                 batch_size: int = 16) -> np.ndarray:
    """``embed`` of every row's original image (the synthetic manifests have no masked images)."""
    assert "masked_uri" not in rows.columns, "this reference embeds the original images only"
    dataset = ManifestDataset(rows, transform, column="image_uri")
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(dataset), batch_size):
            images = torch.stack([dataset[i]["image"] for i in range(start, min(start + batch_size, len(dataset)))])
            chunks.append(embed(images).float().cpu().numpy())
    return np.concatenate(chunks)


def disjoint_map(features: np.ndarray, rows: pl.DataFrame) -> float:
    """Mean average precision of the query rows against the gallery rows (``role``), as defined above."""
    roles = np.asarray(rows["role"].to_list(), dtype=object)
    assert set(roles) == {"query", "gallery"}, f"expected query and gallery rows only, got {set(roles)}"
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    entity, camera = rows["entity"].to_numpy(), rows["camera"].to_numpy()
    q, g = np.flatnonzero(roles == "query"), np.flatnonzero(roles == "gallery")
    similarity = unit[q] @ unit[g].T
    aps = []
    for i, query in enumerate(q):
        same = entity[g] == entity[query]
        kept = ~(same & (camera[g] == camera[query]))
        if same[kept].any():
            aps.append(average_precision_score(same[kept], similarity[i, kept]))
    assert aps, "no query has a positive"
    return float(np.mean(aps))


def reference_test_map(embed: Callable[[torch.Tensor], torch.Tensor], rows: pl.DataFrame, species: str,
                       transform) -> float:
    """The independent test mAP of ``embed`` on ``species``' test rows of a synthetic manifest."""
    test = rows.filter((pl.col("species") == species) & (pl.col("split") == "test"))
    return disjoint_map(embed_images(embed, test, transform), test)
