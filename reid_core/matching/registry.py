"""Matcher names to matchers. The registry imports the implementations; they never import it."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from reid_core.matching.features import LocalFeatures, PairMatch

MATCHERS = ("none", "sift", "lightglue-disk", "lightglue-aliked")
NONE = "none"  # no local matching: the global model alone

__all__ = ["MATCHERS", "LocalFeatures", "Matcher", "PairMatch", "check_options", "get_matcher"]


class Matcher(Protocol):
    name: str

    def extract(self, image: np.ndarray) -> LocalFeatures: ...  # HxWx3 uint8 RGB; 0 keypoints allowed

    def match(self, a: LocalFeatures, b: LocalFeatures) -> PairMatch: ...


def get_matcher(name: str, options: dict | None = None, device: str = "cpu") -> Matcher:
    """A matcher by name, built on ``device`` (LightGlue's weights loaded here). ``none`` is a valid choice for a
    caller (no local matching) but builds nothing: callers check for it first."""
    if name == "sift":
        from reid_core.matching.sift import SiftMatcher

        return SiftMatcher(options, device)
    if name in ("lightglue-disk", "lightglue-aliked"):
        from reid_core.matching.lightglue import LightGlueMatcher

        return LightGlueMatcher(name.removeprefix("lightglue-"), options, device)
    if name == NONE:
        raise ValueError("matcher 'none' means no local matching, so there is no matcher to build: check for it "
                         f"before calling get_matcher (matchers: {', '.join(m for m in MATCHERS if m != NONE)})")
    raise ValueError(f"unknown matcher {name!r}: choose one of {', '.join(MATCHERS)}")


def check_options(name: str, options: dict | None = None) -> None:
    """Refuse an unknown matcher or option before any actor starts (a typo would fail every actor); builds
    nothing and loads no weights."""
    if name == "sift":
        from reid_core.matching.sift import SiftOptions

        SiftOptions(**(options or {}))
    elif name in ("lightglue-disk", "lightglue-aliked"):
        from reid_core.matching.lightglue import LightGlueOptions

        LightGlueOptions(**(options or {}))
    else:
        get_matcher(name, options)  # raises: unknown, or "none"
