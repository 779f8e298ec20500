"""Keypoint mappings: which part of our vocabulary each keypoint of a pose format belongs to.

A mapping is a small JSON file (``reid_core/parts/mappings/<name>.json`` ships with the package;
any other path or s3:// URI works too)::

    {
      "name": "atrw",
      "order": ["left_ear", "right_ear", "nose", ...],
      "parts": {"left_ear": "head", "nose": "head", "center": "body", "antler": null, ...},
      "connections": [["left_ear", "nose"], ["nose", "center", "body"], ...],
      "tail": ["tail_base", "tail_end"]
    }

- ``parts``: keypoint name -> one of ``schemes.LABELS[1:]`` (head, body, front_legs, hind_legs, tail),
  or null for keypoints to ignore (PAW-ViT ignores SuperAnimal's antlers).
- ``order``: the order of flat ``[x1, y1, v1, x2, ...]`` lists (ATRW's ``reid_keypoints_*.json``, a
  manifest column); default the order of ``parts``. COCO files name their keypoints themselves.
- ``connections``: the skeleton. Where both ends are visible, a point is added halfway along it with
  the connection's part: the two ends' part when they agree, else the third entry (required then).
- ``tail`` (optional): two keypoints between which the tail is traced through the foreground mask.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

from reid_core.data import files as rio
from reid_core.parts.schemes import LABELS, PartScheme

SHIPPED = Path(__file__).with_name("mappings")
DEFAULT_MAPPING = "atrw"
PARTS = LABELS[1:]
IGNORED = 0  # the label of an ignored keypoint: never visible
_KEYS = {"name", "about", "order", "parts", "connections", "tail"}


class MappingError(ValueError):
    """A mapping file is malformed, or does not fit the keypoints it is used with."""


@dataclass(frozen=True)
class KeypointMapping:
    name: str
    names: tuple[str, ...]  # the order of flat keypoint lists
    labels: tuple[int, ...]  # per name: its part's label in schemes.LABELS, IGNORED for null
    connections: tuple[tuple[int, int, int], ...]  # (index, index, the midpoint's label)
    tail: tuple[int, int] | None  # indices of the keypoints the tail is traced between
    source: str  # where it was read from, for messages
    digest: str  # of the file's content: a changed mapping shows in parts_config

    @property
    def values_per_row(self) -> int:
        return 3 * len(self.names)

    def index(self, names: list[str], where: str) -> list[int]:
        """Positions of ``names`` (a pose file's keypoints) in this mapping; unknown names are an error."""
        unknown = [n for n in names if n not in self.names]
        if unknown:
            raise MappingError(f"{where} names keypoints {unknown} that mapping {self.source} does not know. Fix: "
                               "add them to the mapping's \"parts\" (null to ignore them), or pass the mapping "
                               "written for these keypoints with --mapping")
        return [self.names.index(n) for n in names]

    def parts_produced(self) -> set[str]:
        """The parts a mask made with this mapping can show."""
        labels = {label for label in self.labels if label != IGNORED} | {c[2] for c in self.connections}
        return {LABELS[label] for label in labels} | ({"tail"} if self.tail else set())

    def check_covers(self, scheme: PartScheme) -> None:
        """Every part group of the scheme's default K must be something this mapping can label."""
        produced = self.parts_produced()
        missing = [group for group in scheme.grouping(scheme.default_k) if not produced & set(group)]
        if missing:
            names = ", ".join("+".join(group) for group in missing)
            raise MappingError(f"mapping {self.source} labels no keypoint as {names}, which the {scheme.species} part "
                               f"scheme (K={scheme.default_k}) needs: every mask would lack it. Fix: map keypoints "
                               "to it in the mapping's \"parts\", or choose another scheme with --scheme")


def _fail(source: str, problem: str, fix: str) -> MappingError:
    return MappingError(f"mapping {source}: {problem}. Fix: {fix}")


def _label(source: str, name: str, part: object, nullable: bool = True) -> int:
    if part is None and nullable:
        return IGNORED
    if part not in PARTS:
        raise _fail(source, f"{name} maps to {part!r}, which is not a part",
                    f"use one of {', '.join(PARTS)}" + (", or null to ignore the keypoint" if nullable else ""))
    return LABELS.index(part)


def _names(source: str, where: str, names: object, known: dict[str, int], count: int | None = None) -> list[int]:
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or (
            count is not None and len(names) != count):
        raise _fail(source, f"{where} must be a list of {count or 'some'} keypoint names, got {names!r}",
                    "write it as in reid_core/parts/mappings/atrw.json")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise _fail(source, f"{where} names {unknown}, not in \"parts\"", "add them to \"parts\" or fix the names")
    return [known[n] for n in names]


def parse_mapping(data: object, source: str, digest: str = "") -> KeypointMapping:
    if not isinstance(data, dict) or not isinstance(data.get("parts"), dict) or not data["parts"]:
        raise _fail(source, "expected a JSON object with \"parts\" (keypoint name -> part)",
                    "write it as in reid_core/parts/mappings/atrw.json")
    extra = sorted(set(data) - _KEYS)
    if extra:
        raise _fail(source, f"unknown keys {extra}", f"use only {sorted(_KEYS)}")
    parts: dict[str, object] = data["parts"]
    order = data.get("order", list(parts))
    if not isinstance(order, list) or len(set(map(str, order))) != len(order) or set(order) != set(parts):
        differ = sorted(map(str, set(parts) ^ set(order if isinstance(order, list) else [])))
        raise _fail(source, f"\"order\" must name every keypoint of \"parts\" once (differs in {differ})",
                    "list each keypoint of \"parts\" once in \"order\", or leave \"order\" out")
    positions = {name: i for i, name in enumerate(order)}
    labels = tuple(_label(source, f"keypoint {name!r}", parts[name]) for name in order)
    connections = []
    for connection in data.get("connections", []):
        if not isinstance(connection, list) or len(connection) not in (2, 3):
            raise _fail(source, f"connection {connection!r} is not [name, name] or [name, name, part]",
                        "write each connection as a list of two keypoint names, plus the midpoint's part where "
                        "the two ends belong to different parts")
        i, j = _names(source, f"connection {connection}", connection[:2], positions, 2)
        if len(connection) == 3:
            label = _label(source, f"connection {connection}", connection[2], nullable=False)
        elif labels[i] == labels[j] and labels[i] != IGNORED:
            label = labels[i]
        else:
            ends = f"{LABELS[labels[i]] if labels[i] else 'ignored'} and {LABELS[labels[j]] if labels[j] else 'ignored'}"
            raise _fail(source, f"connection {connection} joins {ends} keypoints",
                        f"name its midpoint's part as a third entry, e.g. {connection + ['body']}")
        connections.append((i, j, label))
    tail = data.get("tail")
    tail_ends = None if tail is None else tuple(_names(source, "\"tail\"", tail, positions, 2))
    return KeypointMapping(name=str(data.get("name") or Path(source).stem), names=tuple(order), labels=labels,
                           connections=tuple(connections), tail=tail_ends, source=source, digest=digest)


def load_mapping(spec: str | None = None, filesystem: pafs.FileSystem | None = None) -> KeypointMapping:
    """A shipped mapping by name (``atrw``; the default), or a mapping file (path or s3:// URI)."""
    spec = spec or DEFAULT_MAPPING
    shipped = SHIPPED / f"{spec}.json"
    uri = str(shipped) if "/" not in spec and shipped.exists() else spec
    filesystem = filesystem if rio.is_s3(uri) else None  # an injected filesystem is for s3:// URIs
    if not rio.exists(uri, filesystem):
        available = ", ".join(sorted(p.stem for p in SHIPPED.glob("*.json")))
        raise MappingError(f"mapping {spec} does not exist. Fix: pass a mapping file (JSON) with --mapping, "
                           f"or a shipped mapping: {available}")
    raw = rio.read_bytes(uri, filesystem)
    try:
        data = json.loads(raw)
    except ValueError as error:
        raise _fail(uri, f"not valid JSON ({error})", "fix the file") from None
    return parse_mapping(data, uri, hashlib.sha256(raw).hexdigest()[:12])
