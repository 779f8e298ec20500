"""Open-set identification with local-feature matching and calibrated fusion, measured on held-out
individuals of a synthetic species, in one run; prints one JSON object.

    synthetic species --segment (reference masks, --crop)--> DVE `cpu` preset, trained and published
    (calibration on its validation split: global + the matcher) --> the test split: a third of its
    individuals never in the gallery (unknown), galleries of 1/4, 1/2 and all of the others (known)

Per gallery size: top-1 / top-5 / mAP of the known individuals' query photos for the global model alone,
the local matcher alone (on the global shortlist) and the fused probability; BAKS, BAUS, sqrt(BAKS x BAUS)
and AUROC of the known/new decision at the stored operating point for that gallery's size (fused, and the
global model alone); the ARI of grouping the photos called new (and of grouping every unknown photo); with
the whole gallery, also the matcher alone on the original photos, backgrounds included.
The unknown photos are the same at every size, so only the gallery grows.

    python benchmarks/identify_open_set.py [--seed 7] [--individuals 48] [--size 128] [--method dve] [--epochs 20]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def average_precision(order_same: np.ndarray) -> float:
    """AP of one ranking (booleans in rank order)."""
    hits = np.flatnonzero(order_same)
    return float(np.mean((np.arange(len(hits)) + 1) / (hits + 1))) if len(hits) else float("nan")


def closed_set(key: np.ndarray, gallery_codes: np.ndarray, query_codes: np.ndarray, individuals: int) -> dict:
    """top-1 / top-5 (per individual, its best image) and mAP (images) of a query x gallery score matrix."""
    from reid_core.evaluation.calibration import individual_scores

    best = individual_scores(key, gallery_codes, individuals)
    ranks = np.argsort(-best, axis=1, kind="stable")
    position = np.argmax(ranks == query_codes[:, None], axis=1)
    order = np.argsort(-key, axis=1, kind="stable")
    ap = [average_precision(gallery_codes[order[i]] == query_codes[i]) for i in range(len(key))]
    return {"top1": float(np.mean(position < 1)), "top5": float(np.mean(position < 5)), "mAP": float(np.nanmean(ap))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7, help="synthetic data and training seed")
    parser.add_argument("--individuals", type=int, default=48)
    parser.add_argument("--images-per-individual", type=int, default=8)
    parser.add_argument("--size", type=int, default=128, help="synthetic image side, px")
    parser.add_argument("--method", default="dve", help="a registered method that trains (its cpu preset)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--matcher", default="sift")
    parser.add_argument("--shortlist", type=int, default=50)
    parser.add_argument("--unknown-fraction", type=float, default=1 / 3)
    parser.add_argument("--keep", default=None, help="folder to keep the data and the MLflow store in")
    args = parser.parse_args()

    home = args.keep or tempfile.mkdtemp(prefix="identify-open-set-")
    os.environ["REID_HOME"] = str(Path(home) / "reid-home")  # before reid_core reads its settings
    import polars as pl

    from reid_core import tracking
    from reid_core.data import manifest as mf
    from reid_core.data import synthetic
    from reid_core.data.dataset import images_to_evaluate
    from reid_core.engine.evaluate import embed_rows
    from reid_core.engine.loop import TrainJob
    from reid_core.evaluation.calibration import fuse, rank_individuals, shortlist
    from reid_core.evaluation.grouping import adjusted_rand, group_photos
    from reid_core.evaluation.open_set import open_set_metrics
    from reid_core.lifecycle import open_set_calibration
    from reid_core.lifecycle.model_eval import eval_transform_for
    from reid_core.lifecycle.train_and_register import train_and_register
    from reid_core.matching.registry import get_matcher
    from reid_core.pipelines.segment import SegmentJob
    from reid_core.pipelines.segment import run as segment
    from reid_core.segmentation.masking import MaskingConfig
    from reid_core.settings import Settings

    settings = Settings.from_env()
    settings.ensure_dirs()
    timings = {}
    t0 = time.perf_counter()
    data = Path(home) / "data"
    synthetic.generate(data, species=("tiger",), individuals=args.individuals,
                       images_per_individual=args.images_per_individual, size=args.size, seed=args.seed,
                       val_fraction=0.2, test_fraction=0.4, workers=1)
    report = segment(SegmentJob(manifest=str(data / "manifest.parquet"), output=str(data / "segmented"),
                                method="reference", masking=MaskingConfig(crop=True)), settings=settings)
    segmented = report.manifest_out
    timings["data_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    from reid_core.methods.registry import get_method

    job = TrainJob(manifest=segmented, species="tiger", method=args.method, preset="cpu",
                   overrides={get_method(args.method).epochs_key: args.epochs}, seed=args.seed)
    registered = train_and_register(job, run_name=f"open-set-{args.seed}", settings=settings)
    timings["train_and_publish_s"] = time.perf_counter() - t0
    name, number = registered.published.registered_name, registered.published.version
    version = tracking.get_version(name, version=number, settings=settings)
    calibration = open_set_calibration.load(version.tags["run_id"], dict(version.tags), settings)
    uri = f"models:/{name}/{number}"

    # The test split, background-free as the model was trained; a third of its individuals unknown.
    rows = mf.read(segmented).filter(pl.col("species") == "tiger")
    test = images_to_evaluate(rows.filter(pl.col("split") == "test"), True, "test")
    features = embed_rows(tracking.load_model(uri, settings), test.rows, eval_transform_for(uri, settings),
                          column=test.column)
    features /= np.linalg.norm(features, axis=1, keepdims=True).clip(1e-12)
    uris = test.rows[test.column].to_list()
    names = sorted(test.rows["individual"].unique().to_list())
    rng = np.random.default_rng(args.seed)
    unknown = set(rng.choice(names, max(1, round(args.unknown_fraction * len(names))), replace=False).tolist())
    known = [n for n in names if n not in unknown]
    rng.shuffle(known)
    individual = test.rows["individual"].to_numpy()
    entity = test.rows["entity"].to_numpy()  # individual and flank
    roles = test.rows["role"].to_numpy()
    unknown_queries = np.flatnonzero(np.isin(individual, list(unknown)))

    engine = get_matcher(args.matcher) if args.matcher != "none" else None
    local_features, local_cache = {}, {}

    original_uris = test.rows["image_uri"].to_list()  # the photos with their backgrounds (the slides' question)
    original_features, original_cache = {}, {}

    def local(i: int, j: int, on_originals: bool = False) -> float:  # features extracted once per image
        paths, extracted, cache = ((original_uris, original_features, original_cache) if on_originals
                                   else (uris, local_features, local_cache))
        if (i, j) not in cache:
            for k in (i, j):
                if k not in extracted:
                    extracted[k] = engine.extract(open_set_calibration.read_rgb(paths[k]))
            cache[(i, j)] = float(engine.match(extracted[i], extracted[j]).score)
        return cache[(i, j)]

    def scores(queries: np.ndarray, gallery: np.ndarray, shortlist_size: int):
        """similarity, global p, local p and fused p (NaN off the shortlist) of queries x gallery."""
        similarity = features[queries] @ features[gallery].T
        global_p = calibration.probability("global", similarity)
        local_p = np.full(similarity.shape, np.nan)
        fused = global_p.copy() if engine is None else np.full(similarity.shape, np.nan)
        if engine is not None:
            top = shortlist(similarity, shortlist_size)
            for a, row in enumerate(top):
                for b in row:
                    local_p[a, b] = calibration.probability(args.matcher, [local(queries[a], gallery[b])])[0]
            mask = np.isfinite(local_p)
            fused[mask] = fuse([global_p[mask], local_p[mask]])
        return similarity, global_p, local_p, fused

    t0 = time.perf_counter()
    sizes = {"quarter": max(1, len(known) // 4), "half": max(1, len(known) // 2), "all": len(known)}
    results = {}
    for label, count in sizes.items():
        members = known[:count]
        gallery = np.flatnonzero(np.isin(individual, members) & (roles != "query"))
        known_queries = np.flatnonzero(np.isin(individual, members) & (roles == "query"))
        queries = np.r_[known_queries, unknown_queries]
        codes_names, gallery_codes = np.unique(individual[gallery], return_inverse=True)
        code_of = {n: c for c, n in enumerate(codes_names)}
        query_codes = np.array([code_of.get(n, -1) for n in individual[queries]])
        is_known = query_codes >= 0
        similarity, global_p, local_p, fused = scores(queries, gallery, args.shortlist)
        tie = 1e6
        entry = {"gallery_individuals": int(count), "gallery_images": int(len(gallery)),
                 "known_queries": int(is_known.sum()), "unknown_queries": int((~is_known).sum())}
        k = is_known
        entry["global"] = closed_set(similarity[k], gallery_codes, query_codes[k], count)
        if engine is not None:
            entry["local"] = closed_set(np.where(np.isfinite(local_p), local_p, -1.0)[k] * tie + similarity[k],
                                        gallery_codes, query_codes[k], count)
            entry["fused"] = closed_set(np.where(np.isfinite(fused), fused, -1.0)[k] * tie + similarity[k],
                                        gallery_codes, query_codes[k], count)
            if label == "all":  # the same shortlist matched on the original photos, backgrounds included
                known_rows = queries[k]
                raw = np.full((len(known_rows), len(gallery)), -1.0)
                for a, row in enumerate(shortlist(similarity[k], args.shortlist)):
                    for b in row:
                        raw[a, b] = local(known_rows[a], gallery[b], on_originals=True)
                entry["local_original_images"] = closed_set(raw * tie + similarity[k], gallery_codes,
                                                             query_codes[k], count)
        for fusion_name, matrix in (("none", global_p), (args.matcher, fused)):
            if fusion_name not in calibration.fusions or (fusion_name != "none" and engine is None):
                continue
            top, probability, _ = rank_individuals(matrix, similarity, gallery_codes, count, 1)
            best = probability[:, 0]
            point = calibration.fusion(fusion_name).operating_point(count)
            result = open_set_metrics(np.where(is_known, query_codes, -1), top[:, 0], 1.0 - best, is_known,
                                      1.0 - point)
            entry[f"open_set_{fusion_name}"] = {"operating_point": point, "BAKS": result.BAKS, "BAUS": result.BAUS,
                                                "BA_gmean": result.BA_gmean, "AUROC": result.AUROC}
            if label == "all" and fusion_name == (args.matcher if engine is not None else "none"):
                called_new = queries[best <= point]
                pair_point = calibration.fusion(fusion_name).operating_point(1)
                for group_label, photos in (("called_new", called_new), ("unknown_photos", unknown_queries)):
                    if len(photos) < 2:
                        continue
                    _, _, _, pairwise = scores(photos, photos, args.shortlist)
                    groups = group_photos(np.where(np.eye(len(photos), dtype=bool), np.nan, pairwise), pair_point)
                    entry[f"ARI_{group_label}"] = adjusted_rand(individual[photos], groups)
                    # Against the flank (entity): photos of a tiger's two flanks share no stripes, so no
                    # matcher can join them; perfect flank groups score ~0.56 against individuals here.
                    entry[f"ARI_flank_{group_label}"] = adjusted_rand(entity[photos], groups)
                    entry[f"ARI_ceiling_{group_label}"] = adjusted_rand(individual[photos], np.unique(
                        entity[photos], return_inverse=True)[1])
                    entry[f"groups_{group_label}"] = int(groups.max() + 1)
                entry["photos_called_new"] = int(len(called_new))
        results[label] = entry
    timings["evaluate_s"] = time.perf_counter() - t0
    print(json.dumps({
        "benchmark": "identify_open_set", "seed": args.seed, "matcher": args.matcher, "shortlist": args.shortlist,
        "data": {"individuals": args.individuals, "images_per_individual": args.images_per_individual,
                 "size": args.size, "segmentation": "reference masks, crop", "test_individuals": len(names),
                 "unknown_individuals": len(unknown)},
        "model": {"name": name, "version": number, "preset": "cpu", "epochs": args.epochs,
                  "test_metrics": {k: round(v, 4) for k, v in registered.published.metrics.items()}},
        "calibration": {"notes": calibration.notes,
                        "operating_points": {m: f.validation.get("operating_points") for m, f in
                                             calibration.fusions.items()}},
        "results": results, "pairs_matched": len(local_cache), "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }, indent=1, default=float))


if __name__ == "__main__":
    main()
