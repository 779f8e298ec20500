"""VDTDG, CARE's image-specific text description generator (the authors' ``PromptLearner``).

The prompt ``"A photo of a X X ... X <species>."`` is tokenised once with CLIP's BPE tokenizer; its
token embeddings come from the frozen text tower, and the w X's are replaced by

    context[identity] (w x D, learnt) + meta_net(frozen image feature) (1 x D, the same for all w)

The template's token ids are a buffer of the full context length, so their shape does not depend on the
species word: the template is set when training starts (from the rows' species) and saved with the model.
"""

from __future__ import annotations

import torch
from torch import nn

TEMPLATE_PREFIX = "a photo of a"  # CLIP's tokenizer lower-cases: "A photo of a"
CONTEXT_START = 5  # [SOS] a photo of a -> the first X


def prompt_text(prompt_tokens: int, species: str) -> str:
    return f"A photo of a {' '.join(['X'] * prompt_tokens)} {species}."


def tokenize_template(prompt_tokens: int, species: str, context_length: int) -> torch.Tensor:
    """(1, context_length) token ids of the prompt, checked to fit and to have the X's where they are replaced."""
    from open_clip.tokenizer import SimpleTokenizer

    tokenizer = SimpleTokenizer(context_length=context_length)
    text = prompt_text(prompt_tokens, species)
    ids = tokenizer.encode(text)
    if len(ids) + 2 > context_length:  # + [SOS] and [EOT]
        raise ValueError(f"the prompt {text!r} has {len(ids) + 2} tokens, more than the text tower's context length "
                         f"{context_length}: lower text.prompt_tokens or give a shorter text.species")
    tokens = tokenizer(text)
    x_token = tokenizer.encoder["x</w>"]
    if tokenizer.encode(TEMPLATE_PREFIX) != ids[:CONTEXT_START - 1] or \
            tokens[0, CONTEXT_START:CONTEXT_START + prompt_tokens].ne(x_token).any():
        raise ValueError(f"the prompt {text!r} does not tokenise as '[SOS] a photo of a X ...'")
    return tokens


class PromptLearner(nn.Module):
    """``forward(labels, image_features, token_embedding)`` -> (prompt embeddings (B, L, D), token ids (B, L))."""

    def __init__(self, num_classes: int, prompt_tokens: int, context_dim: int, image_dim: int, context_length: int,
                 *, hidden_ratio: int = 16, init_std: float = 0.02) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.prompt_tokens = prompt_tokens
        self.context = nn.Parameter(torch.empty(num_classes, prompt_tokens, context_dim).normal_(std=init_std))
        hidden = max(1, image_dim // hidden_ratio)
        self.meta_net = nn.Sequential(nn.Linear(image_dim, hidden), nn.ReLU(inplace=True),
                                      nn.Linear(hidden, context_dim))
        self.register_buffer("tokens", torch.zeros(1, context_length, dtype=torch.long))

    @property
    def has_template(self) -> bool:
        return bool(self.tokens.any())

    def set_template(self, tokens: torch.Tensor) -> None:
        if tokens.shape != self.tokens.shape:
            raise ValueError(f"template tokens must be {tuple(self.tokens.shape)}, got {tuple(tokens.shape)}")
        self.tokens.copy_(tokens)

    def forward(self, labels: torch.Tensor, image_features: torch.Tensor, token_embedding: nn.Embedding
                ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.has_template:
            raise RuntimeError("the prompt template is not set: call set_template (the prompt stage does) first")
        batch = labels.shape[0]
        with torch.no_grad():  # the token embeddings are frozen: no graph through them
            template = token_embedding(self.tokens)
        context = self.context[labels] + self.meta_net(image_features.to(self.context.dtype))[:, None, :]
        end = CONTEXT_START + self.prompt_tokens
        embeddings = torch.cat([template[:, :CONTEXT_START].expand(batch, -1, -1), context.to(template.dtype),
                                template[:, end:].expand(batch, -1, -1)], dim=1)
        return embeddings, self.tokens.expand(batch, -1)
