"""CARE (Wu et al., "Overcoming Fine-Grained Visual Challenges in Animal Re-Identification via Semantic
Feature Alignment"), method "care", on open_clip.

Phase 1 learns VDTDG (per-identity context tokens + an image-conditioned shift in "A photo of a X..X
<species>.") on frozen image features with the image-to-text and text-to-image supervised contrastive
losses; between the phases every training identity gets a textual prototype (the mean of its images'
text features), kept with the model; phase 2 fine-tunes the image encoder with ID, triplet and
image-to-prototype losses. The tuner counts phase 2 only.

- ``config.py``: CARE's knobs, sources and where the authors' code and paper disagree;
- ``prompts.py``: VDTDG; ``prototypes.py``: the fusion; ``features.py``: the frozen feature cache;
- ``network.py``: ``CareNet``; ``training.py``: the two stages; ``figures.py``: the prototype t-SNE;
- ``recipe.py``: presets, search space, phase 1's lr schedule; ``method.py``: the contract. The CLIP
  backbone and fine-tuning are ``methods.clip``'s.

Nothing here imports Ray or MLflow.
"""

from reid_core.methods.care.method import CareMethod

__all__ = ["CareMethod"]
