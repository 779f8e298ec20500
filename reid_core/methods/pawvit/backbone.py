"""The ViT with K part tokens and a background token in place of [CLS], and its pretrained weights.

timm's ``VisionTransformer`` with ``class_token=False, reg_tokens=K+1`` prepends K+1 learnt tokens that
have their own position-embedding rows (``no_embed_class=False``), which is the authors' layout:
``[part_1 .. part_K, background, patches]``. Pretrained weights (a timm hub name through the project's
resolver, or a local / s3:// state_dict of a timm ViT with a class token, e.g. the authors'
``jx_vit_base_p16_224-80ecf9dd.pth``) are converted as the authors do: ``cls_token`` is not loaded, every
token row of ``pos_embed`` is a copy of the pretrained [CLS] row, and the patch grid is resized
(14 x 14 -> 16 x 16 at 256 px) bicubic with ``align_corners=True``. The tokens start at
trunc_normal(0.02).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import timm
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from reid_core.nn.weights import (
    create_timm_backbone,
    is_checkpoint_uri,
    load_backbone_weights,
    read_state_dict,
)

TOKEN_INIT_STD = 0.02


def resize_grid_embedding(grid: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(1, g*g, D) square-grid position embeddings -> (1, h*w, D), bicubic with align_corners=True."""
    rows, dim = grid.shape[1], grid.shape[2]
    side = math.isqrt(rows)
    if side * side != rows:
        raise ValueError(f"the checkpoint's position embeddings hold {rows} patch rows, not a square grid")
    image = grid.reshape(1, side, side, dim).permute(0, 3, 1, 2).float()
    resized = F.interpolate(image, size=size, mode="bicubic", align_corners=True)
    return resized.permute(0, 2, 3, 1).reshape(1, size[0] * size[1], dim).to(grid.dtype)


def part_token_state(state: Mapping[str, torch.Tensor], model: VisionTransformer, where: str) -> dict[str, torch.Tensor]:
    """A timm ViT state_dict with a class token -> the part-token model's (its tokens kept as initialised)."""
    if "cls_token" not in state or "pos_embed" not in state:
        raise ValueError(f"{where!r} is not a timm ViT state_dict with a class token (cls_token, pos_embed): "
                         "PAW-ViT copies the [CLS] position embedding to its part tokens")
    pos = state["pos_embed"]
    cls_row, grid = pos[:, :1], pos[:, 1:]
    tokens = model.num_prefix_tokens
    converted = {k: v for k, v in state.items() if k != "cls_token" and not k.startswith("head.")}
    converted["pos_embed"] = torch.cat([cls_row.expand(1, tokens, -1),
                                        resize_grid_embedding(grid, model.patch_embed.grid_size)], dim=1)
    converted["reg_token"] = model.reg_token.detach().clone()
    return converted


def pretrained_state(name: str, pretrained: str | bool, **kwargs: Any) -> tuple[Mapping[str, torch.Tensor], str]:
    """The pretrained [CLS] ViT's state_dict at its own resolution, and where it came from."""
    if isinstance(pretrained, str) and is_checkpoint_uri(pretrained):
        return read_state_dict(pretrained), pretrained
    source = create_timm_backbone(name, pretrained, **kwargs)  # the hub's, at its native grid
    return source.state_dict(), str(pretrained if isinstance(pretrained, str) else name)


def build_part_token_vit(name: str, pretrained: str | bool | None, num_tokens: int, **kwargs: Any) -> VisionTransformer:
    """A timm ViT whose ``num_tokens`` prefix tokens replace [CLS] (``kwargs``: timm.create_model's, e.g.
    img_size, patch_size, depth); ``forward_features`` gives (B, num_tokens + N, D) after the final norm."""
    model = timm.create_model(name, pretrained=False, num_classes=0, class_token=False, reg_tokens=num_tokens,
                              global_pool="", **kwargs)
    if not isinstance(model, VisionTransformer) or model.pos_embed is None or model.no_embed_class:
        raise ValueError(f"backbone {name!r} must be a timm VisionTransformer with absolute position "
                         "embeddings for its prefix tokens (e.g. vit_base_patch16_224)")
    nn.init.trunc_normal_(model.reg_token, std=TOKEN_INIT_STD)
    if pretrained:
        # the source at its own grid: its position embeddings are resized here, the authors' way
        architecture = {k: v for k, v in kwargs.items() if k not in ("img_size", "drop_path_rate")}
        state, where = pretrained_state(name, pretrained, **architecture)
        load_backbone_weights(model, part_token_state(state, model, where), where, name)
    return model
