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
  AER runs the DVE images through a separate pass of the trunk, so they get their own BN batch
  statistics; ``DVENet.forward`` does the same.

Training (``DVEMethod.stages``): SGD Nesterov, heads at ``lr`` and the backbone at ``lr * 0.1``, step
decay x0.1 after 2/3 of the epochs, and a warm-up of 3 epochs with the backbone frozen
(``requires_grad=False``; its BN layers keep updating their statistics since the model stays in train
mode) while the loss is multiplied by a factor rising linearly from 0.01 to 1 over the warm-up
iterations (AER, "to be consistent with PGCFL"). Each step flips a random half of the re-ID inputs
(known sides become 1 - side) and builds the DVE pairs with a random TPS warp of the (unflipped) batch.

Where this differs from the authors' code (each a documented choice, see ``DVEConfig``):
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

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn
from torchvision.transforms import v2

from reid_core.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from reid_core.data.transforms import eval_transform as shared_eval_transform
from reid_core.losses.circle import circle_loss
from reid_core.losses.classification import UNKNOWN_SIDE, identity_loss, orientation_loss
from reid_core.losses.dve import dve_loss
from reid_core.models.registry import METHODS, Stage
from reid_core.models.tps import TPSConfig, TPSWarper

# --------------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------------


@dataclass
class DVEConfig:
    """Every knob of the method, with the paper's defaults (the authors' code where the paper is silent)."""

    # Backbone
    backbone: str = "legacy_seresnet50"  # timm name; AER's checkpoint is legacy_seresnet50.in1k
    # None: random init; True: the timm hub's default weights of `backbone` (ImageNet; the paper);
    # a hub name ("legacy_seresnet50.in1k", "hf-hub:..."); or a local path / s3:// URI of a state_dict.
    pretrained: str | bool | None = True
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)  # extra timm.create_model kwargs
    smallscale: bool = True  # layer2/layer4 stride 1: output stride 8 (paper), DVE map at stride 4
    stride_on_3x3: bool = True  # AER's local SE-ResNet copy strides conv2 (3x3), timm's legacy conv1
    dve_stage: int | None = None  # 1..4; None = deepest stage at output stride 4 (layer2 if smallscale)
    img_size: int = 224
    embed_dim: int = 512
    dve_dim: int = 64
    dropout: float = 0.5

    # Losses
    label_smoothing: float = 0.1
    circle_m: float = 0.25
    circle_gamma: float = 64.0  # paper 64; AER's code hard-codes 32
    circle_divide_by_batch: bool = True  # AER's code: 2.0 * Circle / B; the paper's Eq. 8 shows no 1/B
    lambda_reid: float = 2.0  # paper A.11 and the README command
    lambda_dve: float = 0.2  # paper A.11 and the README command; 0 skips the DVE pass (and head)
    dve_normalize: bool = False  # AER's train.py; DVE's own default is True (L2 + x dve_scale)
    dve_scale: float = 20.0  # DVE's temperature when dve_normalize
    dve_power: float = 0.5  # ||g(u) - v|| ** power
    dve_chunk: int | None = 8  # images per bmm chunk in the DVE loss (memory bound)
    dve_checkpoint: bool = False  # recompute DVE chunks in backward (less memory at 224 px)

    # TPS warps (DVE's tps.Warper defaults)
    tps_warpsd_all: float = 0.001
    tps_warpsd_subset: float = 0.01
    tps_transsd: float = 0.1
    tps_scalesd: float = 0.1
    tps_rotsd: float = 5.0
    tps_first_multiplier: float = 0.5
    tps_first_affine_multiplier: float = 1.0

    # Optimisation
    # "sgd": the paper's SGD + Nesterov (meant for ImageNet-initialised backbones). "adamw": for
    # randomly initialised backbones (CPU demos, new species without pretrained weights), where SGD
    # at these learning rates barely moves in a few epochs; use lr around 1e-3 with it.
    optimizer: str = "sgd"
    lr: float = 0.01  # heads
    backbone_lr_mult: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    epochs: int = 80  # 100 for ELPephants in the paper
    lr_step_epoch: int | None = None  # None: epochs * 2 // 3 (53 of 80, AER's StepLR)
    lr_gamma: float = 0.1
    warmup_epochs: int = 3
    warmup_start: float = 0.01

    # Batches and augmentation
    ids_per_batch: int = 15  # P x K = 30, the paper's batch size, two images per identity
    images_per_id: int = 2
    pad: int = 10
    erasing_p: float = 0.5
    erasing_scale: tuple[float, float] = (0.02, 0.2)
    erasing_ratio: tuple[float, float] = (0.3, 1 / 0.3)
    cutout_p: float = 0.5  # AER's code (Cutout, 64-256 holes of 4 px at 224 px); 0 disables
    flip_p: float = 0.5
    flip_mode: str = "image"  # "image": each image its own coin; "batch": AER's one coin per batch
    seed: int = 0  # warps and flips (mixed with the DDP rank and the epoch)

    def __post_init__(self) -> None:
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}")
        if self.flip_mode not in ("image", "batch"):
            raise ValueError(f"flip_mode must be 'image' or 'batch', got {self.flip_mode!r}")
        if self.dve_stage is not None and self.dve_stage not in (1, 2, 3, 4):
            raise ValueError(f"dve_stage must be 1..4 or None, got {self.dve_stage!r}")
        for name in ("lambda_reid", "lambda_dve", "lr", "epochs", "img_size", "embed_dim"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.lambda_dve > 0 and self.dve_dim < 1:
            raise ValueError("lambda_dve > 0 needs dve_dim >= 1")

    @property
    def milestone(self) -> int:
        return self.lr_step_epoch if self.lr_step_epoch is not None else self.epochs * 2 // 3

    def tps(self) -> TPSConfig:
        return TPSConfig(
            warpsd_all=self.tps_warpsd_all,
            warpsd_subset=self.tps_warpsd_subset,
            transsd=self.tps_transsd,
            scalesd=self.tps_scalesd,
            rotsd=self.tps_rotsd,
            first_warp_multiplier=self.tps_first_multiplier,
            first_warp_affine_multiplier=self.tps_first_affine_multiplier,
        )


def make_config(**overrides: Any) -> DVEConfig:
    """``DVEConfig`` with ``overrides``; unknown keys raise, naming the valid ones."""
    valid = {f.name for f in dataclasses.fields(DVEConfig)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ValueError(f"unknown DVE config key(s) {unknown}; valid keys: {', '.join(sorted(valid))}")
    return DVEConfig(**overrides)


# --------------------------------------------------------------------------------------------------
# Backbone: a timm ResNet-family model as stem + 4 stages, strides edited in place
# --------------------------------------------------------------------------------------------------

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors")


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


def _stem_and_layers(model: nn.Module) -> tuple[nn.Module, list[nn.Module]]:
    layers = [getattr(model, f"layer{i}", None) for i in range(1, 5)]
    if any(layer is None for layer in layers):
        raise ValueError(
            f"backbone {type(model).__name__} is not a ResNet-family model with layer1..layer4 "
            "(use resnet*, seresnet*, seresnext*, legacy_seresnet*, legacy_seresnext*)"
        )
    if hasattr(model, "layer0"):  # timm legacy SENet: layer0 (conv/bn/relu) + pool0
        return nn.Sequential(model.layer0, model.pool0), layers
    return nn.Sequential(model.conv1, model.bn1, model.act1, model.maxpool), layers


def _read_state_dict(uri: str) -> Mapping[str, torch.Tensor]:
    """A state_dict from a local path or s3:// URI (``torch.load(weights_only=True)`` or safetensors)."""
    from reid_core.data import io as rio  # lazy: pyarrow is only needed to read checkpoints

    if not rio.exists(uri):
        raise FileNotFoundError(
            f"pretrained checkpoint {uri!r} does not exist; pass an existing local path or s3:// URI of a "
            "state_dict, a timm hub name, or pretrained=None for random weights"
        )
    data = rio.read_bytes(uri)
    if uri.endswith(".safetensors"):
        from safetensors.torch import load as load_safetensors

        obj: Any = load_safetensors(data)
    else:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(f"{uri!r} does not hold a state_dict (a mapping of parameter names to tensors)")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _load_backbone_weights(model: nn.Module, state: Mapping[str, torch.Tensor], where: str, name: str) -> None:
    classifier = (getattr(model, "pretrained_cfg", None) or {}).get("classifier") or "fc"
    state = {k: v for k, v in state.items() if not k.startswith(f"{classifier}.")}
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise RuntimeError(f"checkpoint {where!r} does not fit backbone {name!r}: {err}") from err
    if result.missing_keys or result.unexpected_keys:
        raise RuntimeError(
            f"checkpoint {where!r} does not fit backbone {name!r}: "
            f"missing {result.missing_keys[:5]} ({len(result.missing_keys)}), "
            f"unexpected {result.unexpected_keys[:5]} ({len(result.unexpected_keys)})"
        )


def _is_checkpoint_uri(pretrained: str) -> bool:
    if pretrained.startswith(("hf-hub:", "hf_hub:")):
        return False
    return (
        pretrained.startswith("s3://")
        or pretrained.endswith(CHECKPOINT_SUFFIXES)
        or "/" in pretrained
        or "\\" in pretrained
        or Path(pretrained).expanduser().exists()
    )


def create_timm_backbone(name: str, pretrained: str | bool | None, **kwargs: Any) -> nn.Module:
    """``timm.create_model`` without a classifier, weights from the hub or from a checkpoint file."""
    if isinstance(pretrained, str) and _is_checkpoint_uri(pretrained):
        state = _read_state_dict(pretrained)
        model = timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
        _load_backbone_weights(model, state, pretrained, name)
        return model
    hub_name = name
    if isinstance(pretrained, str) and pretrained:
        hub_name = pretrained
        if not pretrained.startswith(("hf-hub:", "hf_hub:")) and pretrained.split(".")[0] != name.split(".")[0]:
            raise ValueError(
                f"pretrained={pretrained!r} is a timm hub name for another architecture than backbone={name!r}"
            )
    if not pretrained:
        return timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
    try:
        return timm.create_model(hub_name, pretrained=True, num_classes=0, **kwargs)
    except Exception as err:  # network, hub and cache errors all mean the same thing here
        raise RuntimeError(
            f"could not load pretrained weights {hub_name!r} from the timm/Hugging Face hub ({err}); "
            "where the hub is unreachable pass a local path or s3:// URI of a state_dict, or pretrained=None"
        ) from err


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
    stem, layers = _stem_and_layers(model)
    stage_strides = [1, 1 if smallscale else 2, 2, 1 if smallscale else 2]
    for layer, stride in zip(layers[1:], stage_strides[1:], strict=True):
        set_stage_stride(layer, stride, on_3x3=stride_on_3x3)
    info = {f["module"]: f["num_chs"] for f in model.feature_info}
    channels = [info[f"layer{i}"] for i in range(1, 5)]
    strides = [4 * math.prod(stage_strides[: i + 1]) for i in range(4)]  # both stems have stride 4
    return ResNetTrunk(stem, layers, channels, strides)


# --------------------------------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------------------------------


def _init_reid_head(bottleneck: nn.Sequential, classifiers: Sequence[nn.Linear]) -> None:
    """AER (layumi's ClassBlock): kaiming fan_out Linear, BN weight N(1, 0.02), classifiers N(0, 0.001)."""
    linear, bn = bottleneck[0], bottleneck[1]
    nn.init.kaiming_normal_(linear.weight, a=0, mode="fan_out")
    nn.init.zeros_(linear.bias)
    nn.init.normal_(bn.weight, 1.0, 0.02)
    nn.init.zeros_(bn.bias)
    for classifier in classifiers:
        nn.init.normal_(classifier.weight, std=0.001)
        nn.init.zeros_(classifier.bias)


class DVENet(nn.Module):
    """Trunk + re-ID head (embedding, identity and orientation logits) + optional DVE descriptor head.

    ``forward(images, dve_images=None)`` returns a dict: ``embedding`` (BN1d output, the test-time f),
    ``features`` (after dropout: what the classifiers and the circle loss see in training),
    ``logits_id``, ``logits_lr`` and, when ``dve_images`` is given, ``dve`` (descriptors of those images
    from their own trunk pass). Training goes through one ``forward`` call so DDP syncs every gradient.
    """

    def __init__(
        self,
        trunk: ResNetTrunk,
        num_classes: int,
        *,
        embed_dim: int = 512,
        dve_dim: int = 64,
        dve_stage: int | None = None,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.trunk = trunk
        if dve_stage is None:
            at_stride4 = [i + 1 for i, s in enumerate(trunk.strides) if s == 4]
            dve_stage = at_stride4[-1] if at_stride4 else 1
        self.dve_stage = dve_stage
        # AER's last_conv keeps PyTorch's default init (its _weight_init call is not recursive).
        self.dve_head = (
            nn.Sequential(
                nn.Conv2d(trunk.channels[dve_stage - 1], dve_dim, kernel_size=1),
                nn.BatchNorm2d(dve_dim),
                nn.ReLU(inplace=True),
            )
            if dve_dim > 0
            else None
        )
        self.bottleneck = nn.Sequential(nn.Linear(trunk.channels[-1], embed_dim), nn.BatchNorm1d(embed_dim))
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(embed_dim, num_classes)
        self.orientation = nn.Linear(embed_dim, 2)
        _init_reid_head(self.bottleneck, [self.classifier, self.orientation])

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        return self.trunk.parameters()

    def head_parameters(self) -> Iterator[nn.Parameter]:
        trunk = {id(p) for p in self.trunk.parameters()}
        return (p for p in self.parameters() if id(p) not in trunk)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """f: GAP of layer4 -> Linear -> BN1d (no dropout)."""
        return self.bottleneck(self.trunk(images).mean(dim=(2, 3)))

    def dve_features(self, images: torch.Tensor) -> torch.Tensor:
        if self.dve_head is None:
            raise RuntimeError("this DVENet was built without a DVE head (dve_dim=0 or lambda_dve=0)")
        return self.dve_head(self.trunk(images, upto=self.dve_stage))

    def forward(self, images: torch.Tensor, dve_images: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        embedding = self.embed(images)
        features = self.dropout(embedding)
        out = {
            "embedding": embedding,
            "features": features,
            "logits_id": self.classifier(features),
            "logits_lr": self.orientation(features),
        }
        if dve_images is not None:
            out["dve"] = self.dve_features(dve_images)
        return out


def build_network(config: DVEConfig, num_classes: int) -> DVENet:
    trunk = build_trunk(
        config.backbone,
        config.pretrained,
        smallscale=config.smallscale,
        stride_on_3x3=config.stride_on_3x3,
        **config.backbone_kwargs,
    )
    return DVENet(
        trunk,
        num_classes,
        embed_dim=config.embed_dim,
        # Without the DVE loss the head would be an unused parameter set (DDP would need
        # find_unused_parameters); leave it out.
        dve_dim=config.dve_dim if config.lambda_dve > 0 else 0,
        dve_stage=config.dve_stage,
        dropout=config.dropout,
    )


# --------------------------------------------------------------------------------------------------
# Transforms
# --------------------------------------------------------------------------------------------------


class Cutout:
    """AER's Cutout on a normalised tensor: with probability ``p`` zero 64..256 squares of 4 px.

    The hole count is for 224 x 224 and scales with the image area, so small test images are not wiped.
    """

    def __init__(self, p: float = 0.5, holes: tuple[int, int] = (64, 256), length: int = 4, reference: int = 224):
        self.p, self.holes, self.length, self.reference = p, holes, length, reference

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if self.p <= 0 or torch.rand(()) >= self.p:
            return image
        height, width = image.shape[-2:]
        count = int(torch.randint(self.holes[0], self.holes[1] + 1, ()))
        count = max(1, round(count * height * width / self.reference**2))
        half = self.length // 2
        ys, xs = torch.randint(0, height, (count,)), torch.randint(0, width, (count,))
        rows = torch.arange(height)
        cols = torch.arange(width)
        in_rows = ((rows[None] >= ys[:, None] - half) & (rows[None] < ys[:, None] + half)).float()
        in_cols = ((cols[None] >= xs[:, None] - half) & (cols[None] < xs[:, None] + half)).float()
        covered = (in_rows.t() @ in_cols) > 0  # (H, W)
        return image * (~covered).to(image.dtype)

    def __repr__(self) -> str:
        return f"Cutout(p={self.p}, holes={self.holes}, length={self.length})"


def train_transform(config: DVEConfig) -> v2.Compose:
    """PIL -> tensor: Resize (bicubic) -> Pad -> RandomCrop -> normalise -> RandomErasing -> Cutout.

    The horizontal flip is not here: it must flip the orientation label too, so ``step`` does it.
    """
    size = (config.img_size, config.img_size)
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(size, interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
            v2.Pad(config.pad, fill=0),
            v2.RandomCrop(size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            v2.RandomErasing(p=config.erasing_p, scale=config.erasing_scale, ratio=config.erasing_ratio, value=0),
            Cutout(p=config.cutout_p),
        ]
    )


def eval_transform(config: DVEConfig) -> v2.Compose:
    return shared_eval_transform((config.img_size, config.img_size))


# --------------------------------------------------------------------------------------------------
# Training stage
# --------------------------------------------------------------------------------------------------


def unwrap(model: nn.Module) -> DVENet:
    """The DVENet inside a DDP (or DataParallel) wrapper."""
    return getattr(model, "module", model)


def set_backbone_trainable(model: nn.Module, trainable: bool) -> None:
    for parameter in unwrap(model).backbone_parameters():
        parameter.requires_grad_(trainable)


def warmup_factor(config: DVEConfig, epoch: int, step_in_epoch: int, steps_per_epoch: int) -> float:
    """AER's loss multiplier: 0.01 + 0.99 * (i + 1) / (warm-up iterations), capped at 1."""
    if epoch >= config.warmup_epochs:
        return 1.0
    total = max(1, config.warmup_epochs * steps_per_epoch)
    done = epoch * steps_per_epoch + step_in_epoch + 1
    return min(1.0, config.warmup_start + (1.0 - config.warmup_start) * done / total)


def lr_factor(config: DVEConfig, epoch: int) -> float:
    return config.lr_gamma if epoch >= config.milestone else 1.0


def flip_batch(
    images: torch.Tensor, sides: torch.Tensor, p: float, mode: str, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror images with probability ``p`` (per image or one coin per batch); known sides -> 1 - side."""
    batch = images.shape[0]
    coins = torch.rand(batch if mode == "image" else 1, generator=generator) < p
    flip = coins.expand(batch).to(images.device)
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    sides = torch.where(flip & (sides != UNKNOWN_SIDE), 1 - sides, sides)
    return images, sides


def _rank() -> int:
    dist = torch.distributed
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


@dataclass
class _RunState:
    """What the stage's callables share: the optimizer (for the lr) and per-epoch counters/RNG."""

    epoch: int = 0
    step_in_epoch: int = 0
    optimizer: torch.optim.Optimizer | None = None
    generator: torch.Generator | None = None

    def start_epoch(self, epoch: int, seed: int) -> None:
        self.epoch, self.step_in_epoch = epoch, 0
        self.generator = torch.Generator().manual_seed(hash((seed, _rank(), epoch)) & (2**63 - 1))


def compute_loss(
    config: DVEConfig,
    model: nn.Module,
    batch: Mapping[str, torch.Tensor],
    warper: TPSWarper,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The unscaled AER loss of one batch and its parts (tensors)."""
    images = batch["image"]
    labels = batch["label"].to(images.device).long()
    sides = batch.get("side")
    sides = (
        torch.full_like(labels, UNKNOWN_SIDE) if sides is None else sides.to(images.device).long()
    )
    reid_images, sides = flip_batch(images, sides, config.flip_p, config.flip_mode, generator)
    pair = warper(images, generator) if config.lambda_dve > 0 else None
    out = model(reid_images, dve_images=None if pair is None else torch.cat([pair.im2, pair.im1]))

    loss_id = identity_loss(out["logits_id"], labels, config.label_smoothing)
    loss_lr = orientation_loss(out["logits_lr"], sides, config.label_smoothing)
    loss_circle = circle_loss(out["features"], labels, config.circle_m, config.circle_gamma)
    if config.circle_divide_by_batch:
        loss_circle = loss_circle / images.shape[0]
    total = loss_id + loss_lr + config.lambda_reid * loss_circle
    parts = {"loss_id": loss_id, "loss_lr": loss_lr, "loss_circle": loss_circle}
    if pair is not None:
        source, target = out["dve"].split(images.shape[0])
        loss_dve = dve_loss(
            source,
            target,
            pair.grid,
            normalize_vectors=config.dve_normalize,
            scale=config.dve_scale,
            power=config.dve_power,
            chunk_size=config.dve_chunk,
            checkpoint=config.dve_checkpoint,
        )
        total = total + config.lambda_dve * loss_dve
        parts["loss_dve"] = loss_dve
    else:
        parts["loss_dve"] = total.new_zeros(())
    return total, parts


def make_stage(config: DVEConfig, steps_per_epoch: int) -> Stage:
    """The single AER training stage.

    Schedules are keyed to the epoch the engine announces through ``on_epoch_start``: that callback
    freezes/unfreezes the backbone and sets each group's lr to ``initial_lr * lr_factor(epoch)``, and
    the ``LambdaLR`` returned as the scheduler computes the same factor, so the result is the same
    whether the engine steps the scheduler per iteration or per epoch, and after a resume.

    DDP: wrap the model before the first ``on_epoch_start`` (DDP only registers parameters that
    require grad when it is built) and build it with ``find_unused_parameters=True`` when
    ``warmup_epochs > 0``: the frozen trunk produces no gradients during the warm-up.
    """
    state = _RunState()
    warper = TPSWarper(config.tps())

    def optimizer(model: nn.Module) -> torch.optim.Optimizer:
        net = unwrap(model)
        groups = [
            {"params": list(net.backbone_parameters()), "lr": config.lr * config.backbone_lr_mult, "name": "backbone"},
            {"params": list(net.head_parameters()), "lr": config.lr, "name": "heads"},
        ]
        if config.optimizer == "adamw":
            state.optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
        else:
            state.optimizer = torch.optim.SGD(
                groups,
                lr=config.lr,
                momentum=config.momentum,
                nesterov=config.nesterov,
                weight_decay=config.weight_decay,
            )
        return state.optimizer

    def scheduler(opt: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: lr_factor(config, state.epoch))

    def on_epoch_start(model: nn.Module, epoch: int) -> None:
        state.start_epoch(epoch, config.seed)
        set_backbone_trainable(model, epoch >= config.warmup_epochs)
        if state.optimizer is not None:
            for group in state.optimizer.param_groups:
                group["lr"] = group.setdefault("initial_lr", group["lr"]) * lr_factor(config, epoch)

    def step(model: nn.Module, batch: Mapping[str, torch.Tensor], epoch: int) -> tuple[torch.Tensor, dict[str, float]]:
        if state.generator is None or epoch != state.epoch:
            state.start_epoch(epoch, config.seed)
        total, parts = compute_loss(config, model, batch, warper, state.generator)
        factor = warmup_factor(config, epoch, state.step_in_epoch, steps_per_epoch)
        state.step_in_epoch += 1
        loss = total * factor
        logs = {"loss": float(loss.detach()), "warmup_factor": factor}
        logs.update({name: float(value.detach()) for name, value in parts.items()})
        return loss, logs

    return Stage(
        name="dve",
        epochs=config.epochs,
        optimizer=optimizer,
        scheduler=scheduler,
        step=step,
        on_epoch_start=on_epoch_start,
    )


# --------------------------------------------------------------------------------------------------
# Search space
# --------------------------------------------------------------------------------------------------

# name -> (kind, default range or choices); kinds: "float", "log", "choice"
SEARCH_SPACE: dict[str, tuple[str, Any]] = {
    "lambda_dve": ("float", (0.0, 2.0)),  # paper A.11: [0, 2] in steps of 0.2
    "circle_m": ("float", (0.1, 0.5)),
    "circle_gamma": ("choice", [32, 64, 128]),
    "lambda_reid": ("choice", [1, 2, 5]),  # paper A.11
    "lr": ("log", (1e-3, 1e-1)),
}


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def sample_search_space(trial: Any, bounds: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Config overrides drawn from an Optuna trial; ``bounds`` replaces ranges ((low, high)) or choices
    ([a, b, ...]) by name, and a plain number fixes that parameter."""
    bounds = dict(bounds or {})
    unknown = sorted(set(bounds) - set(SEARCH_SPACE))
    if unknown:
        raise ValueError(f"unknown search-space bound(s) {unknown}; DVE searches {sorted(SEARCH_SPACE)}")
    params: dict[str, Any] = {}
    for name, (kind, default) in SEARCH_SPACE.items():
        spec = bounds.get(name, default)
        if _numeric(spec):
            params[name] = float(spec)
            continue
        if kind == "choice":
            choices = list(spec)
            if not choices:
                raise ValueError(f"bounds[{name!r}] must list at least one choice")
            params[name] = float(trial.suggest_categorical(name, choices))
            continue
        if len(spec) != 2 or not all(_numeric(v) for v in spec) or spec[0] > spec[1]:
            raise ValueError(f"bounds[{name!r}] must be (low, high) with low <= high, got {spec!r}")
        low, high = float(spec[0]), float(spec[1])
        if kind == "log" and low <= 0:
            raise ValueError(f"bounds[{name!r}] is log-uniform and needs low > 0, got {spec!r}")
        params[name] = trial.suggest_float(name, low, high, log=kind == "log")
    return params


# --------------------------------------------------------------------------------------------------
# The method
# --------------------------------------------------------------------------------------------------


class DVEMethod:
    """AER's method behind the ``Method`` interface of ``reid_core.models.registry``."""

    name = "dve"

    def default_config(self, **overrides: Any) -> DVEConfig:
        return make_config(**overrides)

    def build(self, config: DVEConfig, num_classes: int) -> DVENet:
        return build_network(config, num_classes)

    def train_transform(self, config: DVEConfig) -> Callable:
        return train_transform(config)

    def eval_transform(self, config: DVEConfig) -> Callable:
        return eval_transform(config)

    def stages(self, config: DVEConfig, model: nn.Module, steps_per_epoch: int) -> list[Stage]:
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        return [make_stage(config, steps_per_epoch)]

    def embed(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """AER's test features: [f(x), f(flip x)], L2-normalised (2 x embed_dim), in eval mode."""
        from reid_core.evaluation.tta import flip_embed

        net = unwrap(model)
        was_training = net.training
        net.eval()
        try:
            with torch.no_grad():
                return flip_embed(net.embed, images, mode="concat")
        finally:
            net.train(was_training)

    def search_space(self, trial: Any, bounds: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return sample_search_space(trial, bounds)


METHOD = METHODS.register(DVEMethod())
