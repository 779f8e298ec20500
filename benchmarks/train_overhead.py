"""Per-epoch overhead of the Ray Train path (1 worker) against a plain PyTorch loop, in one run.

Both train the same DVE network on the same synthetic data with the same sampler, transform,
optimiser and number of epochs, with the same thread count. Start-up (Ray, the Train controller and
worker, the first batch) is reported separately from steady-state epochs. Prints one JSON object.

    python benchmarks/train_overhead.py [--epochs 4] [--size 64] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

TARGET_OVERHEAD = 0.10
PRESET = "cpu"
CONFIG = {"backbone.kwargs": {}, "optim.lr": 1e-3, "batch.ids_per_batch": 8, "batch.images_per_id": 4}


def plain_loop(manifest: str, overrides: dict, threads: int) -> dict:
    """The baseline: the same pieces, wired by hand, no Ray and no engine."""
    import polars as pl
    import torch
    from torch.utils.data import DataLoader

    from reid_core.data.dataset import ManifestDataset
    from reid_core.engine.batches import make_sampler
    from reid_core.methods.registry import get_method

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    started = time.perf_counter()
    method = get_method("dve")
    config = method.config(PRESET, overrides)
    rows = pl.read_parquet(manifest).filter(pl.col("split") == "train")
    dataset = ManifestDataset(rows, method.train_transform(config))
    (plan,) = method.plan(config)
    sampler = make_sampler(plan.batches, dataset.labels, seed=0)
    loader = DataLoader(dataset, batch_sampler=sampler)
    model = method.build(config, len(dataset.label_names))
    (stage,) = method.stages(config, model, [len(sampler)])
    stage.trainable(model)
    optimizer = stage.optimizer(model)
    setup_s = time.perf_counter() - started
    epochs = []
    for epoch in range(plan.epochs):
        t0 = time.perf_counter()
        sampler.set_epoch(epoch)
        stage.on_epoch_start(model, epoch)
        model.train()
        images = 0
        for batch in loader:
            loss, _ = stage.step(model, batch, epoch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            images += len(batch["label"])
        epochs.append({"seconds": time.perf_counter() - t0, "images": images})
    return {"setup_s": setup_s, "epochs": epochs}


def ray_train(manifest: str, overrides: dict, threads: int, home: Path) -> dict:
    import ray

    from reid_core.engine.loop import TrainJob
    from reid_core.pipelines.train import run_training
    from reid_core.settings import Settings

    settings = Settings.from_env({"REID_HOME": str(home)})
    t0 = time.perf_counter()
    ray.init(num_cpus=threads, include_dashboard=False, log_to_driver=False)
    init_s = time.perf_counter() - t0
    # eval_every beyond the run: only the last epoch evaluates, and outside the timed epoch anyway.
    job = TrainJob(manifest=manifest, species="tiger", preset=PRESET, overrides=overrides, eval_every=10_000)
    t1 = time.perf_counter()
    outcome = run_training(job, workers=1, run_name="overhead", settings=settings, cpus_per_worker=threads)
    fit_s = time.perf_counter() - t1
    ray.shutdown()
    history = outcome.progress.history
    epoch_s = [h["train.epoch_s"] for h in history]
    return {"ray_init_s": init_s, "fit_s": fit_s, "epochs": [{"seconds": s} for s in epoch_s],
            "images_per_s_reported": [h["train.images_per_s"] for h in history]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--individuals", type=int, default=24)
    parser.add_argument("--images-per-individual", type=int, default=8)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()

    from reid_core.data import synthetic

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synthetic.generate(tmp / "data", species=("tiger",), individuals=args.individuals,
                           images_per_individual=args.images_per_individual, size=args.size, seed=0,
                           val_fraction=0.1, test_fraction=0.1)
        manifest = str(tmp / "data" / "manifest.parquet")
        overrides = {**CONFIG, "input.size": args.size, "schedule.epochs": args.epochs}
        plain = plain_loop(manifest, overrides, args.threads)
        via_ray = ray_train(manifest, overrides, args.threads, tmp / "home")

    images = plain["epochs"][0]["images"]
    # Steady state: the first epoch of each carries one-off costs (allocator, lazy imports).
    plain_epoch = statistics.median(e["seconds"] for e in plain["epochs"][1:])
    ray_epoch = statistics.median(e["seconds"] for e in via_ray["epochs"][1:])
    overhead = ray_epoch / plain_epoch - 1
    # Ray start, Train controller and worker start-up, per-epoch checkpoints and the final evaluation.
    startup = via_ray["ray_init_s"] + via_ray["fit_s"] - sum(e["seconds"] for e in via_ray["epochs"])
    print(json.dumps({
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "threads": args.threads, "load_avg_after": os.getloadavg()},
        "workload": {"method": "dve", "preset": PRESET, **overrides, "train_images_per_epoch": images},
        "baseline_plain_pytorch": {"epoch_s_median": round(plain_epoch, 3),
                                   "images_per_s": round(images / plain_epoch, 2),
                                   "epochs_s": [round(e["seconds"], 3) for e in plain["epochs"]]},
        "ray_train_1_worker": {"epoch_s_median": round(ray_epoch, 3), "images_per_s": round(images / ray_epoch, 2),
                               "epochs_s": [round(e["seconds"], 3) for e in via_ray["epochs"]],
                               "outside_epochs_s": round(startup, 2), "ray_init_s": round(via_ray["ray_init_s"], 2)},
        "per_epoch_overhead": round(overhead, 4),
        "target_overhead_max": TARGET_OVERHEAD,
        "target_ok": overhead <= TARGET_OVERHEAD,
    }, indent=2))


if __name__ == "__main__":
    main()
