from pathlib import Path

import pytest

from reid_core.settings import Settings


def test_defaults_live_under_an_absolute_reid_home(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({"REID_HOME": "relative/home"})
    assert settings.home == tmp_path / "relative" / "home"
    assert settings.tracking_uri == f"sqlite:///{tmp_path / 'relative' / 'home' / 'mlflow.db'}"
    for path in (settings.data_dir, settings.artifacts_dir, Path(settings.ray_storage), settings.checkpoints_dir):
        assert path.is_absolute() and settings.home in path.parents
    assert settings.s3_endpoint_url is None and settings.ray_address is None


def test_home_defaults_to_dot_reid_and_services_come_from_the_environment():
    settings = Settings.from_env({
        "MLFLOW_TRACKING_URI": "http://mlflow.internal:5000",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        "RAY_ADDRESS": "ray://head:10001",
    })
    assert settings.home == (Path.home() / ".reid").resolve()
    assert settings.tracking_uri == "http://mlflow.internal:5000"
    assert settings.s3_endpoint_url == "http://127.0.0.1:9000"
    assert settings.ray_address == "ray://head:10001"
    override = Settings.from_env({"AWS_ENDPOINT_URL": "http://a", "REID_S3_ENDPOINT_URL": "http://b"})
    assert override.s3_endpoint_url == "http://b"


def test_ray_storage_is_a_local_folder_or_an_s3_uri(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    home = {"REID_HOME": str(tmp_path / "home")}
    assert Settings.from_env(home).ray_storage == str(tmp_path / "home" / "ray")
    assert Settings.from_env({**home, "REID_RAY_STORAGE": "shared/ray"}).ray_storage == str(tmp_path / "shared" / "ray")
    on_s3 = Settings.from_env({**home, "REID_RAY_STORAGE": "s3://reid-checkpoints/ray/"})
    assert on_s3.ray_storage == "s3://reid-checkpoints/ray" and on_s3.ray_storage_is_s3
    on_s3.ensure_dirs()  # makes the local folders, none for the S3 storage
    assert (tmp_path / "home" / "checkpoints").is_dir() and not (tmp_path / "home" / "ray").exists()
    with pytest.raises(ValueError, match="REID_RAY_STORAGE='s3://' names no bucket"):
        Settings.from_env({**home, "REID_RAY_STORAGE": "s3://"})
