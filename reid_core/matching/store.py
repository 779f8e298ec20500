"""Features extracted once per image: a memory cache in front of a folder of ``.npz`` files (local or s3://),
keyed by matcher + options (the folder) and image URI (the file), so every pair an image takes part in,
in this run or a later one, reuses them.

An image that cannot be used is an outcome, not an exception: ``unreadable`` (the bytes are no image
Pillow can decode: a corrupt file, kept as a result) or ``failed`` (the bytes could not be read: maybe
transient, so a rerun tries again).
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from reid_core.data import files as rio
from reid_core.matching.features import LocalFeatures

UNREADABLE, FAILED = "unreadable", "failed"


def options_key(matcher: str, options: dict | None) -> str:
    """The folder name of one matcher's features with one set of options (``sift-1a2b3c4d5e6f``)."""
    text = json.dumps({"matcher": matcher, "options": options or {}}, sort_keys=True, default=str)
    return f"{matcher}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def feature_uri(folder: str, image_uri: str) -> str:
    return rio.join(folder, f"{hashlib.sha256(image_uri.encode()).hexdigest()[:32]}.npz")


@dataclass(frozen=True)
class Outcome:
    features: LocalFeatures | None
    status: str | None = None  # None: usable; else UNREADABLE / FAILED
    error: str | None = None


def decode(data: bytes) -> np.ndarray:
    image = rio.open_image(data)
    image.load()  # truncated files fail here
    return np.asarray(image.convert("RGB"))


class FeatureStore:
    """``get(uri, folder)``: the image's features from memory, the folder, or the matcher (then saved)."""

    def __init__(self, matcher, memory_items: int = 4096) -> None:
        self.matcher, self.memory_items = matcher, memory_items
        self.memory: OrderedDict[tuple[str, str | None], Outcome] = OrderedDict()
        self.extracted = 0  # images this store ran the matcher on (for tests and reports)

    def get(self, image_uri: str, folder: str | None) -> Outcome:
        key = (image_uri, folder)
        if key in self.memory:
            self.memory.move_to_end(key)
            return self.memory[key]
        outcome = self._load(image_uri, folder)
        self.memory[key] = outcome
        if len(self.memory) > self.memory_items:
            self.memory.popitem(last=False)
        return outcome

    def _load(self, image_uri: str, folder: str | None) -> Outcome:
        cached = feature_uri(folder, image_uri) if folder else None
        if cached and rio.exists(cached):
            try:
                return Outcome(LocalFeatures.from_bytes(rio.read_bytes(cached)))
            except Exception:  # a damaged cache file is recomputed and replaced
                pass
        try:
            data = rio.read_bytes(image_uri)
        except Exception as error:
            return Outcome(None, FAILED, f"{type(error).__name__}: {error}")
        try:
            image = decode(data)
        except Exception as error:
            return Outcome(None, UNREADABLE, f"{type(error).__name__}: {error}")
        features = self.matcher.extract(image)
        self.extracted += 1
        if cached:
            rio.write_bytes(cached, features.to_bytes())  # atomic: a reader never sees half a file
        return Outcome(features)
