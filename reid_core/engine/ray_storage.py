"""Where Ray Train and Tune keep runs: ``Settings.ray_storage``, a local folder or an ``s3://`` URI.

On S3 there is no local copy of what Ray wrote, so everything that reads runs back (the latest
checkpoint of a run, a sweep's record, Tune's experiment state) goes through pyarrow here, never
pathlib. With ``REID_S3_ENDPOINT_URL`` set (an S3-compatible store, moto in tests), Ray is handed an
``S3FileSystem`` on that endpoint, and then wants the path without its ``s3://``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow.fs as pafs

from reid_core.data import files as rio
from reid_core.settings import Settings


@dataclass(frozen=True)
class StorageArgs:
    """What ``ray.train.RunConfig`` / ``ray.tune.RunConfig`` / ``Tuner.restore`` take for a location."""

    path: str  # storage_path (or an experiment path): a URI, or a path inside ``filesystem``
    filesystem: pafs.FileSystem | None  # storage_filesystem; None: Ray resolves the URI itself


def storage_args(uri: str, settings: Settings) -> StorageArgs:
    """Ray's arguments for ``uri`` (a local path or s3:// URI under the Ray storage)."""
    if rio.is_s3(uri) and settings.s3_endpoint_url:
        return StorageArgs(uri[len(rio.S3_SCHEME):], rio.s3_filesystem(settings.s3_endpoint_url))
    return StorageArgs(rio.absolute(uri), None)


def run_dir(settings: Settings, *parts: str) -> str:
    """A location under the Ray storage, as a URI (s3://...) or an absolute local path."""
    return rio.join(settings.ray_storage, *parts)


def subdirectories(uri: str, filesystem: pafs.FileSystem | None = None) -> list[str]:
    """The names of the folders directly under ``uri``, sorted; empty when it does not exist. (S3 has
    no folders: a "folder" is a common key prefix, which pyarrow lists as a directory.)"""
    fs, path = rio.resolve(uri, filesystem)
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=False, allow_not_found=True))
    return sorted(info.base_name for info in infos if info.type == pafs.FileType.Directory)


def download(uri: str, target: str, filesystem: pafs.FileSystem | None = None) -> str:
    """Copy the folder ``uri`` to the local folder ``target`` (replacing what is there); returns it."""
    fs, path = rio.resolve(uri, filesystem)
    local, target_path = rio.resolve(target)
    local.delete_dir_contents(target_path, missing_dir_ok=True)
    local.create_dir(target_path)
    pafs.copy_files(path, target_path, source_filesystem=fs, destination_filesystem=local)
    return target_path
