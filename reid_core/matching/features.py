"""What a matcher produces, as plain data: an image's local features and a pair's verified matches.

Features are cached per image (``pipelines.match``), so they round-trip through bytes: ``np.savez`` with
``allow_pickle=False``, so reading a cache file never runs code.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np

_KEYPOINTS, _DESCRIPTORS, _EXTRA = "keypoints", "descriptors", "extra/"


@dataclass(frozen=True)
class LocalFeatures:
    keypoints: np.ndarray  # (N, 2) float32, x, y in pixels of the image the features were extracted from
    descriptors: np.ndarray  # (N, D) float32
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # matcher-specific (image size, scales, ...)

    def __len__(self) -> int:
        return int(self.keypoints.shape[0])

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        arrays = {_KEYPOINTS: self.keypoints, _DESCRIPTORS: self.descriptors}
        arrays.update({_EXTRA + key: np.asarray(value) for key, value in self.extra.items()})
        np.savez(buffer, allow_pickle=False, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> LocalFeatures:
        with np.load(io.BytesIO(data), allow_pickle=False) as stored:
            extra = {key.removeprefix(_EXTRA): stored[key] for key in stored.files if key.startswith(_EXTRA)}
            return cls(stored[_KEYPOINTS].astype(np.float32, copy=False),
                       stored[_DESCRIPTORS].astype(np.float32, copy=False), extra)

    @classmethod
    def empty(cls, descriptor_dim: int, extra: dict[str, np.ndarray] | None = None) -> LocalFeatures:
        """No keypoints (a blank image): a valid result, not an error."""
        return cls(np.zeros((0, 2), np.float32), np.zeros((0, descriptor_dim), np.float32), extra or {})


@dataclass(frozen=True)
class PairMatch:
    score: float  # sift: RANSAC-verified inlier count; lightglue: confident matches (or summed confidence)
    keypoints_a: np.ndarray  # (M, 2) verified matches in image a's pixels, for drawing lines
    keypoints_b: np.ndarray  # (M, 2) their partners in image b

    @property
    def matches(self) -> int:
        return int(self.keypoints_a.shape[0])

    @classmethod
    def none(cls) -> PairMatch:
        """No match at all (an image without keypoints, too few tentative matches)."""
        empty = np.zeros((0, 2), np.float32)
        return cls(0.0, empty, empty)
