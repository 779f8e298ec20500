"""open_clip's CLIP as the re-ID methods use it: the image tower with the three features CLIP-ReID reads,
at a non-square input, and the text tower fed with prompt embeddings instead of token ids.

    images -> conv1 -> [CLS] + patches + pos (grid resized to H/p x W/p) -> ln_pre -> blocks 1..L-1
           -> ``penultimate`` [CLS] -> block L -> ln_post -> ``cls`` -> @ proj -> ``proj``
    prompt embeddings (B, L, D) + pos -> causal transformer -> ln_final -> at EOT -> @ text_projection

open_clip's own forwards cannot do either (``encode_image`` gives the projection only, ``encode_text``
takes token ids); the modules and weights are open_clip's, only the forward order is written here, and a
test checks both against ``encode_image`` / ``encode_text``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from reid_core.methods.clip.config import Backbone
from reid_core.nn.weights import create_open_clip


def build_clip(backbone: Backbone, height: int, width: int) -> nn.Module:
    """The open_clip ``CLIP`` model of ``backbone`` (weights resolved by ``nn.weights``), its positional
    grid resized to the ``height`` x ``width`` input."""
    model = create_open_clip(backbone.name, backbone.pretrained, model_cfg=backbone.model_cfg,
                             quick_gelu=backbone.quick_gelu)
    fit_to_input(model.visual, height, width, backbone.pos_interpolation)
    return model


def patch_grid(height: int, width: int, patch: tuple[int, int]) -> tuple[int, int]:
    if height % patch[0] or width % patch[1]:
        raise ValueError(f"input {height} x {width} is not a multiple of the {patch[0]} x {patch[1]} patches: "
                         "set input.height / input.width to multiples of the patch size")
    return height // patch[0], width // patch[1]


def resize_position_grid(embedding: torch.Tensor, old: tuple[int, int], new: tuple[int, int],
                         mode: Literal["bilinear", "bicubic"] = "bilinear") -> torch.Tensor:
    """(1 + h*w, D) positional embeddings ([CLS] first) of an ``old`` (h, w) grid resampled to ``new``
    (CLIP-ReID's ``resize_pos_embed``: ``F.interpolate``, ``align_corners=False``)."""
    if tuple(old) == tuple(new):
        return embedding
    cls_token, grid = embedding[:1], embedding[1:]
    grid = grid.reshape(1, old[0], old[1], -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid.float(), size=new, mode=mode, align_corners=False).to(embedding.dtype)
    return torch.cat([cls_token, grid.permute(0, 2, 3, 1).reshape(new[0] * new[1], -1)])


def fit_to_input(visual: nn.Module, height: int, width: int, mode: Literal["bilinear", "bicubic"]) -> None:
    """Resize an open_clip ``VisionTransformer``'s positional grid to the input, in place."""
    new = patch_grid(height, width, visual.patch_size)
    old = tuple(visual.grid_size)
    if new != old:
        with torch.no_grad():
            resized = resize_position_grid(visual.positional_embedding.data, old, new, mode)
        visual.positional_embedding = nn.Parameter(resized)
        visual.grid_size = new
    visual.image_size = (height, width)


class ClipImageEncoder(nn.Module):
    """``forward(images)`` -> ``penultimate`` (the [CLS] after block L-1, before ``ln_post``), ``cls`` (after
    ``ln_post``; open_clip's pooled feature) and ``proj`` (``cls @ proj``, the CLIP embedding)."""

    def __init__(self, visual: nn.Module) -> None:
        super().__init__()
        from open_clip.transformer import VisionTransformer

        if not isinstance(visual, VisionTransformer) or visual.attn_pool is not None or visual.pool_type != "tok" \
                or visual.final_ln_after_pool or visual.proj is None:
            raise ValueError("the CLIP methods need an open_clip ViT image tower with a [CLS] token, no attentional "
                             "pooling and a projection (e.g. backbone.name='ViT-B-16')")
        self.visual = visual
        self.width = visual.transformer.width
        self.output_dim = visual.output_dim

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        visual = self.visual
        x = visual.conv1(images).flatten(2).transpose(1, 2)  # (B, grid, width)
        cls_token = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls_token, x], dim=1) + visual.positional_embedding.to(x.dtype)
        x = visual.ln_pre(visual.patch_dropout(x))
        batch_first = visual.transformer.batch_first
        if not batch_first:
            x = x.transpose(0, 1)
        *blocks, last = visual.transformer.resblocks
        for block in blocks:
            x = block(x)
        penultimate = x[:, 0] if batch_first else x[0]
        x = last(x)
        cls = visual.ln_post(x[:, 0] if batch_first else x[0])
        return {"penultimate": penultimate, "cls": cls, "proj": cls @ visual.proj}


class ClipTextEncoder(nn.Module):
    """CLIP's text tower from token embeddings: ``forward(embeddings, tokens)`` where ``tokens`` (B, L) are
    the ids the embeddings stand for (their argmax, the EOT, is where the feature is read)."""

    def __init__(self, clip: nn.Module) -> None:
        super().__init__()
        if not hasattr(clip, "token_embedding"):
            raise ValueError("the prompt methods need open_clip's CLIP text tower (not a CustomTextCLIP / HF text model)")
        self.token_embedding = clip.token_embedding
        self.positional_embedding = clip.positional_embedding
        self.transformer = clip.transformer
        self.ln_final = clip.ln_final
        self.text_projection = clip.text_projection
        self.pool_type = clip.text_pool_type
        self.eos_id = getattr(clip, "text_eos_id", None)
        self.register_buffer("attn_mask", clip.attn_mask, persistent=False)

    @property
    def context_length(self) -> int:
        return self.positional_embedding.shape[0]

    @property
    def width(self) -> int:
        return self.token_embedding.embedding_dim

    def forward(self, embeddings: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        from open_clip.transformer import text_global_pool

        x = embeddings + self.positional_embedding.to(embeddings.dtype)
        x = self.ln_final(self.transformer(x, attn_mask=self.attn_mask))
        x = text_global_pool(x, tokens, self.pool_type, eos_token_id=self.eos_id)
        if isinstance(self.text_projection, nn.Linear):
            return self.text_projection(x)
        return x @ self.text_projection

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Text features of token ids (what ``CLIP.encode_text`` computes)."""
        return self(self.token_embedding(tokens), tokens)
