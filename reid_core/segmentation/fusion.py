"""Fusing SAM's mask proposals with a foreground mask (AER, eq. 1 and supplementary A.8), per species.

Pure numpy on boolean H x W arrays. A criterion returns a ``Fusion``; its ``mask`` is None when nothing
passes, and a no-pass policy (``resolve``) then decides what the image gets, where AER's code raised an
IndexError.

Criteria (``theta`` defaults in ``DEFAULT_THETA``):
- ``largest_iou`` (AER, ATRW tigers): the single largest SAM mask m; if the foreground covers more than
  ``min_foreground_ratio`` of the image and IoU(m, foreground) < theta, m is inverted (SAM's largest
  mask was the background).
- ``coverage`` (AER, ELPephants): the union of SAM masks with |m ∩ F| / |m| > theta (strict, as AER's code).
- ``iou_union`` (eq. 1 with IoU as h): the union of SAM masks with IoU(m, F) >= theta.
- ``sam_only``: the largest SAM mask (the prompted mode's single mask: AER's yak training images).
- ``foreground_only``: the foreground mask (AER's yak test images).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CRITERIA = ("largest_iou", "coverage", "iou_union", "sam_only", "foreground_only")
DEFAULT_THETA = {"largest_iou": 0.3, "coverage": 0.5, "iou_union": 0.5}
NEEDS_FOREGROUND = {"largest_iou", "coverage", "iou_union", "foreground_only"}
NEEDS_PROPOSALS = {"largest_iou", "coverage", "iou_union", "sam_only"}
POLICIES = ("fallback", "keep", "flag")


@dataclass(frozen=True)
class Fusion:
    mask: np.ndarray | None  # None: nothing passed the criterion
    accepted: tuple[int, ...] = ()  # indices of the proposals that make up the mask
    inverted: bool = False  # largest_iou flipped the mask
    reason: str | None = None  # why nothing passed


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def coverage(mask: np.ndarray, foreground: np.ndarray) -> float:
    """The fraction of ``mask`` that lies on the foreground."""
    area = mask.sum()
    return float(np.logical_and(mask, foreground).sum() / area) if area else 0.0


def _largest(masks: Sequence[np.ndarray]) -> int:
    # argmax keeps the first of equal areas, as AER's stable sort by area did.
    return int(np.argmax([m.sum() for m in masks]))


def largest_iou(masks: Sequence[np.ndarray], foreground: np.ndarray, theta: float = 0.3,
                min_foreground_ratio: float = 0.1) -> Fusion:
    if not masks:
        return Fusion(None, reason="SAM proposed no mask")
    index = _largest(masks)
    mask = masks[index]
    inverted = bool(foreground.mean() > min_foreground_ratio and iou(mask, foreground) < theta)
    if inverted:
        mask = ~mask
    if not mask.any():
        return Fusion(None, (index,), inverted, "the largest SAM mask, inverted, is empty" if inverted
                      else "the largest SAM mask is empty")
    return Fusion(mask, (index,), inverted)


def _union(masks: Sequence[np.ndarray], accepted: list[int], reason: str) -> Fusion:
    if not accepted:
        return Fusion(None, reason=reason)
    return Fusion(np.logical_or.reduce([masks[i] for i in accepted]), tuple(accepted))


def coverage_union(masks: Sequence[np.ndarray], foreground: np.ndarray, theta: float = 0.5) -> Fusion:
    accepted = [i for i, m in enumerate(masks) if coverage(m, foreground) > theta]
    return _union(masks, accepted, f"no SAM mask ({len(masks)} proposed) has more than {theta:g} of its "
                                   "area on the foreground")


def iou_union(masks: Sequence[np.ndarray], foreground: np.ndarray, theta: float = 0.5) -> Fusion:
    accepted = [i for i, m in enumerate(masks) if iou(m, foreground) >= theta]
    return _union(masks, accepted, f"no SAM mask ({len(masks)} proposed) has IoU >= {theta:g} with the "
                                   "foreground")


def sam_only(masks: Sequence[np.ndarray]) -> Fusion:
    if not masks:
        return Fusion(None, reason="SAM proposed no mask")
    index = _largest(masks)
    if not masks[index].any():
        return Fusion(None, (index,), reason="the SAM mask is empty")
    return Fusion(masks[index], (index,))


def foreground_only(foreground: np.ndarray) -> Fusion:
    return Fusion(foreground) if foreground.any() else Fusion(None, reason="the foreground mask is empty")


def fuse(criterion: str, masks: Sequence[np.ndarray] | None, foreground: np.ndarray | None,
         theta: float | None = None, min_foreground_ratio: float = 0.1) -> Fusion:
    """Apply ``criterion`` (one of ``CRITERIA``); ``theta=None`` takes the criterion's default."""
    if criterion not in CRITERIA:
        raise ValueError(f"unknown fusion criterion {criterion!r}; choose one of {', '.join(CRITERIA)}")
    if criterion in NEEDS_FOREGROUND and foreground is None:
        raise ValueError(f"criterion {criterion} needs a foreground mask")
    if criterion in NEEDS_PROPOSALS and masks is None:
        raise ValueError(f"criterion {criterion} needs SAM proposals")
    theta = DEFAULT_THETA.get(criterion) if theta is None else float(theta)
    if criterion == "largest_iou":
        return largest_iou(masks, foreground, theta, min_foreground_ratio)
    if criterion == "coverage":
        return coverage_union(masks, foreground, theta)
    if criterion == "iou_union":
        return iou_union(masks, foreground, theta)
    if criterion == "sam_only":
        return sam_only(masks)
    return foreground_only(foreground)


def resolve(fusion: Fusion, foreground: np.ndarray | None, policy: str,
            shape: tuple[int, int]) -> tuple[np.ndarray, str, str | None]:
    """(mask, seg_status, message) for an image. When nothing passed, the no-pass ``policy`` decides:

    - ``fallback``: the foreground mask, status ``fallback``;
    - ``keep``: the whole image (all True), status ``fallback``: train on it unmasked;
    - ``flag``: the whole image, status ``flagged``, for a person to look at.
    With no usable foreground mask ``fallback`` becomes ``flag``.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown no-pass policy {policy!r}; choose one of {', '.join(POLICIES)}")
    if fusion.mask is not None:
        return fusion.mask, "ok", None
    whole = np.ones(shape, dtype=bool)
    if policy == "fallback" and foreground is not None and foreground.any():
        return foreground, "fallback", f"{fusion.reason}: used the foreground mask"
    if policy == "keep":
        return whole, "fallback", f"{fusion.reason}: kept the whole image"
    if policy == "fallback":
        return whole, "flagged", f"{fusion.reason} and no foreground mask to fall back on: kept the whole image"
    return whole, "flagged", f"{fusion.reason}: kept the whole image, flagged for review"
