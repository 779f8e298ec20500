"""The one Markdown table writer: what the commands print, log to MLflow and write next to results."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import polars as pl


def _cell(value: Any, float_format: str) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else format(value, float_format)
    return str(value).replace("|", "\\|")


def markdown_table(rows: pl.DataFrame | Iterable[Mapping[str, Any]], *, right: Sequence[str] = (),
                   float_format: str = "") -> str:
    """A Markdown table of ``rows`` (dicts, or a DataFrame), columns in the first row's order.

    ``right`` names the columns to right-align (numbers in a paper-style table); ``float_format``
    formats float cells (``".4g"``), empty: as ``str`` would.
    """
    rows = rows.to_dicts() if isinstance(rows, pl.DataFrame) else list(rows)
    if not rows:
        return "(no rows)"
    columns = list(rows[0])
    rule = ["---:" if c in right else "---" for c in columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(_cell(r.get(c), float_format) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
