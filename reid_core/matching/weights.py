"""Where LightGlue's and its extractors' weights come from: the hub (kornia's downloads, where reachable) or
a checkpoint file, local or s3://, read through the project's one resolver (``nn.weights``: weights-only
``torch.load`` or safetensors, so no pickled code runs) and loaded strictly."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from reid_core.nn.weights import is_checkpoint_uri, load_strict, read_state_dict


def is_checkpoint(weights: str | None) -> bool:
    return isinstance(weights, str) and is_checkpoint_uri(weights)


def read_checkpoint(uri: str, wrapper: str | None = None) -> Mapping[str, torch.Tensor]:
    """A state_dict from ``uri``; ``wrapper`` unwraps the released files' nesting (DISK's ``{"extractor": ...}``)."""
    state = read_state_dict(uri)
    if wrapper and isinstance(state.get(wrapper), Mapping):
        state = state[wrapper]
    return state


def load_extractor(build: Callable[[], nn.Module], uri: str, what: str, wrapper: str | None = None) -> nn.Module:
    """A freshly built extractor with every weight from ``uri`` (strict: a wrong file fails, naming itself)."""
    model = build()
    load_strict(model, read_checkpoint(uri, wrapper), f"checkpoint {uri!r} does not fit {what}")
    return model.eval()


def lightglue_state(state: Mapping[str, torch.Tensor], n_layers: int) -> dict[str, torch.Tensor]:
    """The released LightGlue files' old key names renamed as kornia's own loader renames them."""
    renamed = dict(state)
    for i in range(n_layers):
        for old, new in ((f"self_attn.{i}", f"transformers.{i}.self_attn"),
                         (f"cross_attn.{i}", f"transformers.{i}.cross_attn")):
            renamed = {k.replace(old, new): v for k, v in renamed.items()}
    return renamed


def load_lightglue(model: nn.Module, uri: str, what: str) -> nn.Module:
    """Every parameter of ``model`` from ``uri``; only derived buffers (recomputed at build) may be absent."""
    state = lightglue_state(read_checkpoint(uri), model.conf.n_layers)
    result = model.load_state_dict(state, strict=False)
    parameters = dict(model.named_parameters())
    missing = [k for k in result.missing_keys if k in parameters]
    if missing or result.unexpected_keys:
        raise RuntimeError(f"checkpoint {uri!r} does not fit {what}: missing {missing[:5]} ({len(missing)}), "
                           f"unexpected {result.unexpected_keys[:5]} ({len(result.unexpected_keys)})")
    return model.eval()


def from_hub(load: Callable[[], nn.Module], what: str) -> nn.Module:
    """kornia's download of the released weights, with the way out named when the hub is unreachable."""
    try:
        return load().eval()
    except Exception as err:  # network, hub and cache errors all mean the same thing here
        raise RuntimeError(f"could not download the weights of {what} ({err}); where the hub is unreachable pass "
                           "a local path or s3:// URI of a state_dict") from err
