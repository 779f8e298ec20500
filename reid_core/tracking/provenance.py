"""What produced a run: code version (git) and data version (manifest hash), as tags."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
from pathlib import Path

import polars as pl

import reid_core
from reid_core.data import files as rio

UNKNOWN = "unknown"
# A Ray job's working dir is uploaded without `.git`: the submitter can pass the commit in this
# variable (runtime_env env_vars) and it wins over asking git.
GIT_COMMIT_ENV = "REID_GIT_COMMIT"
# Columns whose content defines a data version: which images, where, with which labels and splits.
DATA_VERSION_COLUMNS = ("image_id", "image_uri", "entity", "split")
DATA_VERSION_OPTIONAL_COLUMNS = ("role",)
_NULL = "\x00"  # distinct from every real string value, including ""


def _package_dir() -> Path:
    return Path(reid_core.__file__).resolve().parent


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def git_commit(path: str | Path | None = None) -> str:
    """HEAD sha of the repository holding ``path`` (default: this package's checkout), or "unknown"."""
    if path is None and (env := os.environ.get(GIT_COMMIT_ENV)):
        return env
    return _git(["rev-parse", "HEAD"], Path(path) if path else _package_dir()) or UNKNOWN


def git_dirty(path: str | Path | None = None) -> bool | None:
    """True when tracked files differ from HEAD; None outside git."""
    status = _git(["status", "--porcelain", "--untracked-files=no"], Path(path) if path else _package_dir())
    return None if status is None else bool(status)


def data_version(manifest: pl.DataFrame | str | Path, length: int = 12) -> str:
    """Short stable hash of a manifest's content (a DataFrame, or a Parquet path / s3:// URI).

    Hashes image_id, image_uri, entity, split (and role when present) sorted by image_id, so row
    order and extra columns do not matter but any relabelling, resplit or moved image does.
    """
    df = manifest if isinstance(manifest, pl.DataFrame) else pl.read_parquet(io.BytesIO(rio.read_bytes(str(manifest))))
    missing = [c for c in DATA_VERSION_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"cannot compute a data version: manifest lacks column(s) {missing}; "
                         "build it with reid_core.data.manifest.conform")
    columns = [*DATA_VERSION_COLUMNS, *(c for c in DATA_VERSION_OPTIONAL_COLUMNS if c in df.columns)]
    lines = (
        df.select(pl.col(c).cast(pl.String).fill_null(_NULL) for c in columns)
        .sort(columns)
        .select(pl.concat_str(columns, separator="\x1f"))
        .to_series()
    )
    digest = hashlib.sha256("\t".join(columns).encode())
    digest.update("\n".join(lines.to_list()).encode())
    return digest.hexdigest()[:length]


def standard_tags(species: str, method: str, dataset: str, data_version: str, **extra: str) -> dict[str, str]:
    """The tags every sweep, trial and registered version carries, so all are filterable alike."""
    dirty = git_dirty()
    return {
        "species": species,
        "method": method,
        "dataset": dataset,
        "data_version": data_version,
        "git_commit": git_commit(),
        "git_dirty": UNKNOWN if dirty is None else str(dirty).lower(),
        "reid_core_version": reid_core.__version__,
        **{key: str(value) for key, value in extra.items()},
    }
