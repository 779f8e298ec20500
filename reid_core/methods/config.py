"""Typed method configs: pydantic v2 models with nested sections, named presets and dotted overrides.

``build_config(Config, presets, "cpu", {"optim.lr": 3e-3})`` starts from the defaults (the paper's),
merges the preset, applies the overrides and validates. A misspelt key is an error that lists the
valid keys, so ``--set optim.lrr=1`` fails before anything starts.

The sections several methods share (input, backbone, batch, optim, schedule) are declared here once; a
method subclasses one to change its defaults or add entries. Their constraints live in the field types
(``ImageSide``, ``Probability``, ...), so a subclass changes a default in one line (``size: ImageSide = 384``)
and keeps the constraint.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

# Constrained field types of the shared sections (and of the methods' own entries).
ImageSide = Annotated[int, Field(ge=16)]
Probability = Annotated[float, Field(ge=0, le=1)]
Count = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
Factor = Annotated[float, Field(gt=0, le=1)]  # a share of the lr, e.g. where a warm-up starts


class Section(BaseModel):
    """A config section: unknown fields are errors; assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class MethodConfig(Section):
    """The root of a method's config."""


# -- shared sections -------------------------------------------------------------------------------
class SquareInput(Section):
    size: ImageSide = 224  # square input, H = W


class TimmBackbone(Section):
    name: str = "resnet50"  # a timm model name
    # None: random init; True: the timm hub's default weights of ``name``; a hub name; or a local path /
    # s3:// URI of a state_dict
    pretrained: str | bool | None = True
    kwargs: dict[str, Any] = Field(default_factory=dict)  # extra timm.create_model kwargs


class PKBatch(Section):
    """P identities x K images per batch (``BatchSpec("pk")``)."""

    ids_per_batch: Count = 16  # P
    images_per_id: Count = 4  # K


class Optim(Section):
    lr: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat = 5e-4


class AdamOptim(Optim):
    """Adam / AdamW."""

    betas: tuple[float, float] = (0.9, 0.999)


class Schedule(Section):
    epochs: Count = 60


class WarmupSchedule(Schedule):
    """A linear warm-up from ``warmup_factor`` x lr to lr over ``warmup_epochs`` (0: none)."""

    warmup_epochs: NonNegativeInt = 0
    warmup_factor: Factor = 0.1


class ConfigError(ValueError):
    """A config that cannot be built: the message names the key and the fix."""


def valid_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every dotted leaf key of ``model`` (sections expanded), sorted."""
    keys: list[str] = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += valid_keys(annotation, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return sorted(keys)


def _section_type(model: type[BaseModel], path: list[str]) -> type[BaseModel] | None:
    for name in path:
        info = model.model_fields.get(name)
        annotation = info.annotation if info else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def set_dotted(data: dict, key: str, value: Any, model: type[BaseModel], method: str) -> None:
    """``data["optim"]["lr"] = value`` for ``key="optim.lr"``, checking the key against ``model``."""
    *path, leaf = key.split(".")
    section = _section_type(model, path)
    if section is None or leaf not in section.model_fields:
        raise ConfigError(f"unknown config key {key!r} for method {method!r}; valid keys: "
                          f"{', '.join(valid_keys(model))}")
    annotation = section.model_fields[leaf].annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        raise ConfigError(f"config key {key!r} of method {method!r} is a section; set one of its keys: "
                          f"{', '.join(valid_keys(annotation, f'{key}.'))}")
    node = data
    for name in path:
        node = node.setdefault(name, {})
    node[leaf] = value


def _merge(base: dict, extra: Mapping[str, Any]) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def build_config(
    config_type: type[MethodConfig],
    presets: Mapping[str, Mapping[str, Any]],
    preset: str = "paper",
    overrides: Mapping[str, Any] | None = None,
    *,
    method: str = "",
) -> MethodConfig:
    if preset not in presets:
        raise ConfigError(f"unknown preset {preset!r} for method {method!r}; presets: {', '.join(presets)}")
    data = _merge(config_type().model_dump(), presets[preset])
    for key, value in (overrides or {}).items():
        set_dotted(data, key, value, config_type, method)
    try:
        return config_type.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())
        raise ConfigError(f"invalid {method} config (preset {preset!r}): {problems}") from None

