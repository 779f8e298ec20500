"""AER: SE-ResNet re-ID with circle loss, orientation head and DVE part-aware descriptors (method "dve").

Yu et al., "Addressing the Elephant in the Room" (AER); authors' code Chloe-Yu/Animal-Re-ID. The network:

    x -> stem -> layer1 -> layer2 -> layer3 -> layer4 -> GAP -> Linear(C4 -> 512) -> BN1d -> Dropout(0.5) -> f
                             |                                                                 |-> Linear(512 -> C_id)
                             +-> Conv1x1(-> 64) -> BN2d -> ReLU = DVE descriptors Phi(x)       +-> Linear(512 -> 2)

and the loss ``L = L_ID + L_LR + lambda_reid * L_circle + lambda_dve * L_DVE`` (paper Eq. 8).

Backbone (any timm ResNet-family model: ``legacy_seresnet50`` is the AER checkpoint
``se_resnet50-ce0d4300.pth``; ``legacy_seresnet18`` / ``resnet18`` are the small CPU variants):
- ``smallscale`` (AER ``tiger_cnn5_512(stride=1, smallscale=True)``, the paper's "reduced by a factor of
  8"): layer2 and layer4 get stride 1, so at 224 px layer2 is 56 x 56 (stride 4), layer4 28 x 28.
- ``stride_on_3x3``: AER's local SE-ResNet copy strides the 3 x 3 conv of a down-sampling block; timm's
  legacy SENet (like Caffe/Cadene) strides the first 1 x 1 conv. True reproduces AER's computation with
  the same weights (only layer3 is strided under ``smallscale``).
- DVE descriptors are taken from ``dve_stage`` (None: the deepest stage with output stride 4). With
  ``smallscale`` that is layer2, AER's choice ("3rd conv block", 56 x 56); without it, layer1.
  AER runs the DVE images through passes of the trunk separate from the re-ID pass, one for the pair's
  source and one for its target (``dve_forward`` twice in its ``train.py``), so in train mode each gets
  its own BN batch statistics. ``DVENet.forward`` always gives the DVE images a pass of their own; the
  pair's two halves get one pass each with ``losses.dve_separate_passes`` (the ``paper`` preset, AER's)
  or share one concatenated pass (the ``cpu`` preset), and their BN batch statistics with it.

Presets, search space and lr schedule: ``recipe.py``; the trunk: ``reid_core.nn.resnet_trunk``.
Training (``training.py``): SGD Nesterov, heads at ``lr`` and the backbone at ``lr * 0.1``, step decay x0.1 after 2/3 of the epochs, and a warm-up of 3 epochs with the backbone frozen
(``requires_grad=False``; its BN layers keep updating their statistics since the model stays in train
mode) as its own stage, while the loss is multiplied by a factor rising linearly from 0.01 to 1 over the warm-up
iterations (AER, "to be consistent with PGCFL"). Each step flips a random half of the re-ID inputs
(known sides become 1 - side) and builds the DVE pairs with a random TPS warp of the (unflipped) batch.

Where this differs from the authors' code (each a documented choice, see ``config.py``):
- the circle loss: gamma 64 (paper) instead of the code's 32; the pooled loss divided by the batch size
  as the code does (``circle_divide_by_batch``; the paper's Eq. 8 shows no normalisation);
- AER feeds the *doubly warped* image to the re-ID branch and reuses its layer2 for DVE, and its
  whole-batch flip then mirrors the DVE source without mirroring the warp grid; here the re-ID branch
  sees the unwarped image and the DVE pair is never flipped;
- AER applies pad/crop/erasing independently to each warped image (shifting the correspondence by up
  to 10 px); here the batch is augmented once and warped afterwards, so the grid is exact;
- the per-image flip (``flip_mode="image"``) instead of AER's one coin per batch (``"batch"``);
- Cutout is on (``cutout_p=0.5``) as in the code; the paper only mentions "patch erasing".

Nothing here imports Ray or MLflow.
"""

from reid_core.methods.dve.method import DVEMethod

__all__ = ["DVEMethod"]
