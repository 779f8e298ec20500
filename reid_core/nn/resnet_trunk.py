"""A timm ResNet-family model as stem + 4 stages, with stride changes edited in place (DVE's output stride 8,
ARBase's last stride 1)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from reid_core.nn.weights import create_timm_backbone


class ResNetTrunk(nn.Module):
    """The convolutional part of a timm ResNet / SE-ResNet(-Xt) / legacy SENet: stem + layer1..layer4."""

    def __init__(self, stem: nn.Module, layers: Sequence[nn.Module], channels: Sequence[int], strides: Sequence[int]):
        super().__init__()
        self.stem = stem
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.channels = tuple(channels)  # output channels of layer1..layer4
        self.strides = tuple(strides)  # output strides of layer1..layer4 w.r.t. the input

    def stages(self) -> list[nn.Module]:
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def forward(self, x: torch.Tensor, upto: int = 4) -> torch.Tensor:
        """Output of stage ``upto`` (1..4)."""
        x = self.stem(x)
        for layer in self.stages()[:upto]:
            x = layer(x)
        return x


def _first_3x3(block: nn.Module) -> nn.Conv2d:
    for name in ("conv1", "conv2", "conv3"):
        conv = getattr(block, name, None)
        if isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3):
            return conv
    raise ValueError(f"{type(block).__name__} has no 3x3 conv to carry the stride")


def set_stage_stride(stage: nn.Sequential, stride: int, *, on_3x3: bool = True) -> None:
    """Make the first block of a ResNet stage down-sample by ``stride`` (1 or 2), in place.

    The residual path's stride goes on its first 3x3 conv when ``on_3x3`` (torchvision / AER), else it
    stays on whichever conv had it; the shortcut's conv (or avg-pool, for the "d" variants) follows.
    No dilation is added: as AER, a stride-1 stage simply keeps the resolution.
    """
    block = stage[0]
    if not isinstance(getattr(block, "aa", nn.Identity()), nn.Identity):
        raise NotImplementedError("anti-aliased blocks (aa_layer) are not supported for stride changes")
    convs = [getattr(block, n) for n in ("conv1", "conv2", "conv3") if isinstance(getattr(block, n, None), nn.Conv2d)]
    strided = [c for c in convs if c.stride != (1, 1)]
    carrier = _first_3x3(block) if on_3x3 or not strided else strided[0]
    for conv in convs:
        conv.stride = (1, 1)
    carrier.stride = (stride, stride)
    downsample = getattr(block, "downsample", None)
    if downsample is None:
        if stride != 1:
            raise ValueError("cannot add a stride to a block without a shortcut projection")
        return
    modules = list(downsample) if isinstance(downsample, nn.Sequential) else [downsample]
    pools = [i for i, m in enumerate(modules) if isinstance(m, nn.AvgPool2d)]
    if pools:  # avg-down shortcut: the pool strides, the conv does not
        if stride == 1:
            downsample[pools[0]] = nn.Identity()
        return
    for module in modules:
        if isinstance(module, nn.Conv2d):
            module.stride = (stride, stride)


def stem_and_layers(model: nn.Module) -> tuple[nn.Module, list[nn.Module]]:
    """The stem (conv/bn/act/pool, or legacy SENet's layer0 + pool0) and layer1..layer4 of a timm ResNet."""
    layers = [getattr(model, f"layer{i}", None) for i in range(1, 5)]
    if any(layer is None for layer in layers):
        raise ValueError(
            f"backbone {type(model).__name__} is not a ResNet-family model with layer1..layer4 "
            "(use resnet*, seresnet*, seresnext*, legacy_seresnet*, legacy_seresnext*)"
        )
    if hasattr(model, "layer0"):  # timm legacy SENet: layer0 (conv/bn/relu) + pool0
        return nn.Sequential(model.layer0, model.pool0), layers
    return nn.Sequential(model.conv1, model.bn1, model.act1, model.maxpool), layers


def build_trunk(
    name: str,
    pretrained: str | bool | None = None,
    *,
    smallscale: bool = False,
    stride_on_3x3: bool = True,
    **timm_kwargs: Any,
) -> ResNetTrunk:
    """A ``ResNetTrunk`` from a timm name, with AER's stride changes applied."""
    model = create_timm_backbone(name, pretrained, **timm_kwargs)
    stem, layers = stem_and_layers(model)
    stage_strides = [1, 1 if smallscale else 2, 2, 1 if smallscale else 2]
    for layer, stride in zip(layers[1:], stage_strides[1:], strict=True):
        set_stage_stride(layer, stride, on_3x3=stride_on_3x3)
    info = {f["module"]: f["num_chs"] for f in model.feature_info}
    channels = [info[f"layer{i}"] for i in range(1, 5)]
    strides = [4 * math.prod(stage_strides[: i + 1]) for i in range(4)]  # both stems have stride 4
    return ResNetTrunk(stem, layers, channels, strides)

