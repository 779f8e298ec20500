"""Label-smoothed cross-entropy for identities and for the orientation (left/right) head.

AER's ``LabelSmoothingCrossEntropy(0.1)`` is ``nn.CrossEntropyLoss(label_smoothing=0.1)``: the smoothed
target puts ``1 - eps + eps/C`` on the true class and ``eps/C`` elsewhere. The paper's L_LR (Eq. 6) is a
binary cross-entropy; the code uses a 2-way softmax with the same smoothing, which is what we do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

UNKNOWN_SIDE = -1


def identity_loss(logits: torch.Tensor, labels: torch.Tensor, smoothing: float = 0.1) -> torch.Tensor:
    """Label-smoothed CE over the training identities."""
    return F.cross_entropy(logits, labels.long(), label_smoothing=smoothing)


def orientation_loss(logits: torch.Tensor, sides: torch.Tensor, smoothing: float = 0.1) -> torch.Tensor:
    """Label-smoothed CE over {0: left, 1: right}; images with side -1 (unknown) are ignored.

    A batch without any known side gives 0 (not the NaN of an all-ignored mean), still attached to the
    graph so the orientation head counts as used under DDP.
    """
    sides = sides.long()
    if not bool((sides != UNKNOWN_SIDE).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, sides, ignore_index=UNKNOWN_SIDE, label_smoothing=smoothing)
