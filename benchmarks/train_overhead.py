"""Per-epoch overhead of the Ray Train path (1 worker) against a plain PyTorch loop, in one run.

Both train the same DVE network on the same synthetic data with the same sampler, transform, optimiser
and epochs, with the same thread count. The two alternate in rounds (plain, Ray, Ray, plain, ...: ABBA,
so slow drifts of a shared machine cancel), and each round gives one overhead: the median steady epoch
of Ray Train over the plain loop's (the first epoch of each is left out: allocator warm-up, lazy
imports). The result is the median over rounds with the spread (min..max). The fixed start-up, paid
once per training, is reported apart: ``ray.init``, then from ``fit()`` to the worker's first line
(controller and worker process start), then everything else outside the epochs (imports and data set-up
in the worker, per-epoch checkpoints, shutdown). Prints one JSON object.

    python benchmarks/train_overhead.py [--rounds 8] [--epochs 10] [--size 64] [--threads 2]
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
STAMP_ENV = "REID_BENCHMARK_WORKER_STAMP"  # set before ray.init: local workers inherit it


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


def stamped_worker(config: dict) -> None:
    """``train_worker`` that first writes the time its process reached the training function."""
    from reid_core.engine.loop import train_worker

    Path(os.environ[STAMP_ENV]).write_text(repr(time.time()))
    train_worker(config)


def ray_train(manifest: str, overrides: dict, threads: int, home: Path, round_index: int) -> dict:
    import reid_core.pipelines.train as train_pipeline
    from reid_core.engine.loop import TrainJob
    from reid_core.settings import Settings

    settings = Settings.from_env({"REID_HOME": str(home)})
    # eval_every beyond the run: only the last epoch evaluates, and outside the timed epoch anyway.
    job = TrainJob(manifest=manifest, species="tiger", preset=PRESET, overrides=overrides, eval_every=10_000)
    train_pipeline.train_worker = stamped_worker  # what run_training hands to the TorchTrainer
    started = time.time()
    outcome = train_pipeline.run_training(job, workers=1, run_name=f"overhead-{round_index}", settings=settings,
                                          cpus_per_worker=threads)
    fit_s = time.time() - started
    epochs = [h["train.epoch_s"] for h in outcome.progress.history]
    to_worker = float(Path(os.environ[STAMP_ENV]).read_text()) - started
    return {"epochs": epochs, "fit_s": fit_s, "to_worker_s": to_worker,
            "worker_outside_epochs_s": fit_s - to_worker - sum(epochs)}


def steady(epochs: list[float]) -> float:
    return statistics.median(epochs[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8, help="plain / Ray Train pairs, in ABBA order")
    parser.add_argument("--epochs", type=int, default=10, help="epochs per training (the first is left out)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--individuals", type=int, default=24)
    parser.add_argument("--images-per-individual", type=int, default=8)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be >= 2: the first epoch of each training is left out")

    import ray

    from reid_core.data import synthetic

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synthetic.generate(tmp / "data", species=("tiger",), individuals=args.individuals,
                           images_per_individual=args.images_per_individual, size=args.size, seed=0,
                           val_fraction=0.1, test_fraction=0.1)
        manifest = str(tmp / "data" / "manifest.parquet")
        overrides = {**CONFIG, "input.size": args.size, "schedule.epochs": args.epochs}
        os.environ[STAMP_ENV] = str(tmp / "worker-started")
        t0 = time.perf_counter()
        ray.init(num_cpus=args.threads, include_dashboard=False, log_to_driver=False)
        ray_init_s = time.perf_counter() - t0
        rounds = []
        for index in range(args.rounds):
            order = ("plain", "ray") if index % 4 in (0, 3) else ("ray", "plain")
            result = {}
            for arm in order:
                result[arm] = (plain_loop(manifest, overrides, args.threads) if arm == "plain" else
                               ray_train(manifest, overrides, args.threads, tmp / "home", index))
            rounds.append(result)
        ray.shutdown()
        images = rounds[0]["plain"]["epochs"][0]["images"]

    overheads = [steady(r["ray"]["epochs"]) / steady([e["seconds"] for e in r["plain"]["epochs"]]) - 1
                 for r in rounds]
    overhead = statistics.median(overheads)
    plain_epochs = [e["seconds"] for r in rounds for e in r["plain"]["epochs"][1:]]
    ray_epochs = [s for r in rounds for s in r["ray"]["epochs"][1:]]
    print(json.dumps({
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "threads": args.threads, "load_avg_after": os.getloadavg()},
        "workload": {"method": "dve", "preset": PRESET, **overrides, "train_images_per_epoch": images,
                     "rounds": args.rounds},
        "baseline_plain_pytorch": {"epoch_s_median": round(statistics.median(plain_epochs), 3),
                                   "images_per_s": round(images / statistics.median(plain_epochs), 2)},
        "ray_train_1_worker": {"epoch_s_median": round(statistics.median(ray_epochs), 3),
                               "images_per_s": round(images / statistics.median(ray_epochs), 2)},
        "per_epoch_overhead": round(overhead, 4),
        "per_epoch_overhead_rounds": [round(o, 4) for o in overheads],
        "per_epoch_overhead_spread": [round(min(overheads), 4), round(max(overheads), 4)],
        "startup_s": {"ray_init": round(ray_init_s, 2),
                      "fit_to_worker_rounds": [round(r["ray"]["to_worker_s"], 2) for r in rounds],
                      "worker_outside_epochs_rounds": [round(r["ray"]["worker_outside_epochs_s"], 2) for r in rounds],
                      "plain_setup_rounds": [round(r["plain"]["setup_s"], 2) for r in rounds]},
        "target_overhead_max": TARGET_OVERHEAD,
        "target_ok": overhead <= TARGET_OVERHEAD,
    }, indent=2))


if __name__ == "__main__":
    main()
