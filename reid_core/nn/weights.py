"""One weights resolver for every backbone (timm and open_clip): a hub name, a local path or an s3:// URI.

``pretrained`` is None/False (random init), True (the hub's default weights of the architecture), a hub
name (``legacy_seresnet50.in1k``, ``hf-hub:...``; for open_clip a pretrained tag such as ``openai``) or a
checkpoint file (``.pth/.pt/.bin/.ckpt/.safetensors``, local or s3://) holding a state_dict. Files are read
with ``torch.load(weights_only=True)``: no pickled code runs.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors")


def read_state_dict(uri: str) -> Mapping[str, torch.Tensor]:
    """A state_dict from a local path or s3:// URI (``torch.load(weights_only=True)`` or safetensors)."""
    from reid_core.data import files as rio  # lazy: pyarrow is only needed to read checkpoints

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


def load_backbone_weights(model: nn.Module, state: Mapping[str, torch.Tensor], where: str, name: str) -> None:
    """Load a backbone state_dict strictly (its classifier dropped); a mismatch names the checkpoint."""
    classifier = (getattr(model, "pretrained_cfg", None) or {}).get("classifier") or "fc"
    state = {k: v for k, v in state.items() if not k.startswith(f"{classifier}.")}
    load_strict(model, state, f"checkpoint {where!r} does not fit backbone {name!r}")


def load_strict(model: nn.Module, state: Mapping[str, torch.Tensor], mismatch: str) -> None:
    """Load every key or fail with ``mismatch`` and the first missing / unexpected keys."""
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise RuntimeError(f"{mismatch}: {err}") from err
    if result.missing_keys or result.unexpected_keys:
        raise RuntimeError(
            f"{mismatch}: missing {result.missing_keys[:5]} ({len(result.missing_keys)}), "
            f"unexpected {result.unexpected_keys[:5]} ({len(result.unexpected_keys)})"
        )


def is_checkpoint_uri(pretrained: str) -> bool:
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
    if isinstance(pretrained, str) and is_checkpoint_uri(pretrained):
        state = read_state_dict(pretrained)
        model = timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
        load_backbone_weights(model, state, pretrained, name)
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



# Entries of OpenAI's CLIP state_dicts that are not parameters (open_clip drops them too).
_OPENAI_CLIP_EXTRAS = ("input_resolution", "context_length", "vocab_size")


def create_open_clip(name: str, pretrained: str | None, *, model_cfg: Mapping[str, Any] | None = None,
                     quick_gelu: bool = False) -> nn.Module:
    """An open_clip ``CLIP`` model: architecture ``name`` (``open_clip.list_models()``) or, when given,
    ``model_cfg`` (open_clip's config dict: ``embed_dim``, ``vision_cfg``, ``text_cfg``), with weights
    from an open_clip pretrained tag of ``name`` (``openai``; downloaded where the hub is reachable),
    a checkpoint file of a CLIP state_dict (open_clip's or OpenAI's key names; local or s3://), or None
    (random). OpenAI's TorchScript ``ViT-B-16.pt`` is not read (it is not a weights-only file): save its
    ``torch.jit.load(path).state_dict()`` instead."""
    import open_clip

    checkpoint = isinstance(pretrained, str) and is_checkpoint_uri(pretrained)
    if pretrained and not checkpoint:
        if model_cfg is not None:
            raise ValueError(f"pretrained={pretrained!r} is an open_clip tag, but a custom model_cfg has no hub "
                             "weights: pass a checkpoint file (local path or s3://) or pretrained=None")
        try:
            return open_clip.create_model(name, pretrained=pretrained, force_quick_gelu=quick_gelu)
        except Exception as err:  # unknown tag, network and cache errors all mean the same thing here
            raise RuntimeError(
                f"could not load open_clip weights {name!r} / {pretrained!r} ({err}); where the hub is unreachable "
                "pass a local path or s3:// URI of a CLIP state_dict, or pretrained=None") from err
    if model_cfg is not None:
        model = open_clip.CLIP(**{**model_cfg, "quick_gelu": quick_gelu or model_cfg.get("quick_gelu", False)})
    elif open_clip.get_model_config(name) is None:
        raise ValueError(f"{name!r} is not an open_clip architecture; choose one of open_clip.list_models() "
                         "or give a model_cfg")
    else:
        model = open_clip.create_model(name, pretrained=None, force_quick_gelu=quick_gelu)
    if checkpoint:
        state = {k: v for k, v in read_state_dict(pretrained).items() if k not in _OPENAI_CLIP_EXTRAS}
        load_strict(model, state, f"checkpoint {pretrained!r} does not fit open_clip model {name!r}")
    return model
