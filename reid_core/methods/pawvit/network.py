"""PAW-ViT's network (Fig. 3): part tokens, the ATM decoder, the aggregation block and the heads.

    x -> ViT with tokens [P_1 .. P_K, BG] + patches -> blocks -> LayerNorm
    ATM([P, BG], patches)      -> (B, K+1, m, m) part masks (training only: distilled from the teacher)
    Aggregation(P_1 .. P_K)    -> f (B, D), the descriptor (the background token never enters)
    f -> BNNeck: BN1d (frozen zero bias) -> Linear(D -> C_id, bias) = identity logits
    P_k -> the same BN -> its own Linear(D -> 1) = orientation logit of part k
    test: f / ||f|| (pre-BN, the authors' ``infer``), or of [f(x), f(flip x)] with ``input.test_flip``
    ``centred``: the triplet sees f - mean_batch(f), the test f - running mean (the BN's centre)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import Mlp
from torch import nn

from reid_core.evaluation.tta import flip_embed
from reid_core.methods.pawvit.backbone import TOKEN_INIT_STD, build_part_token_vit
from reid_core.methods.pawvit.config import PawViTConfig
from reid_core.nn.heads import BNNeck


class ATMDecoder(nn.Module):
    """Attention-to-Mask (SegViT's ATM, cut down as in section 3.2): per head, the sigmoid of the scaled
    similarity of every token's query to every patch's key, averaged over the heads, reshaped to the
    patch grid and upsampled (bilinear, align_corners=False) to the teacher's mask size."""

    def __init__(self, dim: int, num_heads: int, grid: tuple[int, int], mask_size: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"the width {dim} is not divisible by {num_heads} heads")
        self.num_heads, self.grid, self.mask_size = num_heads, grid, mask_size
        self.scale = (dim // num_heads) ** -0.5
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)

    def forward(self, tokens: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        """(B, T, D) tokens and (B, N, D) patches -> (B, T, mask_size, mask_size) masks in [0, 1]."""
        batch, count, dim = tokens.shape
        heads = self.num_heads
        q = self.q(tokens).reshape(batch, count, heads, dim // heads).transpose(1, 2)  # (B, h, T, d)
        k = self.k(patches).reshape(batch, patches.shape[1], heads, dim // heads).transpose(1, 2)
        masks = torch.sigmoid(q @ k.transpose(-2, -1) * self.scale).mean(dim=1)  # (B, T, N)
        masks = masks.reshape(batch, count, *self.grid)
        return F.interpolate(masks, size=(self.mask_size, self.mask_size), mode="bilinear", align_corners=False)


class AggregationBlock(nn.Module):
    """A learnt token attends over the K part tokens (section 3.3; the authors' ``AggregationBlock``):
    ``LN(MLP(LN_v(Attn(LN_q(agg), LN_k(parts)))))``, multi-head, with an output projection and no
    residual connection, so the descriptor is only a mixture of the parts."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"the width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.token, std=TOKEN_INIT_STD)
        self.norm_q, self.norm_k, self.norm_v = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def attention(self, parts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The attended value (B, D) after the projection, and the weights (B, heads, K) over the parts."""
        batch, count, dim = parts.shape
        heads = self.num_heads
        q = self.q(self.norm_q(self.token)).reshape(1, 1, heads, dim // heads).transpose(1, 2)  # (1, h, 1, d)
        kv = self.kv(self.norm_k(parts)).reshape(batch, count, 2, heads, dim // heads).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]  # (B, h, K, d)
        weights = (q @ k.transpose(-2, -1) * self.scale).softmax(dim=-1)  # (B, h, 1, K)
        attended = (weights @ v).transpose(1, 2).reshape(batch, dim)
        return self.proj(attended), weights[:, :, 0]

    def forward(self, parts: torch.Tensor) -> torch.Tensor:
        """(B, K, D) part tokens -> (B, D) descriptor."""
        attended, _ = self.attention(parts)
        return self.norm(self.mlp(self.norm_v(attended)))


class PawViT(nn.Module):
    """``forward(images)`` -> ``features`` (the triplet's: pre-BN descriptor, less the BN's centre when
    ``centred``), ``normed`` (BN),
    ``logits`` (identities), ``masks`` (B, K+1, m, m), ``orientation`` (B, K) logits."""

    def __init__(self, backbone: nn.Module, num_parts: int, num_classes: int, mask_size: int, *,
                 classifier_bias: bool = True, test_flip: bool = False, centred: bool = False) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if backbone.num_prefix_tokens != num_parts + 1:
            raise ValueError(f"the backbone has {backbone.num_prefix_tokens} tokens, not K+1 = {num_parts + 1}")
        dim, heads = backbone.num_features, backbone.blocks[0].attn.num_heads
        self.num_parts, self.test_flip, self.centred = num_parts, test_flip, centred
        self.backbone = backbone
        self.atm = ATMDecoder(dim, heads, backbone.patch_embed.grid_size, mask_size)
        self.aggregation = AggregationBlock(dim, heads)
        self.neck = BNNeck(dim, num_classes, classifier_bias=classifier_bias)
        self.orientation = nn.ModuleList(nn.Linear(dim, 1) for _ in range(num_parts))

    def tokens(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The K+1 token outputs (B, K+1, D) and the patch outputs (B, N, D), after the final norm."""
        out = self.backbone.forward_features(images)
        count = self.num_parts + 1
        return out[:, :count], out[:, count:]

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        tokens, patches = self.tokens(images)
        parts = tokens[:, :self.num_parts]
        features = self.aggregation(parts)
        normed, logits = self.neck(features)
        orientation = torch.cat([head(self.part_bn(parts[:, k])) for k, head in enumerate(self.orientation)], dim=1)
        metric = self.neck.centre(features) if self.centred else features
        return {"features": metric, "normed": normed, "logits": logits,
                "masks": self.atm(tokens, patches), "orientation": orientation}

    def part_bn(self, part: torch.Tensor) -> torch.Tensor:
        """The identity BNNeck's BN on one part's tokens, as the authors call it (batch statistics per part,
        the BN's own weight and bias) but without moving its running statistics: those stay the
        descriptor's, whose mean the ``centred`` test feature subtracts (the authors' K extra updates per
        step would make it the part tokens' mean)."""
        bn = self.neck.bn
        if not self.training:
            return bn(part)
        return F.batch_norm(part, None, None, bn.weight, bn.bias, training=True, eps=bn.eps)

    def descriptor(self, images: torch.Tensor) -> torch.Tensor:
        """The aggregated descriptor alone (B, D): what inference keeps (no ATM, no heads); less the BN's
        running mean when ``centred``."""
        tokens, _ = self.tokens(images)
        features = self.aggregation(tokens[:, :self.num_parts])
        return self.neck.centre(features) if self.centred else features

    def part_masks(self, images: torch.Tensor) -> torch.Tensor:
        """The ATM masks (B, K+1, m, m): where each token looks (the paper's Fig. 2)."""
        tokens, patches = self.tokens(images)
        return self.atm(tokens, patches)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised pre-BN descriptors (B, D), or of [f(x), f(flip x)] (B, 2D) with ``test_flip``."""
        if self.test_flip:
            return flip_embed(self.descriptor, images, mode="concat")
        return F.normalize(self.descriptor(images), dim=1)


def build_network(config: PawViTConfig, num_classes: int) -> PawViT:
    backbone, parts = config.backbone, config.parts
    kwargs = {"img_size": config.input.size, "drop_path_rate": backbone.drop_path_rate} | backbone.kwargs
    vit = build_part_token_vit(backbone.name, backbone.pretrained, parts.num_parts + 1, **kwargs)
    return PawViT(vit, parts.num_parts, num_classes, parts.mask_size, classifier_bias=backbone.classifier_bias,
                  test_flip=config.input.test_flip, centred=config.losses.triplet_feature == "centred")
