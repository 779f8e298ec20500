"""Reading the source files of a dataset, with errors that name the file, the line and the fix.

Released list files are messy (blank trailing lines, no final newline, spaces in file names, a
missing direction column), so the readers here are tolerant of layout but strict about content:
anything they cannot parse raises :class:`DatasetFormatError` instead of being skipped.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl


class DatasetFormatError(ValueError):
    """A source file does not match the documented format (the message says where and how to fix it)."""


class MissingInputError(DatasetFormatError, FileNotFoundError):
    """A required source file or folder is absent (the message names the paths tried and the flag)."""


def root_dir(root: str | Path) -> Path:
    """The dataset root as an absolute path; it must be a folder."""
    path = Path(os.path.abspath(Path(root).expanduser()))
    if not path.is_dir():
        raise MissingInputError(f"dataset root {path} is not a folder. Fix: pass the dataset folder with --root")
    return path


def under(base: Path, value: str | Path) -> Path:
    """``value`` if absolute, else relative to ``base``; normalised, symlinks kept as the user laid them out."""
    return Path(os.path.abspath(base / Path(value).expanduser()))


def find_file(candidates: list[Path], what: str, flag: str) -> Path:
    """The first existing candidate, or an error listing every path tried and the flag that sets it."""
    for path in candidates:
        if path.exists():
            return path
    tried = ", ".join(str(p) for p in candidates)
    raise MissingInputError(f"{what} not found (looked for {tried}). Fix: pass its location with {flag}")


def require(path: Path, what: str, flag: str) -> Path:
    return find_file([path], what, flag)


def read_lines(path: Path, flag: str) -> list[tuple[int, str]]:
    """Non-blank lines as (1-based line number, stripped text); tolerates CRLF, BOM, trailing blanks.

    Falls back to ISO-8859-1 because WildlifeDatasets only promises paths that encode in it.
    """
    require(path, "list file", flag)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


@dataclass(frozen=True)
class ListEntry:
    line: int
    path: str
    label: int
    direction: int | None  # None where the list has no direction column


# The path is everything up to a file extension followed by the integer field(s), so file names may
# contain spaces; a missing direction is allowed (released lists omit it on some lines).
_LIST_LINE = re.compile(r"^(?P<path>\S.*?\.[A-Za-z0-9]+)\s+(?P<label>-?\d+)(?:\s+(?P<direction>-?\d+))?$")


def parse_list(path: Path, flag: str, expected: str) -> list[ListEntry]:
    """Parse ``path label [direction]`` lines (``expected`` is the format shown in error messages)."""
    entries = []
    for n, text in read_lines(path, flag):
        match = _LIST_LINE.match(text)
        if match is None:
            raise DatasetFormatError(
                f"{path.name} line {n}: expected '{expected}', got {text!r}. "
                f"Fix: correct or delete that line in {path} (one image per line: {expected})"
            )
        direction = None if match["direction"] is None else int(match["direction"])
        if direction not in (None, 0, 1):
            raise DatasetFormatError(
                f"{path.name} line {n}: direction must be 0 (left) or 1 (right), got {direction} in {text!r}. "
                f"Fix: correct that line in {path}"
            )
        entries.append(ListEntry(n, match["path"].removeprefix("./"), int(match["label"]), direction))
    return entries


def read_json(path: Path, what: str, flag: str) -> Any:
    require(path, what, flag)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DatasetFormatError(
            f"{path.name} line {error.lineno}: not valid JSON ({error.msg}). Fix: re-download or repair {path}"
        ) from None


def read_csv(path: Path, what: str, flag: str, *, has_header: bool = True) -> pl.DataFrame:
    """A CSV with every column as a string (adapters parse values themselves, to report bad rows).

    Adds ``__line``, the 1-based line in the file (what an editor shows), and drops blank lines.
    """
    require(path, what, flag)
    try:
        table = pl.read_csv(path, has_header=has_header, infer_schema=False, encoding="utf8-lossy")
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError, pl.exceptions.ShapeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DatasetFormatError(
            f"{path.name}: cannot be read as CSV ({first}). Fix: give every line of {path} as many fields as "
            "the first line, quoting fields that contain commas"
        ) from None
    table = table.with_row_index("__line", offset=2 if has_header else 1)
    return table.filter(~pl.all_horizontal(pl.exclude("__line").is_null()))  # blank lines read as all-null


def require_columns(df: pl.DataFrame, columns: list[str], path: Path) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DatasetFormatError(
            f"{path.name}: missing column(s) {', '.join(missing)} (has {', '.join(df.columns)}). "
            f"Fix: use the documented header or the right file"
        )


def parse_int(value: str | None, path: Path, line: int, column: str) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise DatasetFormatError(
            f"{path.name} line {line}: column '{column}' must be an integer, got {value!r}. Fix: correct that line"
        ) from None
