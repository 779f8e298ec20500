"""Dataset adapters: each turns one on-disk format into a validated manifest.

``ADAPTERS`` maps a format name to ``load_<name>(root, **options) -> pl.DataFrame``; the convert CLI
(``python -m reid_core.data.convert <name> ...``) is a thin shell around it.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from reid_core.data.adapters._inputs import DatasetFormatError, MissingInputError
from reid_core.data.adapters.atrw import load_atrw
from reid_core.data.adapters.elpephants import load_elpephants
from reid_core.data.adapters.folders import load_folders
from reid_core.data.adapters.wildlife import load_wildlife
from reid_core.data.adapters.yakreid import load_yakreid

ADAPTERS: dict[str, Callable[..., pl.DataFrame]] = {
    "atrw": load_atrw,
    "yakreid": load_yakreid,
    "elpephants": load_elpephants,
    "wildlife": load_wildlife,
    "folders": load_folders,
}

__all__ = [
    "ADAPTERS",
    "DatasetFormatError",
    "MissingInputError",
    "load_atrw",
    "load_elpephants",
    "load_folders",
    "load_wildlife",
    "load_yakreid",
]
