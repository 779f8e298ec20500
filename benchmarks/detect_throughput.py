"""Photos/s of the Ray Data detection stage (1 and 2 actors) against a plain sequential loop, in one run.

The baseline does what a person's script would: for each photo, one by one, read it, detect, keep the
boxes above the threshold, crop each and write the crops and the photo's detections file. Both sides use
the same synthetic whole photos (PNG, 0-3 animals each), the same detector and the same crop encoding.
With ``--method reference`` (the default: the boxes shipped with the photos) the measure is the stage's
overhead; ``--method megadetector --set variant=MDV6-apa-rtdetr-c --set weights=random`` times the
network too (random weights: its speed, not its boxes; on CPU pass few ``--photos``). Start-up (Ray, the
actor pool, the first batch) is reported apart from the steady rate. Prints one JSON object.

    python benchmarks/detect_throughput.py [--photos 200] [--size 384] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path


def plain_loop(manifest: str, out: Path, method: str, options: dict, threshold: float) -> dict:
    """Read, detect, crop, write, one photo at a time, in this process."""
    import numpy as np
    import polars as pl
    from PIL import Image

    from reid_core.data import files as rio
    from reid_core.detection.boxes import clip, crop_window
    from reid_core.detection.registry import build_detector

    started = time.perf_counter()
    detector = build_detector(method, options)
    rows = pl.read_parquet(manifest).to_dicts()
    setup_s = time.perf_counter() - started
    t0, animals = time.perf_counter(), 0
    for row in rows:
        image = np.asarray(rio.read_image(row["image_uri"]))
        height, width = image.shape[:2]
        found = [d for d in detector.detect(image, row) if d.score >= threshold and d.category == "animal"]
        entries = []
        for k, det in enumerate(sorted(found, key=lambda d: -d.score)):
            left, top, right, bottom = crop_window(clip(det.box, width, height), width, height, 0.1)
            uri = str(out / "crops" / f"{row['image_id'].replace('/', '_')}_{k}.png")
            rio.write_bytes(uri, rio.encode_image(Image.fromarray(np.ascontiguousarray(image[top:bottom, left:right])),
                                                  "PNG", compress_level=1))
            entries.append({"box": list(det.box), "score": det.score, "crop_uri": uri})
        animals += len(entries)
        rio.write_bytes(str(out / "detections" / f"{row['image_id'].replace('/', '_')}.json"),
                        json.dumps(entries).encode())
    seconds = time.perf_counter() - t0
    return {"setup_s": round(setup_s, 3), "seconds": round(seconds, 3), "photos": len(rows), "animals": animals,
            "photos_per_s": round(len(rows) / seconds, 2)}


def pipeline(manifest: str, out: Path, method: str, options: dict, threshold: float, actors: int,
             batch_size: int, num_gpus: float) -> dict:
    from reid_core.pipelines.detect import DetectJob, run

    started = time.perf_counter()
    report = run(DetectJob(manifest=manifest, output=str(out), method=method, options=options, threshold=threshold,
                           actors=actors, batch_size=batch_size, num_cpus=1, num_gpus=num_gpus))
    wall = time.perf_counter() - started
    assert report.failed == 0 and report.processed == report.rows, report.to_dict()
    return {
        "actors": actors,
        "photos": report.processed,
        "animals": report.animals,
        "photos_per_s_steady": round(report.images_per_s_after_first_batch or 0.0, 2),
        "photos_per_s_including_startup": round(report.images_per_s or 0.0, 2),
        "startup_s": round(report.first_batch_s or 0.0, 3),  # actor start-up (the model built) and the first batch
        "execution_s": round(report.run_s, 3),
        "wall_s": round(wall, 3),  # plus planning, both manifests and the journal compaction
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=200, help="whole photos (the tiger species)")
    parser.add_argument("--size", type=int, default=384, help="photo side, px")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--method", default="reference")
    parser.add_argument("--set", dest="options", action="append", metavar="KEY=VALUE", default=[])
    parser.add_argument("--threshold", type=float, default=0.2)
    parser.add_argument("--num-gpus", type=float, default=0.0, help="per actor (0.5: both actors on one GPU)")
    args = parser.parse_args()

    import ray

    from reid_core.cli.options import parse_assignments
    from reid_core.data import synthetic

    options = parse_assignments(args.options, "--set")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synthetic.generate_whole_photos(str(tmp / "whole"), ("tiger",), args.photos, individuals=40, seed=0,
                                        size=args.size)
        manifest = str(tmp / "whole" / "manifest.parquet")

        def fresh(name: str) -> Path:
            shutil.rmtree(tmp / name, ignore_errors=True)
            return tmp / name

        t0 = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        ray_init_s = time.perf_counter() - t0
        ray.data.DataContext.get_current().enable_progress_bars = False
        plain = plain_loop(manifest, fresh("plain"), args.method, options, args.threshold)
        one = pipeline(manifest, fresh("ray1"), args.method, options, args.threshold, 1, args.batch_size, args.num_gpus)
        two = pipeline(manifest, fresh("ray2"), args.method, options, args.threshold, 2, args.batch_size, args.num_gpus)
        ray.shutdown()

    gpu = None
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:
        pass
    print(json.dumps({
        "machine": {"cpu_count": os.cpu_count(), "gpu": gpu, "platform": platform.platform(),
                    "python": platform.python_version(), "ray": ray.__version__,
                    "load_avg_1_5_15_before": [round(x, 2) for x in load_before],
                    "load_avg_1_5_15_after": [round(x, 2) for x in os.getloadavg()]},
        "workload": {"photos": plain["photos"], "animals": plain["animals"], "size_px": args.size, "format": "png",
                     "method": args.method, "options": options, "threshold": args.threshold,
                     "batch_size": args.batch_size, "num_gpus_per_actor": args.num_gpus},
        "ray_init_s": round(ray_init_s, 2),
        "baseline_plain_loop": plain,
        "ray_1_actor": one,
        "ray_2_actors": two,
        "speedup_1_actor_vs_plain": round(one["photos_per_s_steady"] / plain["photos_per_s"], 3),
        "speedup_2_actors_vs_plain": round(two["photos_per_s_steady"] / plain["photos_per_s"], 3),
    }, indent=2))


if __name__ == "__main__":
    main()
