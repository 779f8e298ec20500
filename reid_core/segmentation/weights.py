"""Model files from a local path or an s3:// URI, as a local file the model runtimes can open.

SAM checkpoints (0.4 - 2.5 GB) and ONNX files are read by libraries that want a path, so s3:// files are
copied once into a cache (``$REID_HOME/models`` by default) and reused while the remote size and
modification time are unchanged.
Several Ray actors on one node may fetch the same file at once: each downloads to its own temporary
sibling and renames it into place, so nobody ever opens a half-written file.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import uuid
from pathlib import Path

import pyarrow.fs as pafs

from reid_core.data import files as io
from reid_core.settings import Settings

CHUNK = 16 << 20


def default_cache_dir() -> Path:
    return Settings.from_env().home / "models"


def local_model_file(uri: str | Path, *, what: str, fix: str, cache_dir: str | Path | None = None,
                     filesystem: pafs.FileSystem | None = None) -> Path:
    """A local path holding the file at ``uri``. ``what`` names the file and ``fix`` says how to get it,
    for the error raised when it is missing."""
    uri = str(uri)
    if not io.is_s3(uri):
        path = Path(uri).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f"{what} {path} not found: {fix}")
        return path
    fs, remote = io.resolve(uri, filesystem)
    info = fs.get_file_info(remote)
    if info.type != pafs.FileType.File:
        raise FileNotFoundError(f"{what} {uri} not found: {fix}")
    # The URI's hash keeps same-named files from different buckets or folders apart.
    digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
    local = Path(cache_dir or default_cache_dir()) / f"{digest}-{posixpath.basename(remote)}"
    remote_mtime = info.mtime.timestamp() if info.mtime is not None else None
    if local.is_file() and local.stat().st_size == info.size and (
            remote_mtime is None or abs(local.stat().st_mtime - remote_mtime) < 1):
        return local
    local.parent.mkdir(parents=True, exist_ok=True)
    tmp = local.with_name(f"{local.name}.tmp-{uuid.uuid4().hex}")
    try:
        with fs.open_input_stream(remote) as src, open(tmp, "wb") as dst:
            while chunk := src.read(CHUNK):
                dst.write(chunk)
        if remote_mtime is not None:  # stamped with the remote time, so a replaced remote file is fetched again
            os.utime(tmp, (remote_mtime, remote_mtime))
        os.replace(tmp, local)
    finally:
        tmp.unlink(missing_ok=True)
    return local
