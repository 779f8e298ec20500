"""Images/s of ``identify``'s embedding stage (Ray Data, an actor pool) against a plain loop over the
same registered model and the same images (``engine.evaluate.embed_rows``, one process), in one run.

A random-weight DVE of the ``cpu`` preset is published to a SQLite MLflow under a temporary REID_HOME;
the synthetic species provide the photos. Model loading and actor start-up are reported apart from
the steady rate (images after the first batch). Prints one JSON object.

    python benchmarks/identify_throughput.py [--images 600] [--actors 2] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=600, help="photos to embed (individuals x 12)")
    parser.add_argument("--size", type=int, default=128, help="synthetic image side, px")
    parser.add_argument("--actors", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    import polars as pl
    import ray
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["REID_HOME"] = tmp  # before reid_core reads its settings
        from reid_core import tracking
        from reid_core.data import synthetic
        from reid_core.engine.evaluate import embed_rows
        from reid_core.lifecycle.model_eval import eval_transform_for
        from reid_core.lifecycle.publish import publish
        from reid_core.lifecycle.restore import Restored
        from reid_core.methods.registry import get_method
        from reid_core.pipelines.embed_ray import EmbedSpec, as_matrix, embed_with_ray
        from reid_core.settings import Settings

        settings = Settings.from_env()
        settings.ensure_dirs()
        synthetic.generate(Path(tmp) / "data", species=("tiger",), individuals=max(2, args.images // 12),
                           images_per_individual=12, size=args.size, seed=0, val_fraction=0.1, test_fraction=0.1)
        manifest = str(Path(tmp) / "data" / "manifest.parquet")
        rows = pl.read_parquet(manifest)
        method = get_method("dve")
        config = method.config("cpu")
        torch.manual_seed(0)
        network = method.build(config, num_classes=4).eval()
        run_id = tracking.start_sweep_run("reid-dve", "tiger", "dve", settings=settings, run_name="benchmark")
        published = publish(Restored(method, config, network, progress=None), rows, run_id, species="tiger", tags={})
        uri = f"models:/{published.registered_name}/{published.version}"

        t0 = time.perf_counter()
        model = tracking.load_model(uri, settings)
        transform = eval_transform_for(uri, settings)
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        plain = embed_rows(model, rows, transform, batch_size=args.batch_size)
        plain_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        ray_init_s = time.perf_counter() - t0
        spec = EmbedSpec(uri, settings)
        run = embed_with_ray(rows, spec, uri_column="image_uri", actors=args.actors, batch_size=args.batch_size)
        ray.shutdown()
        ordered = rows.select("image_id").join(run.results, on="image_id", how="left", maintain_order="left")
        max_diff = float(abs(as_matrix(ordered["embedding"]) - plain).max())  # the same embeddings either way

    n = rows.height
    first = run.first_batch_s or 0.0
    after_first = (n - args.batch_size) / (run.seconds - first) if run.seconds > first and n > args.batch_size else None
    print(json.dumps({
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "torch_threads": torch.get_num_threads(), "load_avg_after": os.getloadavg()},
        "workload": {"model": "dve cpu preset (random weights)", "input_px": config.input.size, "images": n,
                     "image_px": args.size, "batch_size": args.batch_size, "actors": args.actors},
        "baseline_plain_loop": {"images_per_s": round(n / plain_s, 2), "seconds": round(plain_s, 2),
                                "model_load_s": round(load_s, 2)},
        "identify_ray_data": {"images_per_s": round(n / run.seconds, 2), "seconds": round(run.seconds, 2),
                              "first_batch_s": round(first, 2),
                              "images_per_s_after_first_batch": round(after_first, 2) if after_first else None,
                              "ray_init_s": round(ray_init_s, 2),
                              "embedded": int(run.results["embedding"].is_not_null().sum()),
                              "max_abs_difference_to_baseline": max_diff},
        "speedup_after_first_batch": round(after_first / (n / plain_s), 3) if after_first else None,
    }, indent=2))


if __name__ == "__main__":
    main()
