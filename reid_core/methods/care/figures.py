"""CARE's supplementary Fig. 1b for a trained model: the textual prototypes (crosses) among the test
images' visual features (dots, one colour per individual), in one joint t-SNE (the project's embedding
plot's projection, ``reports.model_pictures.project_2d``).

Both are L2-normalised CLIP projections (the space L_i2pCon aligns). The prototypes belong to the
training identities; where the test individuals are others (disjoint splits), the crosses show where
the training identities' descriptions lie relative to the new animals' clusters.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from PIL import Image

from reid_core.methods.care.features import encode_rows
from reid_core.methods.contract import StageContext, unwrap
from reid_core.reports.model_pictures import individual_scatter, plot_sample, project_2d


def prototype_plot(prototypes: np.ndarray, features: np.ndarray, individuals: list[str], title: str,
                   seed: int = 0) -> Image.Image:
    """One t-SNE of prototypes (P, E) and image features (N, E); 700 x 600 px."""
    features, individuals_array = plot_sample(features, individuals, seed)
    points, how = project_2d(np.concatenate([prototypes, features]), seed)
    crosses, dots = points[:len(prototypes)], points[len(prototypes):]

    def draw_prototypes(ax) -> None:
        ax.scatter(crosses[:, 0], crosses[:, 1], s=70, marker="x", color="black", linewidths=1.5,
                   label=f"prototypes ({len(prototypes)} training identities)")

    count = len(set(individuals_array.tolist()))
    return individual_scatter(dots, individuals_array, f"{title}\n{how}: {len(dots)} test images, {count} "
                              f"individuals, {len(prototypes)} textual prototypes", draw_prototypes)


def prototype_figure(network: torch.nn.Module, transform: Callable, rows: pl.DataFrame, column: str,
                     title: str = "care") -> Image.Image | None:
    """The figure of a CARE network on test ``rows`` (images in ``column``); None without prototypes or rows."""
    net = unwrap(network)
    if rows.is_empty() or not bool(getattr(net, "prototypes_ready", False)):
        return None
    device = net.prototypes.device
    context = StageContext(rows=rows, device=device, image_column=column)
    features, _ = encode_rows(lambda images: net.image.encoder(images)["proj"], net, context, transform)
    column_of_names = "individual" if "individual" in rows.columns and rows["individual"].null_count() == 0 \
        else "entity"
    return prototype_plot(F.normalize(net.prototypes.float(), dim=1).cpu().numpy(),
                          F.normalize(features, dim=1).numpy(), rows[column_of_names].to_list(), title)
