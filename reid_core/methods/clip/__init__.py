"""The CLIP family on open_clip: the shared backbone and the two baselines of CARE's paper.

- ``clip_zs`` (CLIP-ZeroShot): the frozen CLIP image encoder's test features, no training;
- ``clip_ft`` (CLIP-FineTuning): the image encoder fine-tuned with label-smoothed ID + triplet losses.
``care`` (``methods.care``) builds on the same modules. The names have underscores: registered models are
``reid-<method>-<species>`` with ``[a-z0-9_]`` parts (``tracking.registry``), so ``clip-zs`` could not register.

- ``config.py``: the shared sections and their sources; ``backbone.py``: open_clip's towers as the
  methods run them (three image features, prompt embeddings into the text tower, the positional grid
  resized to the input); ``network.py``: the image branch with its BNNecks; ``training.py``: the
  fine-tuning stage; ``recipe.py``: presets, search space, the lr schedule; ``transforms.py``;
  ``method.py``.

Nothing here imports Ray or MLflow.
"""

from reid_core.methods.clip.method import ClipFTMethod, ClipZSMethod

__all__ = ["ClipFTMethod", "ClipZSMethod"]
