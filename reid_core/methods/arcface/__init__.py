"""ArcFace: the AnimalCLEF25 recipe's global-embedding baseline, method "arcface".

A timm backbone (EfficientNet-B3 with ImageNet weights in the paper preset; ResNet-50 is the slides'
alternative), its globally pooled features -> Linear -> 512-d embedding (BN optional), trained with the
ArcFace loss (additive angular margin 0.5 rad = 28.6 deg, scale 64; pytorch-metric-learning's
``ArcFaceLoss``, whose class weights live in the network) on random batches, AdamW with a warm-up +
cosine schedule, 384 x 384 input with horizontal flips. Test-time features are the L2-normalised
embeddings.

- ``config.py``: every knob and where its default comes from (slides, ArcFace paper, or our choice);
- ``network.py``: ``ArcFaceNet`` (the loss runs inside ``forward`` so DDP sees its weights);
- ``training.py``: the ``main`` stage;
- ``recipe.py``: presets (``paper``, ``cpu``), search space, the lr schedule;
- ``method.py``: transforms, ``embed``.

Nothing here imports Ray or MLflow.
"""

from reid_core.methods.arcface.method import ArcFaceMethod

__all__ = ["ArcFaceMethod"]
