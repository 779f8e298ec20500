"""Where Ray keeps runs (a folder or s3://) and reading them back: no Ray needed."""

import json

import pyarrow.fs as pafs

from reid_core.engine import checkpoint as ckpt
from reid_core.engine.ray_storage import storage_args
from reid_core.lifecycle import sweep_record
from reid_core.lifecycle.restore import latest_checkpoint
from reid_core.settings import Settings


def test_ray_gets_a_uri_or_a_path_inside_the_s3_filesystem_of_the_endpoint(tmp_path):
    home = {"REID_HOME": str(tmp_path)}
    local = storage_args(Settings.from_env(home).ray_storage, Settings.from_env(home))
    assert (local.path, local.filesystem) == (str(tmp_path / "ray"), None)

    on_s3 = Settings.from_env({**home, "REID_RAY_STORAGE": "s3://reid-checkpoints/ray"})
    assert storage_args(on_s3.ray_storage, on_s3) == storage_args("s3://reid-checkpoints/ray", on_s3)
    assert storage_args(on_s3.ray_storage, on_s3).filesystem is None  # Ray resolves s3:// itself

    endpoint = Settings.from_env({**home, "REID_RAY_STORAGE": "s3://reid-checkpoints/ray",
                                  "REID_S3_ENDPOINT_URL": "http://127.0.0.1:9000"})
    args = storage_args(f"{endpoint.ray_storage}/run", endpoint)
    # With a filesystem, Ray wants the path without its scheme.
    assert args.path == "reid-checkpoints/ray/run" and isinstance(args.filesystem, pafs.S3FileSystem)


def test_latest_checkpoint_is_the_newest_complete_one(tmp_path):
    for name, complete in (("checkpoint_2026-01-01_00-00-01", True), ("checkpoint_2026-01-01_00-00-02", True),
                           ("checkpoint_2026-01-01_00-00-03", False), (".checkpoint_2026-01-01_00-00-04", True)):
        (tmp_path / name).mkdir()
        if complete:
            ckpt.save(tmp_path / name, {"model": {}}, ckpt.Progress())
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint_2026-01-01_00-00-02"


def test_a_resume_names_every_option_that_differs_from_the_sweep_it_continues():
    stored = json.loads(json.dumps({"epochs": 2, "bounds": {"optim.lr": (0.001, 0.01)}, "seed": 3}))
    assert sweep_record.mismatches(stored, {"epochs": 2, "bounds": {"optim.lr": (0.001, 0.01)}, "seed": 3}) == []
    assert sweep_record.mismatches(stored, {"epochs": 3, "bounds": {"optim.lr": (0.001, 0.01)}, "seed": 3}) == [
        "epochs (was 2, now 3)"]
