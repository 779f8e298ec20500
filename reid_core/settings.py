"""Every default location in one place.

The embedded default keeps all state under ``REID_HOME`` (``~/.reid``). Every path is absolute so a
job submitted to a local ``ray start --head`` (which runs in a temporary working directory) sees the
same stores as the command line. Environment variables switch the same commands to shared services:
``MLFLOW_TRACKING_URI`` (tracking server), ``RAY_ADDRESS`` (cluster), ``REID_S3_ENDPOINT_URL`` (an
S3-compatible endpoint) and ``REID_RAY_STORAGE`` (where Ray Train and Tune keep runs and checkpoints: a
folder, or an ``s3://`` URI so that a multi-node cluster needs no shared file system).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    home: Path
    tracking_uri: str
    s3_endpoint_url: str | None
    ray_address: str | None
    ray_storage: str  # an absolute local path or an s3:// URI (no trailing '/')

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def mlflow_db(self) -> Path:
        return self.home / "mlflow.db"

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "mlartifacts"

    @property
    def ray_storage_is_s3(self) -> bool:
        return self.ray_storage.startswith("s3://")

    @property
    def checkpoints_dir(self) -> Path:
        return self.home / "checkpoints"

    @property
    def synthetic_dir(self) -> Path:
        return self.data_dir / "synthetic"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        home = Path(env.get("REID_HOME") or Path.home() / ".reid").expanduser().resolve()
        tracking_uri = env.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home / 'mlflow.db'}"
        return cls(
            home=home,
            tracking_uri=tracking_uri,
            # REID_S3_ENDPOINT_URL wins so tests can target a local endpoint without touching AWS_*.
            s3_endpoint_url=env.get("REID_S3_ENDPOINT_URL") or env.get("AWS_ENDPOINT_URL") or None,
            ray_address=env.get("RAY_ADDRESS") or None,
            ray_storage=_storage_uri(env.get("REID_RAY_STORAGE"), home / "ray"),
        )

    def ensure_dirs(self) -> None:
        local_ray = () if self.ray_storage_is_s3 else (Path(self.ray_storage),)
        for path in (self.home, self.data_dir, self.artifacts_dir, self.checkpoints_dir, *local_ray):
            path.mkdir(parents=True, exist_ok=True)


def _storage_uri(value: str | None, default: Path) -> str:
    """REID_RAY_STORAGE as Ray is given it: s3:// unchanged, a local path made absolute."""
    if not value:
        return str(default)
    if value.startswith("s3://"):
        if len(value.rstrip("/")) <= len("s3://"):
            raise ValueError(f"REID_RAY_STORAGE={value!r} names no bucket: use s3://<bucket>[/<prefix>]")
        return value.rstrip("/")
    return str(Path(value).expanduser().resolve())


def get_settings() -> Settings:
    return Settings.from_env()
