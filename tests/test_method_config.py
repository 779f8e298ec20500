"""Method configs: presets, dotted overrides, the errors a user sees; batch checks; workflow usage errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from pydantic import Field

from reid_core.engine.batches import BatchError, check_batches
from reid_core.methods.config import ConfigError, MethodConfig, Section, build_config, valid_keys
from reid_core.methods.contract import BatchSpec, SearchParam, StagePlan
from reid_core.methods.search_space import SearchSpace, resolve

ROOT = Path(__file__).resolve().parents[1]


class Optim(Section):
    lr: float = Field(0.1, gt=0)
    name: str = "sgd"


class Toy(MethodConfig):
    optim: Optim = Field(default_factory=Optim)
    seed: int = 0


PRESETS = {"paper": {}, "cpu": {"optim": {"lr": 0.01}}}


def test_presets_merge_and_dotted_overrides_apply():
    assert build_config(Toy, PRESETS).optim.lr == 0.1
    assert build_config(Toy, PRESETS, "cpu").optim.lr == 0.01
    config = build_config(Toy, PRESETS, "cpu", {"optim.name": "adamw", "seed": 3})
    assert (config.optim.lr, config.optim.name, config.seed) == (0.01, "adamw", 3)
    assert valid_keys(Toy) == ["optim.lr", "optim.name", "seed"]


@pytest.mark.parametrize(("overrides", "message"), [
    ({"optim.lrr": 1}, r"unknown config key 'optim.lrr' for method 'toy'; valid keys: optim.lr, optim.name, seed"),
    ({"optim": 1}, "'optim' of method 'toy' is a section; set one of its keys: optim.lr, optim.name"),
    ({"seed.x": 1}, "unknown config key 'seed.x'"),
    ({"optim.lr": -1}, r"invalid toy config \(preset 'paper'\): optim.lr: Input should be greater than 0"),
])
def test_bad_overrides_name_the_key_and_the_fix(overrides, message):
    with pytest.raises(ConfigError, match=message):
        build_config(Toy, PRESETS, "paper", overrides, method="toy")


def test_search_bounds_replace_ranges_fix_values_and_reject_unknown_keys():
    params = (SearchParam("optim.lr", "log", 1e-3, 1e-1), SearchParam("seed", "choice", choices=(1, 2)))
    resolved = resolve(params, {"optim.lr": (1e-2, 2e-2), "seed": 7}, "toy")
    assert (resolved["optim.lr"].low, resolved["optim.lr"].high, resolved["seed"]) == (1e-2, 2e-2, 7)
    with pytest.raises(ValueError, match=r"unknown search-space bound\(s\) \['lr'\]; toy searches"):
        resolve(params, {"lr": (0.1, 0.2)}, "toy")
    with pytest.raises(ValueError, match="needs low > 0"):
        resolve(params, {"optim.lr": (0.0, 0.2)}, "toy")
    with pytest.raises(ValueError, match="low <= high"):
        SearchParam("x", "float", 2.0, 1.0)
    assert SearchSpace("dve", {"optim.lr": 0.003})._resolved["optim.lr"] == 0.003


def test_batches_the_data_cannot_fill_fail_with_the_flag_to_change():
    rows = pl.DataFrame({"entity": [f"e{i // 3}" for i in range(12)]})  # 4 identities x 3 images
    pk = StagePlan("main", 1, BatchSpec("pk", 8, 2), batch_keys=("batch.ids_per_batch", "batch.images_per_id"))
    with pytest.raises(BatchError, match=r"P=8 .* has 4\. Fix: lower P to at most 4 \(--set batch.ids_per_batch=N"):
        check_batches([pk], rows)
    check_batches([StagePlan("main", 1, BatchSpec("pk", 4, 2))], rows)  # fits
    random = StagePlan("main", 1, BatchSpec("random", batch_size=8), batch_keys=("batch.batch_size",))
    with pytest.raises(BatchError, match=r"12 training images make 1 batches of 8, fewer than the 2 workers"):
        check_batches([random], rows, workers=2)


@pytest.mark.parametrize(("args", "message"), [
    (["--method", "nope"], "unknown method 'nope'; available: "),
    (["--set", "optim.lrr=1"], "unknown config key 'optim.lrr' for method 'dve'"),
    (["--species", "lion"], "has no rows of species 'lion'"),
    (["--preset", "cpu", "--set", "batch.ids_per_batch=50"], "Fix: lower P to at most"),
    (["--manifest", "/nowhere/manifest.parquet"], "manifest /nowhere/manifest.parquet does not exist"),
])
def test_train_usage_errors_are_one_line_and_exit_2(args, message, tiny_synthetic):
    argv = ["--species", "tiger", "--manifest", tiny_synthetic, *args]
    done = subprocess.run([sys.executable, str(ROOT / "workflows" / "train.py"), *argv],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert message in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.strip().startswith("error: ") and len(done.stderr.strip().splitlines()) == 1
