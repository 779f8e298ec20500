"""A method's search space (data: ``SearchParam``) as an Optuna define-by-run space, with overrides.

``bounds`` replaces a parameter's range (``(low, high)``) or choices (``[a, b]``) by its dotted key; a
plain number fixes it. Picklable, because Tune checkpoints its searcher.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from reid_core.methods.contract import SearchParam
from reid_core.methods.registry import get_method


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def resolve(params: tuple[SearchParam, ...], bounds: Mapping[str, Any], method: str) -> dict[str, SearchParam | Any]:
    """key -> the ``SearchParam`` to sample, or the fixed value a bound gives it."""
    by_key = {p.key: p for p in params}
    unknown = sorted(set(bounds) - set(by_key))
    if unknown:
        raise ValueError(f"unknown search-space bound(s) {unknown}; {method} searches {sorted(by_key)} "
                         "(fix other config values with --set KEY=VALUE)")
    out: dict[str, SearchParam | Any] = {}
    for key, param in by_key.items():
        spec = bounds.get(key)
        if spec is None:
            out[key] = param
        elif _numeric(spec):
            out[key] = spec
        elif param.kind == "choice" or isinstance(spec, list):
            out[key] = replace(param, kind="choice", choices=tuple(spec))
        else:
            if len(spec) != 2 or not all(_numeric(v) for v in spec):
                raise ValueError(f"bound {key!r} must be LOW:HIGH or A,B,C, got {spec!r}")
            try:
                out[key] = replace(param, low=float(spec[0]), high=float(spec[1]))
            except ValueError as err:
                raise ValueError(f"bound {key!r}: {err}") from None
    return out


def suggest(trial: Any, param: SearchParam) -> Any:
    if param.kind == "choice":
        return trial.suggest_categorical(param.key, list(param.choices))
    if param.kind == "int":
        return trial.suggest_int(param.key, int(param.low), int(param.high))
    return trial.suggest_float(param.key, param.low, param.high, log=param.kind == "log")


@dataclass
class SearchSpace:
    """The define-by-run function OptunaSearch calls; returns the fixed values as constants."""

    method: str
    bounds: dict[str, Any] = field(default_factory=dict)
    species: str | None = None  # the method's ranges for this species (``Method.search_space_for``)

    def __post_init__(self) -> None:
        method = get_method(self.method)
        params = method.search_space if self.species is None else method.search_space_for(self.species)
        self._resolved = resolve(params, self.bounds, self.method)

    def __call__(self, trial: Any) -> dict[str, Any]:
        values = {key: suggest(trial, p) for key, p in self._resolved.items() if isinstance(p, SearchParam)}
        return {key: v for key, v in self._resolved.items() if not isinstance(v, SearchParam)} | values
