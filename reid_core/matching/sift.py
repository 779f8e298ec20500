"""SIFT (kornia, grayscale, RootSIFT descriptors) + ratio or mutual-nearest matching + RANSAC: no weights,
so it is the default that works everywhere. Score: the number of RANSAC-verified matches."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from kornia.feature import SIFTFeature, get_laf_center, match_smnn, match_snn

from reid_core.matching.features import LocalFeatures, PairMatch
from reid_core.matching.images import is_blank, prepare
from reid_core.matching.verification import verify

DESCRIPTOR_DIM = 128
MATCHING = ("snn", "smnn")  # Lowe's ratio test; the same, both ways (mutual)


@dataclass(frozen=True)
class SiftOptions:
    num_features: int = 1024
    min_side: int = 256  # small crops are upsampled: SIFT finds few keypoints on ~100 px animals
    max_side: int = 640
    matching: str = "smnn"
    ratio: float = 0.9  # kornia's threshold on the distance ratio (match_snn: lower is stricter)
    verify_model: str = "homography"
    ransac_threshold: float = 4.0  # px of the input image
    ransac_iterations: int = 200
    min_matches: int = 6

    def __post_init__(self) -> None:
        if self.matching not in MATCHING:
            raise ValueError(f"matching must be one of {', '.join(MATCHING)}, got {self.matching!r}")


class SiftMatcher:
    name = "sift"

    def __init__(self, options: dict | None = None, device: str = "cpu") -> None:
        self.options = SiftOptions(**(options or {}))
        self.device = device
        self.sift = SIFTFeature(num_features=self.options.num_features, device=torch.device(device)).eval()

    def extract(self, image: np.ndarray) -> LocalFeatures:
        o = self.options
        size = np.array(image.shape[1::-1], np.float32)  # (W, H) of the input
        if is_blank(image):  # a blank mask: nothing to find, whatever a detector makes of flat pixels
            return LocalFeatures.empty(DESCRIPTOR_DIM, {"image_size": size})
        prepared = prepare(image, min_side=o.min_side, max_side=o.max_side, gray=True, device=self.device)
        with torch.inference_mode():
            lafs, _, descriptors = self.sift(prepared.tensor)
        keypoints = prepared.to_input(get_laf_center(lafs)[0])
        return LocalFeatures(keypoints.cpu().numpy().astype(np.float32),
                             descriptors[0].cpu().numpy().astype(np.float32), {"image_size": size})

    def match(self, a: LocalFeatures, b: LocalFeatures) -> PairMatch:
        o = self.options
        if len(a) < 2 or len(b) < 2:  # the ratio test needs two neighbours
            return PairMatch.none()
        desc_a, desc_b = (torch.from_numpy(f.descriptors).to(self.device) for f in (a, b))
        with torch.inference_mode():
            pick = match_smnn if o.matching == "smnn" else match_snn
            _, indices = pick(desc_a, desc_b, o.ratio)
        indices = indices.cpu().numpy()
        points_a, points_b = a.keypoints[indices[:, 0]], b.keypoints[indices[:, 1]]
        inliers = verify(torch.from_numpy(points_a), torch.from_numpy(points_b), model=o.verify_model,
                         threshold=o.ransac_threshold, max_iter=o.ransac_iterations, min_matches=o.min_matches)
        return PairMatch(float(inliers.sum()), points_a[inliers], points_b[inliers])
