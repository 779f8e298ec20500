"""Matched pairs/s of the matching stage (``pipelines.match``: Ray Data, an actor pool) with 1 and 2 actors
against a plain loop over the same pairs (``match_pairs_local``, one process), in one run.

Synthetic tigers' left flanks, background removed and cropped, are the photos; pairs are every query
against every gallery photo. Each run starts with an empty features cache, so every way extracts each
image's features once and matches every pair. Actor start-up (the first batch) is reported apart from
the steady rate. Prints one JSON object.

    python benchmarks/match_throughput.py [--queries 8] [--gallery 32] [--matcher sift] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path


def write_photos(folder: Path, count: int, size: int, seed: int = 11) -> list[str]:
    import numpy as np
    from PIL import Image

    from reid_core.data import synthetic
    from reid_core.segmentation.masking import MaskingConfig, apply_mask

    scenes = synthetic.scene_textures(seed=seed, count=4, size=size)
    folder.mkdir(parents=True, exist_ok=True)
    uris = []
    for i in range(count):
        individual, index = i // 3, i % 3  # three photos per individual
        r = synthetic.render_image("tiger", individual, index, "left", scenes[i % 4], seed=seed, occlusion=0)
        uri = str(folder / f"tiger-{individual}-{index}.png")
        Image.fromarray(np.ascontiguousarray(apply_mask(r.image, r.mask, MaskingConfig(crop=True)))).save(uri)
        uris.append(uri)
    return uris


def stage_numbers(report, pairs: int) -> dict:
    return {"pairs_per_s": round(pairs / report.run_s, 2) if report.run_s else None,
            "seconds": round(report.run_s, 2), "first_batch_s": round(report.first_batch_s or 0.0, 2),
            "pairs_per_s_after_first_batch": (round(report.images_per_s_after_first_batch, 2)
                                              if report.images_per_s_after_first_batch else None),
            "statuses": report.statuses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=8)
    parser.add_argument("--gallery", type=int, default=32)
    parser.add_argument("--size", type=int, default=128, help="synthetic image side, px")
    parser.add_argument("--matcher", default="sift")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    import polars as pl
    import ray
    import torch

    torch.set_num_threads(1)  # one thread per actor and for the loop: the comparison is per core
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["REID_HOME"] = tmp
        from reid_core.pipelines.match import match_pairs_local, run_match_stage

        uris = write_photos(Path(tmp) / "photos", args.queries + args.gallery, args.size)
        queries, gallery = uris[:args.queries], uris[args.queries:]
        pairs = pl.DataFrame([{"query_id": Path(q).stem, "gallery_id": Path(g).stem, "query_uri": q, "gallery_uri": g}
                              for q in queries for g in gallery])
        n = pairs.height

        # The loop in two calls split as the stage's first batch (the same pairs, sorted by query), so its
        # rate after the first batch is comparable: later batches reuse features the first one extracted.
        cache = str(Path(tmp) / "loop-features")
        t0 = time.perf_counter()
        head = match_pairs_local(pairs.head(args.batch_size), args.matcher, features_cache=cache)
        t1 = time.perf_counter()
        rest = match_pairs_local(pairs.slice(args.batch_size), args.matcher, features_cache=cache)
        plain_s, plain_after_s = time.perf_counter() - t0, time.perf_counter() - t1
        plain = pl.concat([head, rest])

        t0 = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
        ray_init_s = time.perf_counter() - t0
        runs = {}
        for actors in (1, 2):
            run = run_match_stage(pairs, args.matcher, out=str(Path(tmp) / f"stage-{actors}"), actors=actors,
                                  batch_size=args.batch_size)
            same = run.results["score"].to_list() == plain["score"].to_list()
            runs[actors] = {**stage_numbers(run.report, n), "same_scores_as_loop": same}
        ray.shutdown()

    loop_rate = (n - args.batch_size) / plain_after_s if n > args.batch_size else n / plain_s
    one, two = runs[1], runs[2]
    print(json.dumps({
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_avg_after": os.getloadavg()},
        "workload": {"matcher": args.matcher, "pairs": n, "images": len(uris), "image_px": args.size,
                     "batch_size": args.batch_size},
        "plain_loop": {"pairs_per_s": round(n / plain_s, 2), "seconds": round(plain_s, 2),
                       "pairs_per_s_after_first_batch": round(loop_rate, 2)},
        "ray_init_s": round(ray_init_s, 2),
        "stage_1_actor": one,
        "stage_2_actors": two,
        "one_actor_vs_loop_after_first_batch": (round(one["pairs_per_s_after_first_batch"] / loop_rate, 3)
                                                if one["pairs_per_s_after_first_batch"] else None),
        "two_vs_one_actor_after_first_batch": (round(two["pairs_per_s_after_first_batch"]
                                                     / one["pairs_per_s_after_first_batch"], 3)
                                               if one["pairs_per_s_after_first_batch"]
                                               and two["pairs_per_s_after_first_batch"] else None),
    }, indent=2))


if __name__ == "__main__":
    main()
