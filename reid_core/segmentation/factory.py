"""Segmenters by name, so a pipeline can ship a picklable (name, options) pair to its actors and
build the models there, next to the GPU."""

from __future__ import annotations

from collections.abc import Callable

from reid_core.segmentation.base import Segmenter

SegmenterBuilder = Callable[..., Segmenter]
_BUILDERS: dict[str, SegmenterBuilder] = {}


def register(name: str) -> Callable[[SegmenterBuilder], SegmenterBuilder]:
    def decorate(builder: SegmenterBuilder) -> SegmenterBuilder:
        _BUILDERS[name] = builder
        return builder
    return decorate


def names() -> list[str]:
    _load_builtin()
    return sorted(_BUILDERS)


def builder(name: str) -> SegmenterBuilder:
    """The registered builder (its signature says which options a method takes)."""
    _load_builtin()
    if name not in _BUILDERS:
        raise ValueError(f"unknown segmentation method {name!r}; choose one of {', '.join(sorted(_BUILDERS))}")
    return _BUILDERS[name]


def build_segmenter(name: str, options: dict | None = None) -> Segmenter:
    return builder(name)(**(options or {}))


def _load_builtin() -> None:
    # Imported on first use: SAM and the foreground runtime are heavy, and only actors need them.
    from reid_core.segmentation import reference, segmenters  # noqa: F401
