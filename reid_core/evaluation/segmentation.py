"""Semantic-segmentation scores: a confusion matrix accumulated over images, per-class IoU, mean IoU and
the mean IoU of chance.

IoU_c = TP_c / (TP_c + FP_c + FN_c) over every pixel of every image (the dataset-level IoU of
semantic-segmentation benchmarks, not a mean of per-image IoUs); the mean runs over the classes that
occur in the targets or the predictions (a class absent from both has no IoU). Chance: a guess per pixel
drawn independently of the image with the targets' class frequencies p_c has expected IoU
p_c / (2 - p_c) (intersection p_c^2, union 2 p_c - p_c^2); its mean over the classes present in the
targets is ``chance_mean_iou``.
"""

from __future__ import annotations

import numpy as np
import torch


def confusion_matrix(predictions: torch.Tensor, targets: torch.Tensor, num_classes: int) -> np.ndarray:
    """(C, C) int64 counts, rows the target class, columns the predicted one, of equal-shape label tensors."""
    if predictions.shape != targets.shape:
        raise ValueError(f"predictions and targets must have one shape, got {tuple(predictions.shape)} and "
                         f"{tuple(targets.shape)}")
    p, t = predictions.reshape(-1).long().cpu(), targets.reshape(-1).long().cpu()
    if len(t) and (min(int(p.min()), int(t.min())) < 0 or max(int(p.max()), int(t.max())) >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}")
    counts = torch.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).numpy().astype(np.int64)


def class_iou(confusion: np.ndarray) -> np.ndarray:
    """(C,) IoU per class; NaN for a class absent from targets and predictions alike."""
    confusion = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def mean_iou(confusion: np.ndarray) -> float:
    """The mean of ``class_iou`` over the classes with a union (NaN when there is no pixel at all)."""
    iou = class_iou(confusion)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


def chance_mean_iou(confusion: np.ndarray) -> float:
    """Expected mean IoU of a per-pixel guess drawn with the targets' class frequencies (see above)."""
    totals = np.asarray(confusion, dtype=np.float64).sum(1)
    if totals.sum() == 0:
        return float("nan")
    frequency = totals[totals > 0] / totals.sum()
    return float(np.mean(frequency / (2.0 - frequency)))
