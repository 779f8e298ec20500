"""ARBase: OpenAnimals' animal re-ID baseline (ICCV 2025, arXiv 2410.00204), method "arbase".

ResNet-50 (ImageNet) with IBN-a in layer1..layer3 and last stride 1, global + 2-part + 3-part heads
(GAP / stripe pooling -> Linear -> BNNeck), batch-hard triplet before the BNNeck and label-smoothed CE
after it, 384 x 384 input with horizontal flip only, P x K batches, Adam + cosine annealing.

- ``network.py``: the IBN-a conversion of a timm ResNet, the trunk and the heads (the multi-branch part
  is a shared-trunk simplification of MGN, documented there);
- ``training.py``: the loss and the single ``main`` stage;
- ``config.py``: every knob, with where its default comes from (paper or fast-reid);
- ``recipe.py``: presets (``paper``, ``cpu``), search space, the lr schedule;
- ``method.py``: transforms, ``embed``.

Pretrained weights: ``pretrained=True`` takes timm's ImageNet ResNet-50, whose BN weights fill only the
BN half of each IBN layer (the IN half starts at 1 / 0), so it is not the IBN-a ImageNet model the paper
(via fast-reid) starts from; give that one (XingangPan/IBN-Net ``resnet50_ibn_a``) as a local path or
s3:// URI of its state_dict and it loads by key. Nothing here imports Ray or MLflow.
"""

from reid_core.methods.arbase.method import ARBaseMethod

__all__ = ["ARBaseMethod"]
