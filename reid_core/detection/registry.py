"""Detectors by name, so a pipeline can ship a picklable (name, options) pair to its actors and build the
model there, next to the GPU. The registry imports the implementations (on first use: transformers is
heavy); they never import the registry. Each name has typed options (``DetectorOptions``, pydantic,
unknown names refused); ``package.module:builder`` names your own builder, called with the options as
keywords."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from pydantic import ValidationError

from reid_core.detection.base import Detector, DetectorOptions, DetectorSpec

# name -> "module:DetectorSpec"
_DETECTORS = {
    "megadetector": "reid_core.detection.megadetector:MEGADETECTOR",
    "reference": "reid_core.detection.reference:REFERENCE",
}


def names() -> list[str]:
    return sorted(_DETECTORS)


def is_custom(name: str) -> bool:
    return ":" in name


def spec(name: str) -> DetectorSpec:
    if name not in _DETECTORS:
        raise ValueError(f"unknown detector {name!r}; choose one of {', '.join(names())} or give package.module:builder")
    module, attr = _DETECTORS[name].split(":")
    return getattr(importlib.import_module(module), attr)


def _custom_builder(name: str):
    module, _, attr = name.partition(":")
    return getattr(importlib.import_module(module), attr)


def option_names(name: str) -> list[str] | None:
    """The options a detector takes (None: a custom builder taking any keyword)."""
    if not is_custom(name):
        return list(spec(name).options.model_fields)
    parameters = inspect.signature(_custom_builder(name)).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    return [p.name for p in parameters]


def parse_options(name: str, options: dict[str, Any] | None) -> DetectorOptions | dict[str, Any]:
    """The typed options of a registered detector (a custom builder's: the dict, names checked). Errors
    name the bad option and the valid ones."""
    options = dict(options or {})
    valid = option_names(name)
    takes = f"it takes: {', '.join(valid) or 'none'}" if valid is not None else ""
    if is_custom(name):
        unknown = sorted(set(options) - set(valid)) if valid is not None else []
        if unknown:
            raise ValueError(f"detector {name!r} takes no option {', '.join(unknown)}; {takes}")
        return options
    try:
        return spec(name).options.model_validate(options)
    except ValidationError as error:
        unknown = [str(e["loc"][0]) for e in error.errors() if e["type"] == "extra_forbidden"]
        if unknown:
            raise ValueError(f"detector {name!r} takes no option {', '.join(unknown)}; {takes}") from None
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ValueError(f"detector {name!r} option {where}={first.get('input')!r}: {first['msg']}; {takes}") from None


def build_detector(name: str, options: dict[str, Any] | DetectorOptions | None = None) -> Detector:
    if is_custom(name):
        return _custom_builder(name)(**parse_options(name, options))
    typed = options if isinstance(options, DetectorOptions) else parse_options(name, options)
    return spec(name).build(typed)
