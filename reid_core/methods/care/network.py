"""CARE's network: CLIP's image branch (``ClipImageReID``, the part phase 2 trains and the test embedding
uses), the frozen text tower, VDTDG and the prototype bank.

    forward(images)                          -> the image branch's features and logits (phase 2)
    forward(image_features=v, labels=y)      -> image-specific text features T(prompt(y, v)) (phase 1)

Both go through ``forward`` so that DDP sees every training step. The prototypes are buffers: saved in
every checkpoint and with the registered model, so a resume finds them instead of recomputing them
from an encoder that phase 2 has moved.
"""

from __future__ import annotations

import torch
from torch import nn

from reid_core.methods.care.config import CareConfig
from reid_core.methods.care.prompts import PromptLearner
from reid_core.methods.clip.backbone import ClipImageEncoder, ClipTextEncoder, build_clip
from reid_core.methods.clip.network import ClipImageReID

TOKENIZER_VOCAB = 49408  # CLIP's BPE tokenizer, which the prompt is tokenised with


class CareNet(nn.Module):
    def __init__(self, image: ClipImageReID, text: ClipTextEncoder, prompt: PromptLearner, num_classes: int) -> None:
        super().__init__()
        self.image = image
        self.text = text
        self.prompt = prompt
        self.register_buffer("prototypes", torch.zeros(num_classes, image.encoder.output_dim))
        self.register_buffer("prototypes_ready", torch.tensor(False))

    def forward(self, images: torch.Tensor | None = None, *, image_features: torch.Tensor | None = None,
                labels: torch.Tensor | None = None):
        if image_features is not None:
            return self.describe(image_features, labels)
        return self.image(images)

    def describe(self, image_features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Image-specific text features (B, E) of images with frozen features ``image_features`` (B, E)."""
        embeddings, tokens = self.prompt(labels, image_features, self.text.token_embedding)
        return self.text(embeddings, tokens)

    def set_prototypes(self, prototypes: torch.Tensor) -> None:
        self.prototypes.copy_(prototypes)
        self.prototypes_ready.fill_(True)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.image.embed(images)


def build_network(config: CareConfig, num_classes: int) -> CareNet:
    clip = build_clip(config.backbone, config.input.height, config.input.width)
    image = ClipImageReID(ClipImageEncoder(clip.visual), num_classes)
    text = ClipTextEncoder(clip)
    if text.token_embedding.num_embeddings != TOKENIZER_VOCAB:
        raise ValueError(f"care tokenises its prompt with CLIP's BPE tokenizer ({TOKENIZER_VOCAB} tokens), but the "
                         f"text tower has {text.token_embedding.num_embeddings}: set text_cfg.vocab_size in "
                         "backbone.model_cfg, or choose an OpenAI-style CLIP in backbone.name")
    prompt = PromptLearner(num_classes, config.text.prompt_tokens, text.width, image.encoder.output_dim,
                           text.context_length, hidden_ratio=config.text.meta_hidden_ratio,
                           init_std=config.text.context_init_std)
    return CareNet(image, text, prompt, num_classes)
