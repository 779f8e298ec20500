"""The ViT-B/16 baseline of PAW-ViT (WACV 2026), method "vit".

timm's ``vit_base_patch16_224`` at 256 x 256 (in21k -> in1k weights, position embeddings resampled to
the 16 x 16 grid), the [CLS] feature -> BNNeck (BN with a frozen zero bias, then the identity
classifier), label-smoothed CE (0.2) on the BN output + 0.5 x batch-hard triplet with the cosine
distance (1 - cos) / 2 and margin 0.4 on the pre-BN feature, P x K = 8 x 16, AdamW (lr 8.5e-5, wd 5e-4)
with timm's warm-up + cosine, random rotation +-15 deg and mean = std = 0.5. Test-time features are
the L2-normalised pre-BN [CLS] features.

Not reproduced here: PAW-ViT's offline horizontal flips of the training set as new identities (its
``ATRW_augmented_double_entity`` lists): the manifest and dataset have no flipped-copy rows yet; add
them to the manifest to train as the paper did.

- ``config.py``: every knob and its source; ``network.py``: ``ViTReID`` and the weights loading;
- ``training.py``: the loss, the ``main`` stage; ``method.py``: transforms;
- ``recipe.py``: presets, search space, the lr schedule.

Nothing here imports Ray or MLflow.
"""

from reid_core.methods.vit.method import ViTMethod

__all__ = ["ViTMethod"]
