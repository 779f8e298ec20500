"""Methods by name: plain ``name -> Method`` entries. The registry imports the implementations; they
never import the registry. Each is imported on first use, so listing names imports no backbone library."""

from __future__ import annotations

import importlib

from reid_core.methods.contract import Method

# name -> "module:Class"
_METHODS = {
    "arbase": "reid_core.methods.arbase:ARBaseMethod",
    "arcface": "reid_core.methods.arcface:ArcFaceMethod",
    "care": "reid_core.methods.care:CareMethod",
    "clip_ft": "reid_core.methods.clip:ClipFTMethod",
    "clip_zs": "reid_core.methods.clip:ClipZSMethod",
    "dve": "reid_core.methods.dve:DVEMethod",
    "pawvit": "reid_core.methods.pawvit:PawViTMethod",
    "vit": "reid_core.methods.vit:ViTMethod",
}
_loaded: dict[str, Method] = {}


class UnknownMethodError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def method_names() -> list[str]:
    return sorted(_METHODS)


def get_method(name: str) -> Method:
    if name not in _METHODS:
        raise UnknownMethodError(f"unknown method {name!r}; available: {', '.join(method_names())} "
                                 "(pass one with --method)")
    if name not in _loaded:
        module, cls = _METHODS[name].split(":")
        _loaded[name] = getattr(importlib.import_module(module), cls)()
    return _loaded[name]
