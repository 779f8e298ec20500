"""Geometric verification: keep the tentative matches that one transformation of the image explains.

Two photos of the same flank relate by (roughly) one homography, since the coat is nearly planar at the
scale of a photo; a different individual's similar-looking stripes match here and there but agree on no
single transformation. kornia's RANSAC (MSAC scoring, seeded: the same pair gives the same score).
"""

from __future__ import annotations

import numpy as np
import torch
from kornia.geometry import RANSAC

MIN_SAMPLE = {"homography": 4, "fundamental": 8}


def verify(points_a: torch.Tensor, points_b: torch.Tensor, *, model: str = "homography", threshold: float = 3.0,
           max_iter: int = 50, min_matches: int = 6, seed: int = 0) -> np.ndarray:
    """Boolean inlier mask over the (M, 2) tentative matches; all False when there are fewer than
    ``min_matches`` (a model fitted to its minimal sample explains it trivially) or RANSAC finds nothing."""
    count = int(points_a.shape[0])
    if model not in MIN_SAMPLE:
        raise ValueError(f"unknown verification model {model!r}: use one of {', '.join(MIN_SAMPLE)}")
    if count < max(min_matches, MIN_SAMPLE[model] + 1):
        return np.zeros(count, dtype=bool)
    ransac = RANSAC(model_type=model, inl_th=threshold, max_iter=max_iter, seed=seed, batch_size=128)
    try:
        _, inliers = ransac(points_a.float(), points_b.float())
    except Exception:  # degenerate configurations (collinear points): nothing verified
        return np.zeros(count, dtype=bool)
    return inliers.reshape(-1).cpu().numpy().astype(bool)
