"""Builders by name with typed options: what the segmenter and detector registries share.

A name maps to ``"module:Spec"`` (imported on first use, so a heavy model library loads only where it is
built; the implementations never import the registry), the spec carries a pydantic options type (unknown
names refused) and a ``build(options)``. ``package.module:builder`` names the user's own builder, called
with the options as keywords (their names checked against its signature). A pipeline ships the picklable
(name, options) pair to its actors and builds the model there, next to the GPU.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from pydantic import BaseModel, ValidationError


def _attribute(path: str):
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


class NamedBuilders:
    """``kind`` names one built thing in errors ("segmenter"), ``label`` the name users pass ("segmentation
    method"); ``entries``: name -> "module:Spec"."""

    def __init__(self, kind: str, label: str, entries: dict[str, str], options_type: type[BaseModel]) -> None:
        self.kind, self.label, self.entries, self.options_type = kind, label, dict(entries), options_type

    def names(self) -> list[str]:
        return sorted(self.entries)

    @staticmethod
    def is_custom(name: str) -> bool:
        """``package.module:builder``: the user's own builder, not a registered name."""
        return ":" in name

    def spec(self, name: str):
        if name not in self.entries:
            raise ValueError(f"unknown {self.label} {name!r}; choose one of {', '.join(self.names())} "
                             "or give package.module:builder")
        return _attribute(self.entries[name])

    def option_names(self, name: str) -> list[str] | None:
        """The options ``name`` takes (None: a custom builder taking any keyword)."""
        if not self.is_custom(name):
            return list(self.spec(name).options.model_fields)
        parameters = inspect.signature(_attribute(name)).parameters.values()
        if any(p.kind is p.VAR_KEYWORD for p in parameters):
            return None
        return [p.name for p in parameters]

    def parse_options(self, name: str, options: dict[str, Any] | None) -> BaseModel | dict[str, Any]:
        """The typed options of a registered name (a custom builder's: the dict, names checked). Errors name
        the bad option and the valid ones."""
        options = dict(options or {})
        valid = self.option_names(name)
        takes = f"it takes: {', '.join(valid) or 'none'}" if valid is not None else ""
        if self.is_custom(name):
            unknown = sorted(set(options) - set(valid)) if valid is not None else []
            if unknown:
                raise ValueError(f"{self.kind} {name!r} takes no option {', '.join(unknown)}; {takes}")
            return options
        try:
            return self.spec(name).options.model_validate(options)
        except ValidationError as error:
            unknown = [str(e["loc"][0]) for e in error.errors() if e["type"] == "extra_forbidden"]
            if unknown:
                raise ValueError(f"{self.kind} {name!r} takes no option {', '.join(unknown)}; {takes}") from None
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ValueError(f"{self.kind} {name!r} option {where}={first.get('input')!r}: {first['msg']}; "
                             f"{takes}") from None

    def build(self, name: str, options: dict[str, Any] | BaseModel | None = None):
        if self.is_custom(name):
            return _attribute(name)(**self.parse_options(name, options))
        typed = options if isinstance(options, self.options_type) else self.parse_options(name, options)
        return self.spec(name).build(typed)
