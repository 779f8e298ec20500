"""PAW-ViT (Part-AWare animal re-identification ViT, WACV 2026), method "pawvit".

A ViT-B/16 at 256 x 256 (timm ``vit_base_patch16_224.orig_in21k_ft_in1k``) whose [CLS] token is replaced
by K part tokens and a background token. An ATM decoder turns each token's attention over the patches
into a mask distilled from the teacher's part masks (exp-log Dice + CE); an aggregation token fuses the
K part tokens into the descriptor (BNNeck, label-smoothed CE, cosine batch-hard triplet); each part
token predicts the side (BCE, visible parts only). Trained on every image plus its mirror as a new
identity, with image and part mask rotated together. At test time only the aggregated descriptor is
used (pre-BN, L2-normalised; flip-concatenated with ``input.test_flip``).

- ``config.py``: every knob, its source, and where paper and code disagree;
- ``backbone.py``: the part-token ViT and the pretrained-weights conversion;
- ``network.py``: ATM decoder, aggregation block, heads; ``targets.py``: label maps -> K+1 targets;
- ``losses.py``: the multi-task loss; ``training.py``: the stage; ``transforms.py``: image + mask;
- ``recipe.py``: presets, search space (narrowed per species), the lr schedule (the ViT's);
- ``method.py``: training view, the contract; ``figures.py``: the part attention maps (Fig. 2).

Nothing here imports Ray or MLflow.
"""

from reid_core.methods.pawvit.method import PawViTMethod

__all__ = ["PawViTMethod"]
