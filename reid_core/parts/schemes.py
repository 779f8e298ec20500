"""Part schemes: which body parts a species' part masks distinguish, and coarser groupings of them.

On disk every part label map (the manifest's ``parts_uri``: an 8-bit PNG, the synthetic species' and
``workflows/part_masks.py``'s output alike) uses one quadruped vocabulary, ``LABELS``: 0 is background,
1..5 are head, body, front legs, hind legs, tail. A species' scheme groups these labels into its K parts
(tiger K=5; yak K=4, tail merged into body), and its coarser groupings (K=3: head, body, legs) are
merges done when masks are loaded, so K can be searched without regenerating masks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

LABELS = ("background", "head", "body", "front_legs", "hind_legs", "tail")
BACKGROUND = 0

Grouping = tuple[tuple[str, ...], ...]  # group i (label i + 1) is the union of these vocabulary parts


@dataclass(frozen=True)
class PartScheme:
    """A species' part groupings by K. ``default_k`` is the paper's (or our documented) choice."""

    species: str
    groupings: Mapping[int, Grouping]
    default_k: int

    def __post_init__(self) -> None:
        parts = set(LABELS[1:])
        for k, groups in self.groupings.items():
            members = [part for group in groups for part in group]
            if len(groups) != k or sorted(members) != sorted(parts):
                raise ValueError(f"{self.species} K={k}: the groups must cover {sorted(parts)} once each")
        if self.default_k not in self.groupings:
            raise ValueError(f"{self.species}: default K={self.default_k} is not among {sorted(self.groupings)}")

    @property
    def choices(self) -> tuple[int, ...]:
        """The K values this scheme can train with (the tuner's ``num_parts`` choices)."""
        return tuple(sorted(self.groupings))

    def group_names(self, k: int) -> tuple[str, ...]:
        """A readable name per group of grouping K, in label order (e.g. ``body+tail``)."""
        return tuple("+".join(group) for group in self.grouping(k))

    def grouping(self, k: int) -> Grouping:
        if k not in self.groupings:
            raise ValueError(f"the {self.species} part scheme has no grouping with K={k}: use one of "
                             f"{', '.join(map(str, self.choices))} (e.g. --set parts.num_parts={self.default_k})")
        return self.groupings[k]

    def lookup(self, k: int) -> np.ndarray:
        """A 256-entry table from vocabulary labels to grouping K's labels (0 background, 1..K)."""
        table = np.zeros(256, dtype=np.uint8)
        for label, group in enumerate(self.grouping(k), start=1):
            for part in group:
                table[LABELS.index(part)] = label
        return table

    def merge(self, labels: np.ndarray, k: int) -> np.ndarray:
        """Vocabulary label map -> grouping K's label map (unknown labels become background)."""
        return self.lookup(k)[np.asarray(labels, dtype=np.uint8)]


_EACH = (("head",), ("body",), ("front_legs",), ("hind_legs",), ("tail",))
_TAIL_IN_BODY = (("head",), ("body", "tail"), ("front_legs",), ("hind_legs",))
_LEGS_TOGETHER = (("head",), ("body", "tail"), ("front_legs", "hind_legs"))

SCHEMES: dict[str, PartScheme] = {
    # The PAW-ViT paper's ATRW parts.
    "tiger": PartScheme("tiger", {5: _EACH, 4: _TAIL_IN_BODY, 3: _LEGS_TOGETHER}, default_k=5),
    # The paper's yak parts: a yak's tail is short and mostly hidden, so it belongs to the body.
    "yak": PartScheme("yak", {4: _TAIL_IN_BODY, 3: _LEGS_TOGETHER}, default_k=4),
    # Ours (no paper): an elephant is told apart by its head (ears, tusks, trunk), its thin tail is a few
    # pixels at camera-trap range, so the yak's grouping; the head stays its own part at every K.
    "elephant": PartScheme("elephant", {4: _TAIL_IN_BODY, 3: _LEGS_TOGETHER}, default_k=4),
}


def scheme_for(species: str) -> PartScheme:
    if species not in SCHEMES:
        raise ValueError(f"no part scheme for species {species!r}: known are {', '.join(SCHEMES)} "
                         "(add one to reid_core/parts/schemes.py, or pass --scheme NAME)")
    return SCHEMES[species]
