"""Method comparison (AER Table 2): every method x species x seed trained, tested and summarised.

Each training is one Ray task (``cpus_per_run`` CPUs, the in-process engine with a ``LocalSession``
under ``<checkpoints>/compare/<method>-<species>-seed<s>-<config hash>``, so a rerun resumes unfinished
runs and skips finished ones), followed in the same task by the test split with the species' protocol.
The driver logs an MLflow parent run (experiment ``reid-compare``) with one child run per training, and
writes the per-run rows and the summary (mean and 95% t-interval half-width over seeds) as Parquet, CSV
and Markdown, plus a bar chart with error bars. The same tool runs ablations: ``overrides`` apply to
every method.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from reid_core import tracking
from reid_core.data import manifest
from reid_core.engine.loop import TrainJob
from reid_core.pipelines import console
from reid_core.pipelines.ray_runtime import init_ray, worker_env
from reid_core.pipelines.train import original_images_note
from reid_core.reports.tables import markdown_table
from reid_core.settings import Settings

EXPERIMENT = "reid-compare"
RUN_KIND = "compare"
# Per protocol, the (metric, label) columns the table shows per species; the ATRW ones only when present.
TABLE_METRICS = {
    "atrw": (("mAP", "mAP"), ("rank1", "R@1"), ("mmAP", "mmAP"), ("rank1_single", "R@1(s)"),
             ("rank1_cross", "R@1(c)")),
    "default": (("mAP", "mAP"), ("rank1", "R@1")),
}
CHART_METRICS = (("mAP", "mAP"), ("rank1", "rank-1"))
SUMMARY_SCHEMA = {"method": pl.String, "species": pl.String, "protocol": pl.String, "metric": pl.String,
                  "n": pl.Int64, "mean": pl.Float64, "sd": pl.Float64, "ci95": pl.Float64}


@dataclass
class CompareRequest:
    manifest: str
    methods: list[str]
    species: list[str]
    seeds: int = 3
    base_seed: int = 0
    preset: str = "paper"
    overrides: dict = field(default_factory=dict)  # dotted keys, applied to every method
    epochs: int | None = None  # sets each method's ``epochs_key``
    use_masked: bool = True
    use_gpu: bool = False
    cpus_per_run: float = 1.0
    dataset: str = "custom"
    out_dir: str | None = None  # default: REID_HOME/compare/compare-<UTC time>
    verbose: bool = False  # the trainings' own (Ray worker) output on the console


@dataclass
class RunSpec:
    """One training of the comparison: its job and where its checkpoints live."""

    job: TrainJob
    directory: Path
    config: dict  # the validated config dump
    config_hash: str
    epochs: int  # total planned epochs (all stages)


@dataclass
class CompareResult:
    runs: pl.DataFrame  # one row per training: method, species, seed, ..., test.*
    summary: pl.DataFrame  # long: method, species, protocol, metric, n, mean, sd, ci95
    markdown: str  # the paper-style table
    run_id: str
    child_run_ids: list[str]
    out_dir: Path


# -- statistics and presentation ----------------------------------------------------------------------

def ci95(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, sample sd, t-distribution 95% half-width) of ``values``; sd and half-width are nan for n=1."""
    from scipy import stats

    xs = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    n = len(xs)
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = sum(xs) / n
    if n == 1:
        return mean, math.nan, math.nan
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    return mean, sd, float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)


def summarize(runs: pl.DataFrame) -> pl.DataFrame:
    """Per method x species x ``test.*`` metric: n, mean, sd, ci95 over the seeds."""
    metrics = [c.removeprefix("test.") for c in runs.columns if c.startswith("test.")]
    rows = []
    for (method, species), group in runs.group_by(["method", "species"], maintain_order=True):
        for metric in metrics:
            values = [v for v in group[f"test.{metric}"].to_list() if v is not None]
            if not values:
                continue
            mean, sd, half = ci95(values)
            rows.append({"method": method, "species": species, "protocol": group["protocol"][0], "metric": metric,
                         "n": len(values), "mean": mean, "sd": sd, "ci95": half})
    return pl.DataFrame(rows, schema=SUMMARY_SCHEMA)


def format_cell(mean: float | None, half: float | None) -> str:
    """``61.2 ± 3.4`` in %; ``61.2 ±n/a`` for one seed; ``-`` when the metric was not computed."""
    if mean is None or math.isnan(mean):
        return "-"
    spread = "±n/a" if half is None or math.isnan(half) else f"± {100 * half:.1f}"
    return f"{100 * mean:.1f} {spread}"


def table_columns(summary: pl.DataFrame) -> list[tuple[str, str, str]]:
    """(species, metric, header) per column: each species' protocol's metrics that were computed."""
    columns = []
    for species in dict.fromkeys(summary["species"].to_list()):
        part = summary.filter(pl.col("species") == species)
        present = set(part["metric"].to_list())
        protocol = part["protocol"][0]
        columns += [(species, key, f"{species} {label}")
                    for key, label in TABLE_METRICS.get(protocol, TABLE_METRICS["default"]) if key in present]
    return columns


def paper_rows(summary: pl.DataFrame) -> list[dict[str, str]]:
    """AER Table 2's layout: one row per method, per species its metrics as ``mean ± ci95`` (%)."""
    columns = table_columns(summary)
    cells = {(r["method"], r["species"], r["metric"]): r for r in summary.iter_rows(named=True)}
    rows = []
    for method in dict.fromkeys(summary["method"].to_list()):
        row = {"Method": method}
        for species, key, header in columns:
            r = cells.get((method, species, key))
            row[header] = format_cell(r["mean"], r["ci95"]) if r else "-"
        rows.append(row)
    return rows


def paper_table(summary: pl.DataFrame) -> str:
    if summary.is_empty():
        return markdown_table([])
    seeds = sorted(set(summary["n"].to_list()))
    protocols = ", ".join(f"{s}: {p}" for s, p in
                          dict(zip(summary["species"], summary["protocol"], strict=True)).items())
    note = (f"\n\nValues in %: mean ± 95% CI half-width (t-distribution) over {'/'.join(map(str, seeds))} "
            f"seed(s); each species scored with its own protocol ({protocols}).\n")
    return markdown_table(paper_rows(summary)) + note


def bar_chart(summary: pl.DataFrame, path: Path, title: str) -> None:
    """One panel per species; per method a bar per metric (mAP, rank-1) with 95% CI error bars."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a cluster node or in CI
    import matplotlib.pyplot as plt
    import numpy as np

    methods = list(dict.fromkeys(summary["method"].to_list()))
    species = list(dict.fromkeys(summary["species"].to_list()))
    cells = {(r["method"], r["species"], r["metric"]): r for r in summary.iter_rows(named=True)}
    width = 0.8 / len(CHART_METRICS)
    fig, axes = plt.subplots(1, len(species), figsize=(1.5 + 1.2 * len(methods) * len(species), 3.6),
                             squeeze=False, sharey=True)
    for ax, s in zip(axes[0], species, strict=True):
        x = np.arange(len(methods))
        for i, (key, label) in enumerate(CHART_METRICS):
            found = [cells.get((m, s, key)) for m in methods]
            means = [100 * r["mean"] if r else np.nan for r in found]
            errors = [100 * r["ci95"] if r and not math.isnan(r["ci95"]) else 0.0 for r in found]
            ax.bar(x + (i - (len(CHART_METRICS) - 1) / 2) * width, means, width, yerr=errors, capsize=3, label=label)
        ax.set_xticks(x, methods)
        ax.set_title(s)
        ax.set_ylim(0, 100)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("% (mean ± 95% CI)")
    axes[0][-1].legend(loc="upper right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _markdown_value(value):
    return f"{value:.4f}" if isinstance(value, float) and not math.isnan(value) else value


def write_outputs(runs: pl.DataFrame, summary: pl.DataFrame, out_dir: Path, title: str) -> str:
    """runs.{parquet,csv,md}, summary.{parquet,csv,md} and compare.png; returns the summary Markdown."""
    out_dir.mkdir(parents=True, exist_ok=True)
    runs.write_parquet(out_dir / "runs.parquet")
    runs.write_csv(out_dir / "runs.csv")
    (out_dir / "runs.md").write_text(markdown_table(
        [{k: _markdown_value(v) for k, v in r.items()} for r in runs.drop("checkpoint").iter_rows(named=True)]) + "\n")
    summary.write_parquet(out_dir / "summary.parquet")
    summary.write_csv(out_dir / "summary.csv")
    markdown = paper_table(summary)
    (out_dir / "summary.md").write_text(markdown)
    bar_chart(summary, out_dir / "compare.png", title)
    return markdown


# -- planning and training ------------------------------------------------------------------------------

def config_hash(config: dict, manifest_uri: str, use_masked: bool, length: int = 8) -> str:
    """Short hash of what a checkpoint depends on besides method, species and seed (in its name)."""
    text = json.dumps({"config": config, "manifest": manifest_uri, "use_masked": use_masked}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def method_overrides(method_name: str, request: CompareRequest, seed: int | None = None) -> dict:
    """``request.overrides`` plus ``--epochs`` as the method's epochs key; with ``seed``, a method whose config
    carries its own seed (DVE's warps and flips) gets the run's seed too, unless ``--set seed=`` fixed it."""
    from reid_core.methods.registry import get_method

    method = get_method(method_name)
    overrides = dict(request.overrides)
    if request.epochs and method.epochs_key:  # a method with nothing to train has no epochs to set
        overrides[method.epochs_key] = request.epochs
    if seed is not None and "seed" in method.config_type.model_fields and "seed" not in overrides:
        overrides["seed"] = seed
    return overrides


def plan_runs(request: CompareRequest, settings: Settings) -> list[RunSpec]:
    """Every method x species x seed, validated on the driver (config keys, columns, batches) first."""
    from reid_core.engine.loop import check_job, load_species_rows
    from reid_core.methods.registry import get_method

    for name in request.methods:
        try:
            get_method(name)
        except ImportError as error:
            raise ValueError(f"method {name!r} is registered but cannot be imported ({error}); "
                             "leave it out of --methods") from None
    rows = {s: load_species_rows(request.manifest, s) for s in request.species}
    specs, noted = [], set()
    for name in request.methods:
        # The hash names the setup every seed shares: the config before the run's own seed goes in.
        method = get_method(name)
        setup = method.config(request.preset, method_overrides(name, request)).model_dump(mode="json")
        digest = config_hash(setup, request.manifest, request.use_masked)
        for species in request.species:
            for seed in (request.base_seed + i for i in range(request.seeds)):
                job = TrainJob(manifest=request.manifest, species=species, method=name, preset=request.preset,
                               overrides=method_overrides(name, request, seed), seed=seed,
                               use_masked=request.use_masked, use_gpu=request.use_gpu)
                if seed == request.base_seed:
                    images = check_job(job, rows[species], workers=1)
                    if species not in noted and (note := original_images_note(job, images.column)):
                        print(note)
                        noted.add(species)
                method, config = job.method_and_config()
                dump = config.model_dump(mode="json")
                directory = settings.checkpoints_dir / "compare" / f"{name}-{species}-seed{seed}-{digest}"
                specs.append(RunSpec(job, directory, dump, digest, sum(p.epochs for p in method.plan(config))))
    return specs


def finished_checkpoint(directory: Path, epochs: int) -> Path | None:
    """The latest checkpoint under ``directory`` when its history covers all ``epochs``, else None."""
    from reid_core.engine import checkpoint as ckpt

    latest = ckpt.LocalCheckpoints(directory).latest()
    if latest is None:
        return None
    return latest if len(ckpt.load_progress(latest).history) >= epochs else None


def train_and_test(spec: RunSpec, threads: int) -> dict:
    """One training (a Ray task): train in-process unless finished already, then test the best epoch."""
    import torch

    from reid_core.engine.evaluate import protocol_for
    from reid_core.engine.loop import load_species_rows, train
    from reid_core.engine.session import LocalSession
    from reid_core.lifecycle.publish import test_metrics
    from reid_core.lifecycle.restore import restore

    torch.set_num_threads(max(1, threads))
    job = spec.job
    started = time.perf_counter()
    checkpoint = finished_checkpoint(spec.directory, spec.epochs)
    skipped = checkpoint is not None
    if checkpoint is None:
        session = LocalSession(spec.directory, use_gpu=job.use_gpu)
        train(job, session)
        checkpoint = session.store.latest()
    train_seconds = time.perf_counter() - started
    restored = restore(checkpoint)
    rows = load_species_rows(job.manifest, job.species)
    metrics = test_metrics(restored, rows, job.use_masked)
    progress = restored.progress
    return {"method": job.method, "species": job.species, "seed": job.seed,
            "protocol": protocol_for(rows.filter(pl.col("split") == "test")), "preset": job.preset,
            "config_hash": spec.config_hash, "epochs": len(progress.history), "skipped_training": skipped,
            "best_epoch": progress.meta.get("best", {}).get("epoch"), "train_seconds": train_seconds,
            "checkpoint": str(checkpoint), "history": progress.history, **metrics}


def launch(specs: list[RunSpec], request: CompareRequest) -> list:
    """One Ray task per training, as many at once as the cluster's CPUs (GPUs) allow; returns the refs."""
    import ray

    task = ray.remote(num_cpus=request.cpus_per_run, num_gpus=1 if request.use_gpu else 0,
                      runtime_env={"env_vars": worker_env()})(train_and_test)
    threads = max(1, int(request.cpus_per_run))
    return [task.remote(spec, threads) for spec in specs]


def _child_params(spec: RunSpec, request: CompareRequest) -> dict:
    job = spec.job
    return {"method": job.method, "species": job.species, "seed": job.seed, "preset": job.preset,
            "use_masked": job.use_masked, "config_hash": spec.config_hash,
            "overrides": json.dumps(job.overrides, sort_keys=True), "config": spec.config}


def summary_metrics(summary: pl.DataFrame) -> dict[str, float]:
    """``compare.<method>.<species>.<metric>.{mean,ci95}`` for the parent run (nan half-widths left out)."""
    out = {}
    for r in summary.iter_rows(named=True):
        prefix = f"compare.{r['method']}.{r['species']}.{r['metric']}"
        out[f"{prefix}.mean"] = r["mean"]
        if not math.isnan(r["ci95"]):
            out[f"{prefix}.ci95"] = r["ci95"]
    return out


def run_compare(request: CompareRequest, settings: Settings | None = None) -> CompareResult:
    settings = settings or Settings.from_env()
    if request.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {request.seeds}")
    if not request.methods or not request.species:
        raise ValueError("name at least one method (--methods) and one species (--species)")
    specs = plan_runs(request, settings)  # every usage error before Ray, MLflow or any training starts
    all_rows = manifest.read(request.manifest)
    used_rows = all_rows.filter(pl.col("species").is_in(request.species))
    tags = tracking.standard_tags(species=",".join(request.species), method=",".join(request.methods),
                                  dataset=request.dataset, data_version=tracking.data_version(used_rows))
    import ray

    init_ray(settings, verbose=request.verbose)
    started = time.perf_counter()
    futures = launch(specs, request)  # trainings start while the driver sets up the MLflow runs
    child_ids: list[str] = []
    run_id = None
    try:
        run_id = tracking.start_run(
            EXPERIMENT, RUN_KIND, f"compare-{'-'.join(request.methods)}", tags=tags, settings=settings,
            params={"manifest": request.manifest, "methods": ",".join(request.methods),
                    "species": ",".join(request.species), "seeds": request.seeds, "base_seed": request.base_seed,
                    "preset": request.preset, "epochs": request.epochs, "use_masked": request.use_masked,
                    "cpus_per_run": request.cpus_per_run,
                    "overrides": json.dumps(request.overrides, sort_keys=True)})
        tracking.log_manifest_input(run_id, used_rows, request.manifest,
                                    tracking.dataset_name(request.dataset, request.species), settings=settings)
        species_rows = {s: all_rows.filter(pl.col("species") == s) for s in request.species}
        progress = console.Progress(f"compare {','.join(request.methods)}", len(specs), "trainings")
        # Each child run is logged as its training finishes; a failed training fails the comparison after
        # the others finished (their checkpoints make a rerun resume rather than start over).
        finished: dict[int, dict] = {}
        index = {future: i for i, future in enumerate(futures)}
        pending, failure = list(futures), None
        failed = 0
        with progress:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                try:
                    result = ray.get(done[0])
                except ray.exceptions.RayTaskError as error:
                    failure = failure or error
                    failed += 1
                    progress.advance(1, failed=failed)
                    continue
                spec = specs[index[done[0]]]
                finished[index[done[0]]] = result
                child_ids.append(tracking.log_trial_run(
                    run_id, _child_params(spec, request), result["history"],
                    final_metrics={k: v for k, v in result.items() if k.startswith("test.")},
                    tags={"method": spec.job.method, "species": spec.job.species, "seed": spec.job.seed,
                          "run_kind": "compare_run"},
                    run_name=f"{spec.job.method}-{spec.job.species}-seed{spec.job.seed}", settings=settings))
                tracking.log_manifest_input(child_ids[-1], species_rows[spec.job.species], request.manifest,
                                            tracking.dataset_name(request.dataset, spec.job.species),
                                            settings=settings)
                progress.advance(1, last=f"{spec.job.method}-{spec.job.species}-seed{spec.job.seed} "
                                         f"mAP {result.get('test.mAP', float('nan')):.3f}")
            progress.close(f"{len(finished)} trainings tested ({sum(r['skipped_training'] for r in finished.values())} "
                           f"reused), {failed} failed")
        if failure is not None:
            raise failure
        results = [finished[i] for i in range(len(specs))]
        runs = pl.DataFrame([{k: v for k, v in r.items() if k != "history"} for r in results],
                            infer_schema_length=None)
        summary = summarize(runs)
        tracking.log_metrics(run_id, {**summary_metrics(summary), "compare_seconds": time.perf_counter() - started},
                             settings=settings)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        out_dir = Path(request.out_dir or settings.home / "compare" / f"compare-{stamp}")
        markdown = write_outputs(runs, summary, out_dir, f"{', '.join(request.methods)} ({request.preset})")
        tracking.log_artifacts(run_id, out_dir, "compare", settings=settings)
    except BaseException:
        for future in futures:
            ray.cancel(future)
        if run_id is not None:
            tracking.end_run(run_id, "FAILED", settings=settings)
        raise
    tracking.end_run(run_id, "FINISHED", settings=settings)
    return CompareResult(runs, summary, markdown, run_id, child_ids, out_dir)
