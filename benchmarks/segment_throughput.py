"""Images/s of the Ray Data segmentation pipeline (1 and 2 actors) against a plain sequential loop, in one run.

The baseline has the shape of AER's preprocessing script: for each image, one by one, read it, segment
it, mask it and write the mask and the masked image. Both sides use the same images (synthetic, PNG),
the same segmenter (``reference`` by default: the masks shipped with the data, so the measurement is the
pipeline's overhead, not a model's speed), the same masking and the same PNG encoding. Start-up (Ray,
the actor pool, the first batch) is reported apart from the steady rate. The pipeline runs with
``quality=False`` (no IoU), since the baseline does not compute one. Prints one JSON object.

    python benchmarks/segment_throughput.py [--images 800] [--size 128] [--batch-size 64] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

TARGET_1_ACTOR_MAX_SLOWDOWN = 0.15


def plain_loop(manifest: str, out: Path, method: str, options: dict) -> dict:
    """AER-shaped: read, segment, mask, write, one image at a time, in this process."""
    import numpy as np
    import polars as pl
    from PIL import Image

    from reid_core.data import files as rio
    from reid_core.segmentation.masking import MaskingConfig, apply_mask, mask_to_png
    from reid_core.segmentation.registry import build_segmenter

    started = time.perf_counter()
    segmenter = build_segmenter(method, options)
    rows = pl.read_parquet(manifest).to_dicts()
    masking = MaskingConfig()
    setup_s = time.perf_counter() - started
    t0 = time.perf_counter()
    for row in rows:
        image = np.asarray(rio.read_image(row["image_uri"]))
        result = segmenter.segment(image, row)
        masked = apply_mask(image, result.mask, masking)
        name = row["image_id"]
        rio.write_bytes(str(out / "masks" / f"{name}.png"),
                        rio.encode_image(mask_to_png(result.mask), "PNG", compress_level=1))
        rio.write_bytes(str(out / "masked" / f"{name}.png"),
                        rio.encode_image(Image.fromarray(masked, "RGB"), "PNG", compress_level=1))
    seconds = time.perf_counter() - t0
    return {"setup_s": round(setup_s, 3), "seconds": round(seconds, 3), "images": len(rows),
            "images_per_s": round(len(rows) / seconds, 2)}


def pipeline(manifest: str, out: Path, method: str, options: dict, actors: int, batch_size: int) -> dict:
    from reid_core.pipelines.segment import SegmentJob, run

    started = time.perf_counter()
    job = SegmentJob(manifest=manifest, output=str(out), method=method, options=options, actors=actors,
                     batch_size=batch_size, num_cpus=1, quality=False)
    report = run(job)
    wall = time.perf_counter() - started
    assert report.failed == 0 and report.processed == report.rows, report.to_dict()
    return {
        "actors": actors,
        "images": report.processed,
        "images_per_s_steady": round(report.images_per_s_after_first_batch or 0.0, 2),
        "images_per_s_including_startup": round(report.images_per_s or 0.0, 2),
        "startup_s": round(report.first_batch_s or 0.0, 3),  # actor start-up and the first batch
        "execution_s": round(report.run_s, 3),
        "wall_s": round(wall, 3),  # plus planning, the manifest and the journal compaction
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=800)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2, help="each case; the best run is reported")
    parser.add_argument("--method", default="reference")
    parser.add_argument("--set", dest="options", action="append", metavar="KEY=VALUE", default=[])
    args = parser.parse_args()

    import ray

    from reid_core.cli.options import parse_assignments
    from reid_core.data import synthetic

    options = parse_assignments(args.options, "--set")
    per_individual = 8
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synthetic.generate(tmp / "data", species=("tiger",), individuals=max(1, args.images // per_individual),
                           images_per_individual=per_individual, size=args.size, seed=0)
        manifest = str(tmp / "data" / "manifest.parquet")

        def fresh(name: str) -> Path:
            shutil.rmtree(tmp / name, ignore_errors=True)
            return tmp / name

        t0 = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        ray_init_s = time.perf_counter() - t0
        ray.data.DataContext.get_current().enable_progress_bars = False
        runs: dict[str, list[dict]] = {"plain": [], "ray_1_actor": [], "ray_2_actors": []}
        for _ in range(args.repeats):  # interleaved, so drifting load hits every case alike
            runs["plain"].append(plain_loop(manifest, fresh("plain"), args.method, options))
            runs["ray_1_actor"].append(pipeline(manifest, fresh("ray1"), args.method, options, 1, args.batch_size))
            runs["ray_2_actors"].append(pipeline(manifest, fresh("ray2"), args.method, options, 2, args.batch_size))
        ray.shutdown()

    best = {
        "plain": max(runs["plain"], key=lambda r: r["images_per_s"]),
        "ray_1_actor": max(runs["ray_1_actor"], key=lambda r: r["images_per_s_steady"]),
        "ray_2_actors": max(runs["ray_2_actors"], key=lambda r: r["images_per_s_steady"]),
    }
    medians = {name: round(statistics.median(r["images_per_s" if name == "plain" else "images_per_s_steady"]
                                             for r in rs), 2) for name, rs in runs.items()}
    plain_rate = best["plain"]["images_per_s"]
    slowdown = 1 - best["ray_1_actor"]["images_per_s_steady"] / plain_rate
    print(json.dumps({
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "ray": ray.__version__, "load_avg_1_5_15_before": [round(x, 2) for x in load_before],
                    "load_avg_1_5_15_after": [round(x, 2) for x in os.getloadavg()]},
        "workload": {"images": best["plain"]["images"], "size_px": args.size, "format": "png",
                     "method": args.method, "options": options, "batch_size": args.batch_size,
                     "repeats": args.repeats},
        "ray_init_s": round(ray_init_s, 2),
        "baseline_plain_loop": best["plain"],
        "ray_1_actor": best["ray_1_actor"],
        "ray_2_actors": best["ray_2_actors"],
        "all_runs": runs,
        "median_images_per_s": medians,  # a second view of the noise: steady rates for the Ray cases
        "speedup_1_actor_vs_plain": round(best["ray_1_actor"]["images_per_s_steady"] / plain_rate, 3),
        "speedup_2_actors_vs_plain": round(best["ray_2_actors"]["images_per_s_steady"] / plain_rate, 3),
        "target_1_actor_max_slowdown": TARGET_1_ACTOR_MAX_SLOWDOWN,
        "target_ok": slowdown <= TARGET_1_ACTOR_MAX_SLOWDOWN,
    }, indent=2))


if __name__ == "__main__":
    main()
