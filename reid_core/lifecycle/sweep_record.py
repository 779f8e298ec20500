"""The record that ties a species' sweep to its MLflow parent run, so that ``--resume`` can continue it.

    <ray storage>/tune/<method>-<species>/sweep.json       this record (the latest sweep of the pair)
    <ray storage>/tune/<method>-<species>/<run id[:8]>/    Tune's storage path for that sweep

Written before the Tuner starts and rewritten when the sweep has registered its model, so a killed
driver leaves a record that names the parent run, Tune's experiment and the request it was started
with. It lives beside Tune's experiment on the Ray storage (local or s3://) so that a driver on
another machine finds it too.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from reid_core.data import files as rio
from reid_core.engine.ray_storage import run_dir
from reid_core.settings import Settings

RECORD_FILE = "sweep.json"


@dataclass
class SweepRecord:
    method: str
    species: str
    parent_run_id: str
    storage: str  # Tune's storage path (a URI or an absolute path)
    experiment: str  # Tune's experiment name under ``storage``
    request: dict[str, Any]  # what the trials depend on (see ``tune.request_identity``)
    finished: bool = False
    result: dict[str, Any] = field(default_factory=dict)  # the summary of a finished sweep

    @property
    def experiment_path(self) -> str:
        return rio.join(self.storage, self.experiment)


def sweeps_dir(settings: Settings, method: str, species: str) -> str:
    return run_dir(settings, "tune", f"{method}-{species}")


def record_uri(settings: Settings, method: str, species: str) -> str:
    return rio.join(sweeps_dir(settings, method, species), RECORD_FILE)


def save(record: SweepRecord, settings: Settings) -> None:
    uri = record_uri(settings, record.method, record.species)
    rio.write_bytes(uri, json.dumps(asdict(record), indent=1, default=str).encode())


def load(settings: Settings, method: str, species: str) -> SweepRecord | None:
    uri = record_uri(settings, method, species)
    if not rio.exists(uri):
        return None
    try:
        return SweepRecord(**json.loads(rio.read_bytes(uri)))
    except (ValueError, TypeError) as error:
        raise ValueError(f"{uri} is not a sweep record ({error}): delete it and run without --resume "
                         "to start a new sweep") from None


def for_resume(settings: Settings, method: str, species: str) -> SweepRecord:
    """The record ``--resume`` continues; a clear error when there is none."""
    record = load(settings, method, species)
    if record is None:
        raise ValueError(f"--resume: no earlier {method} sweep of {species!r} to continue "
                         f"({record_uri(settings, method, species)} does not exist): run without --resume "
                         "to start one (or leave that species out of --species)")
    return record


def mismatches(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What differs between the request a sweep was started with and the one resuming it."""
    normal = json.loads(json.dumps(current, default=str))  # tuples -> lists, as the record holds them
    return [f"{key} (was {stored.get(key)!r}, now {normal.get(key)!r})"
            for key in sorted(set(stored) | set(normal)) if stored.get(key) != normal.get(key)]
