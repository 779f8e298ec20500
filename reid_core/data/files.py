"""One filesystem abstraction for local paths and s3:// URIs (pyarrow.fs, the one Ray Data uses).

Every function takes an optional ``filesystem`` so callers and tests can inject one (for instance an
``S3FileSystem`` pointed at an endpoint on 127.0.0.1); otherwise it is derived from the URI and the
settings (``REID_S3_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL``).
"""

from __future__ import annotations

import io
import os
import posixpath
import uuid
from pathlib import Path

import pyarrow.fs as pafs
from PIL import Image, UnidentifiedImageError

from reid_core.settings import get_settings

S3_SCHEME = "s3://"


def is_s3(uri: str) -> bool:
    return str(uri).startswith(S3_SCHEME)


def s3_filesystem(endpoint_url: str | None = None, region: str | None = None) -> pafs.S3FileSystem:
    """An S3 filesystem; credentials come from the usual AWS environment variables or profile."""
    kwargs: dict = {"region": region or os.environ.get("AWS_DEFAULT_REGION", "us-east-1")}
    if endpoint_url:
        scheme, _, host = endpoint_url.partition("://")
        kwargs.update(endpoint_override=host or scheme, scheme=scheme if host else "https")
    return pafs.S3FileSystem(**kwargs)


def resolve(uri: str | Path, filesystem: pafs.FileSystem | None = None) -> tuple[pafs.FileSystem, str]:
    """Return (filesystem, path inside it) for a local path or an s3:// URI."""
    uri = str(uri)
    if is_s3(uri):
        fs = filesystem or s3_filesystem(get_settings().s3_endpoint_url)
        return fs, uri[len(S3_SCHEME):]
    return filesystem or pafs.LocalFileSystem(), str(Path(uri).expanduser().resolve())


def absolute(uri: str | Path) -> str:
    """The URI as it should be recorded: s3:// unchanged, a local path made absolute."""
    return str(uri) if is_s3(str(uri)) else str(Path(uri).expanduser().resolve())


def join(base: str | Path, *parts: str) -> str:
    """Join URI parts with '/' for s3:// and the OS separator locally."""
    base = str(base)
    if is_s3(base):
        return posixpath.join(base, *parts)
    return str(Path(base, *parts))


def list_files(root: str | Path, filesystem: pafs.FileSystem | None = None) -> list[str]:
    """Every file under ``root`` (recursive), as URIs of the same kind (s3:// or absolute local paths),
    sorted; an empty list when ``root`` does not exist."""
    fs, path = resolve(root, filesystem)
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    prefix = S3_SCHEME if is_s3(str(root)) else ""
    return sorted(prefix + info.path for info in infos if info.type == pafs.FileType.File)


def exists(uri: str | Path, filesystem: pafs.FileSystem | None = None) -> bool:
    fs, path = resolve(uri, filesystem)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def read_bytes(uri: str | Path, filesystem: pafs.FileSystem | None = None) -> bytes:
    fs, path = resolve(uri, filesystem)
    with fs.open_input_stream(path) as stream:
        return stream.read()


def write_bytes(uri: str | Path, data: bytes, filesystem: pafs.FileSystem | None = None) -> None:
    """Write atomically: readers (and resumed jobs) never see a half-written file.

    Locally: write a temporary sibling, then rename. On S3 a single PUT is already atomic.
    """
    fs, path = resolve(uri, filesystem)
    if isinstance(fs, pafs.LocalFileSystem):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
        return
    with fs.open_output_stream(path) as stream:
        stream.write(data)


def open_image(data: bytes) -> Image.Image:
    """``Image.open`` on bytes (lazy: pixels are decoded on ``load``), with a stable message for data that is
    no image: Pillow's names a BytesIO address, which differs from run to run and tells nothing."""
    try:
        return Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise UnidentifiedImageError(f"not an image Pillow can read ({len(data):,} bytes starting {data[:8]!r}): "
                                     "the file is corrupt or in another format") from None


def read_image(uri: str | Path, filesystem: pafs.FileSystem | None = None, mode: str = "RGB") -> Image.Image:
    """Decode an image fully (so truncated files fail here, not later) and convert it to ``mode``."""
    image = open_image(read_bytes(uri, filesystem))
    image.load()
    return image.convert(mode) if mode else image


def encode_image(image: Image.Image, format: str = "PNG", **save_kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **save_kwargs)
    return buffer.getvalue()


def write_image(uri: str | Path, image: Image.Image, filesystem: pafs.FileSystem | None = None, **save_kwargs) -> None:
    suffix = str(uri).rsplit(".", 1)[-1].lower()
    fmt = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG"}.get(suffix, "PNG")
    write_bytes(uri, encode_image(image, fmt, **save_kwargs), filesystem)
