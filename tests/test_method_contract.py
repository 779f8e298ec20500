"""The method contract, over every registered method: its cpu preset trains through the generic engine,
resumes from a checkpoint, exports, loads from the registry and embeds like the in-memory network.

A new method that breaks the seam fails here. Each method runs with its own ``cpu`` preset, only the
epochs and the batch shrunk (through the keys the method itself declares) to fit the tiny fixture.
"""

from __future__ import annotations

import polars as pl
import pytest
import torch
from method_support import tiny_overrides
from metric_support import reference_test_map

from reid_core import tracking
from reid_core.data import manifest
from reid_core.data.dataset import ManifestDataset
from reid_core.engine.batches import BatchError, check_batches
from reid_core.engine.loop import TrainJob, train
from reid_core.engine.session import LocalSession
from reid_core.lifecycle.publish import publish
from reid_core.lifecycle.restore import restore
from reid_core.methods.config import ConfigError, valid_keys
from reid_core.methods.registry import get_method, method_names
from reid_core.settings import Settings


def job(name: str, manifest_uri: str, epochs: int) -> TrainJob:
    return TrainJob(manifest=manifest_uri, species="tiger", method=name, preset="cpu",
                    overrides=tiny_overrides(name, epochs))


pytestmark = pytest.mark.usefixtures("single_torch_thread")


def test_the_registry_holds_the_baselines_dve_and_pawvit():
    assert {"dve", "arbase", "arcface", "vit", "pawvit"} <= set(method_names())


def test_the_registry_holds_care_and_the_clip_baselines():
    assert {"care", "clip_ft", "clip_zs"} <= set(method_names())


@pytest.mark.parametrize("name", method_names())
def test_presets_validate_and_misspelt_keys_list_the_valid_ones(name):
    method = get_method(name)
    assert {"paper", "cpu"} <= set(method.presets)
    for preset in method.presets:
        config = method.config(preset)
        assert method.load_config(config.model_dump(mode="json")) == config  # metadata round trip
        spec = method.input_spec(config)
        assert spec.height > 0 and spec.width > 0 and len(spec.mean) == len(spec.std) == 3
        if method.epochs_key is None:  # a method with nothing to train (a zero-shot baseline)
            assert method.plan(config) == [] and not method.search_space
        else:
            assert method.plan(config) and sum(p.epochs for p in method.plan(config) if p.tuned) > 0
    keys = valid_keys(method.config_type)
    assert method.epochs_key is None or method.epochs_key in keys
    assert all(p.key in keys for p in method.search_space), "every searched key is a config key"
    for plan in method.plan(method.config("cpu")):
        assert set(plan.batch_keys) <= set(keys)
    with pytest.raises(ConfigError, match=r"unknown config key 'optim\.lrr'.*valid keys"):
        method.config("cpu", {"optim.lrr": 1.0})


@pytest.mark.parametrize("name", method_names())
def test_batches_are_checked_against_the_data_before_training(name, tiny_synthetic):
    method = get_method(name)
    rows = manifest.read(tiny_synthetic).filter(pl.col("split") == "train")
    if not method.plan(method.config("cpu")):
        check_batches([], rows)  # nothing to train: nothing to check
        return
    plan = method.plan(method.config("cpu"))[0]
    big = 1000 if plan.batches.kind == "pk" else 100_000
    config = method.config("cpu", {plan.batch_keys[0]: big})
    with pytest.raises(BatchError, match=f"--set {plan.batch_keys[0]}=N"):
        check_batches(method.plan(config), rows)


@pytest.mark.slow
@pytest.mark.parametrize("name", method_names())
def test_train_resume_export_register_and_embed(name, tiny_synthetic, tmp_path):
    session = LocalSession(tmp_path / "run")
    first = train(job(name, tiny_synthetic, 1), session)
    # One epoch the tuner counts (CARE's prompt learning before it is not counted); every report carries
    # val.mAP, which Tune and Optuna read in each result.
    tuned = [h for h in first.history if "tuned_epoch" in h]
    assert len(tuned) == (0 if get_method(name).epochs_key is None else 1)
    assert all("val.mAP" in h for h in first.history)
    assert all(torch.isfinite(torch.tensor(v)) for h in first.history for k, v in h.items() if k.startswith("train."))

    resumed = train(job(name, tiny_synthetic, 2), LocalSession(tmp_path / "run"))
    if get_method(name).epochs_key is None:  # nothing to train: the checkpoint is reused as it is
        assert resumed.history == first.history
    else:
        assert [h["epoch"] for h in resumed.history] == list(range(len(first.history) + 1))
    assert resumed.history[:len(first.history)] == first.history  # the first epochs came from the checkpoint

    restored = restore(session.store.latest())
    assert restored.progress.meta["method"] == name and "best" in restored.progress.meta
    rows = manifest.read(tiny_synthetic)
    published = publish(restored, rows, tracking.start_sweep_run(f"reid-{name}", "tiger", name),
                        species="tiger", tags={"species": "tiger"}, use_masked=False)
    assert published.registered_name == f"reid-{name}-tiger"
    # The logged test mAP is this network's, ranked here without reid_core's evaluation code.
    transform = restored.method.eval_transform(restored.config)
    model = restored.model.eval()
    expected = reference_test_map(lambda images: restored.method.embed(model, images), rows, "tiger", transform)
    assert published.metrics["test.mAP"] == pytest.approx(expected, abs=1e-6)

    loaded = tracking.load_model(f"models:/reid-{name}-tiger@candidate", Settings.from_env())
    test_rows = rows.filter(pl.col("split") == "test").head(4)
    images = torch.stack([ManifestDataset(test_rows, transform, column="image_uri")[i]["image"] for i in range(4)])
    with torch.inference_mode():
        expected = restored.method.embed(restored.model.eval(), images)
    embedded = loaded(images)
    assert embedded.shape == expected.shape
    assert torch.allclose(embedded, expected, atol=1e-4)
    assert torch.allclose(embedded.norm(dim=1), torch.ones(4), atol=1e-4)
