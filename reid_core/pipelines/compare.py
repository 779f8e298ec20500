"""Method comparison (AER Table 2): every method x species x seed trained, tested and summarised.

Each training is one Ray task (``cpus_per_run`` CPUs, the in-process engine with a ``LocalSession``
under ``<checkpoints>/compare/<method>-<species>-seed<s>-<config hash>``, so a rerun resumes unfinished
runs and skips finished ones), followed in the same task by the test split with the species' protocol.
The driver logs an MLflow parent run (experiment ``reid-compare``) with one child run per training
(``lifecycle.train_and_register``: ``train_and_test`` in the task, ``log_training_run`` on the driver;
nothing is registered), and writes the per-run rows and the summary (mean and 95% t-interval half-width
over seeds) as Parquet, CSV and Markdown, plus a bar chart with error bars (``reports.compare``). The same tool runs ablations: ``overrides`` apply to
every method; ``arms`` name variants of one or more methods (their own overrides, original or masked images)
compared side by side (``reid reproduce``); ``extra_tests`` score every training on more test sets as well
(the other image kind, other species' test splits) as ``test.<name>.<metric>``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from reid_core import tracking
from reid_core.data import manifest
from reid_core.engine.loop import TrainJob
from reid_core.lifecycle import train_and_register as lifecycle
from reid_core.lifecycle.local_rerank import LocalRerank
from reid_core.pipelines import console
from reid_core.pipelines.ray_runtime import init_ray, worker_env
from reid_core.pipelines.train import original_images_note
from reid_core.reports.compare import summarize, write_outputs
from reid_core.settings import Settings

EXPERIMENT = "reid-compare"
RUN_KIND = "compare"


ARM_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")  # part of MLflow metric keys and checkpoint folder names


@dataclass(frozen=True)
class Arm:
    """One compared variant: a method with its own overrides (on top of the request's) and images."""

    name: str  # the table's row and the metric keys' part: letters, digits, ``_ . -``
    method: str
    overrides: dict = field(default_factory=dict)
    use_masked: bool | None = None  # None: the request's

    def __post_init__(self):
        if not ARM_NAME.match(self.name):
            raise ValueError(f"arm name {self.name!r}: use letters, digits, '_', '.' or '-' only")


@dataclass(frozen=True)
class ExtraTest:
    """A test split every training is scored on besides its own: metrics ``test.<name>.<metric>``."""

    name: str
    species: str | None = None  # None: the training's own species
    use_masked: bool | None = None  # None: as the training


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
    rerank: LocalRerank | None = None  # also test re-ranked by local-feature matching (``test.fused.*``)
    arms: list[Arm] = field(default_factory=list)  # empty: one arm per method of ``methods``
    extra_tests: list[ExtraTest] = field(default_factory=list)
    experiment: str = EXPERIMENT
    run_name: str | None = None  # default: compare-<methods>
    tags: dict = field(default_factory=dict)  # added to the parent run's

    def arm_list(self) -> list[Arm]:
        return list(self.arms) or [Arm(name, name) for name in self.methods]


@dataclass
class RunSpec:
    """One training of the comparison: its job and where its checkpoints live."""

    arm: str
    extra_tests: list[ExtraTest]
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


# -- planning and training ------------------------------------------------------------------------------

def config_hash(config: dict, manifest_uri: str, use_masked: bool, length: int = 8) -> str:
    """Short hash of what a checkpoint depends on besides method, species and seed (in its name)."""
    text = json.dumps({"config": config, "manifest": manifest_uri, "use_masked": use_masked}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def method_overrides(method_name: str, request: CompareRequest, seed: int | None = None,
                     arm: Arm | None = None) -> dict:
    """``request.overrides`` (then ``arm``'s) plus ``--epochs`` as the method's epochs key; with ``seed``, a
    method whose config carries its own seed (DVE's warps and flips) gets the run's seed too, unless
    ``--set seed=`` fixed it."""
    from reid_core.methods.registry import get_method

    method = get_method(method_name)
    overrides = {**request.overrides, **(arm.overrides if arm else {})}
    if request.epochs and method.epochs_key:  # a method with nothing to train has no epochs to set
        overrides[method.epochs_key] = request.epochs
    if seed is not None and "seed" in method.config_type.model_fields and "seed" not in overrides:
        overrides["seed"] = seed
    return overrides


def plan_runs(request: CompareRequest, settings: Settings) -> list[RunSpec]:
    """Every method x species x seed, validated on the driver (config keys, columns, batches) first."""
    from reid_core.engine.loop import check_job, load_species_rows
    from reid_core.methods.registry import get_method

    arms = request.arm_list()
    if len({arm.name for arm in arms}) < len(arms):
        raise ValueError(f"arm names must differ: {', '.join(arm.name for arm in arms)}")
    for name in dict.fromkeys(arm.method for arm in arms):
        try:
            get_method(name)
        except ImportError as error:
            raise ValueError(f"method {name!r} is registered but cannot be imported ({error}); "
                             "leave it out of --methods") from None
    tested = set(request.species) | {t.species for t in request.extra_tests if t.species}
    rows = {s: load_species_rows(request.manifest, s) for s in sorted(tested)}
    specs, noted = [], set()
    for arm in arms:
        name = arm.method
        use_masked = request.use_masked if arm.use_masked is None else arm.use_masked
        # The hash names the setup every seed shares: the config before the run's own seed goes in.
        method = get_method(name)
        setup = method.config(request.preset, method_overrides(name, request, arm=arm)).model_dump(mode="json")
        digest = config_hash(setup, request.manifest, use_masked)
        for species in request.species:
            for seed in (request.base_seed + i for i in range(request.seeds)):
                job = TrainJob(manifest=request.manifest, species=species, method=name, preset=request.preset,
                               overrides=method_overrides(name, request, seed, arm), seed=seed,
                               use_masked=use_masked, use_gpu=request.use_gpu)
                if seed == request.base_seed:
                    images = check_job(job, rows[species], workers=1)
                    if (species, use_masked) not in noted and (note := original_images_note(job, images.column)):
                        print(note)
                        noted.add((species, use_masked))
                method, config = job.method_and_config()
                dump = config.model_dump(mode="json")
                directory = settings.checkpoints_dir / "compare" / f"{name}-{species}-seed{seed}-{digest}"
                extra = [t for t in request.extra_tests if t.species != species]  # its own split is test.*
                specs.append(RunSpec(arm.name, extra, job, directory, dump, digest,
                                     sum(p.epochs for p in method.plan(config))))
    return specs


def train_and_test(spec: RunSpec, threads: int, rerank: LocalRerank | None = None) -> dict:
    """One training (a Ray task): train in-process unless finished already, then test the best epoch."""
    import torch

    from reid_core.engine.evaluate import protocol_for
    from reid_core.engine.loop import load_species_rows
    from reid_core.lifecycle.publish import test_metrics

    torch.set_num_threads(max(1, threads))
    job = spec.job
    rows = load_species_rows(job.manifest, job.species)
    tested = lifecycle.train_and_test(job, spec.directory, spec.epochs, rows, rerank)
    progress = tested.restored.progress
    extra = {}
    for test in spec.extra_tests:  # the same best epoch on other test sets: test.<name>.<metric>
        test_rows = rows if test.species is None else load_species_rows(job.manifest, test.species)
        use_masked = job.use_masked if test.use_masked is None else test.use_masked
        extra |= {f"test.{test.name}.{k.removeprefix('test.')}": v
                  for k, v in test_metrics(tested.restored, test_rows, use_masked).items()}
    return {"arm": spec.arm, "method": job.method, "species": job.species, "seed": job.seed,
            "protocol": protocol_for(rows.filter(pl.col("split") == "test")), "preset": job.preset,
            "config_hash": spec.config_hash, "epochs": len(progress.history), "skipped_training": tested.skipped_training,
            "best_epoch": progress.meta.get("best", {}).get("epoch"), "train_seconds": tested.train_seconds,
            "checkpoint": str(tested.checkpoint), "history": progress.history, **tested.metrics, **extra}


def launch(specs: list[RunSpec], request: CompareRequest) -> list:
    """One Ray task per training, as many at once as the cluster's CPUs (GPUs) allow; returns the refs."""
    import ray

    task = ray.remote(num_cpus=request.cpus_per_run, num_gpus=1 if request.use_gpu else 0,
                      runtime_env={"env_vars": worker_env()})(train_and_test)
    threads = max(1, int(request.cpus_per_run))
    return [task.remote(spec, threads, request.rerank) for spec in specs]


def _child_params(spec: RunSpec) -> dict:
    job = spec.job
    return {"arm": spec.arm, "method": job.method, "species": job.species, "seed": job.seed, "preset": job.preset,
            "use_masked": job.use_masked, "config_hash": spec.config_hash,
            "overrides": json.dumps(job.overrides, sort_keys=True), "config": spec.config}


def summary_metrics(summary: pl.DataFrame) -> dict[str, float]:
    """``compare.<arm>.<species>.<metric>.{mean,ci95}`` for the parent run (nan half-widths left out); an arm
    is its method unless the request named arms."""
    out = {}
    for r in summary.iter_rows(named=True):
        prefix = f"compare.{r['arm']}.{r['species']}.{r['metric']}"
        out[f"{prefix}.mean"] = r["mean"]
        if not math.isnan(r["ci95"]):
            out[f"{prefix}.ci95"] = r["ci95"]
    return out


def run_compare(request: CompareRequest, settings: Settings | None = None) -> CompareResult:
    settings = settings or Settings.from_env()
    if request.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {request.seeds}")
    if not request.arm_list() or not request.species:
        raise ValueError("name at least one method (--methods) and one species (--species)")
    specs = plan_runs(request, settings)  # every usage error before Ray, MLflow or any training starts
    arms = request.arm_list()
    methods = list(dict.fromkeys(arm.method for arm in arms))
    all_rows = manifest.read(request.manifest)
    used_rows = all_rows.filter(pl.col("species").is_in(request.species))
    tags = tracking.standard_tags(species=",".join(request.species), method=",".join(methods),
                                  dataset=request.dataset, data_version=tracking.data_version(used_rows))
    import ray

    init_ray(settings, verbose=request.verbose)
    started = time.perf_counter()
    futures = launch(specs, request)  # trainings start while the driver sets up the MLflow runs
    child_ids: list[str] = []
    run_id = None
    try:
        run_id = tracking.start_run(
            request.experiment, RUN_KIND, request.run_name or f"compare-{'-'.join(methods)}",
            tags={**tags, **request.tags}, settings=settings,
            params={"manifest": request.manifest, "methods": ",".join(methods),
                    **({"arms": ",".join(arm.name for arm in arms)} if request.arms else {}),
                    "species": ",".join(request.species), "seeds": request.seeds, "base_seed": request.base_seed,
                    "preset": request.preset, "epochs": request.epochs, "use_masked": request.use_masked,
                    "cpus_per_run": request.cpus_per_run,
                    "overrides": json.dumps(request.overrides, sort_keys=True),
                    "matcher": request.rerank.matcher if request.rerank else "none",
                    "shortlist": request.rerank.shortlist if request.rerank else None})
        tracking.log_manifest_input(run_id, used_rows, request.manifest,
                                    tracking.dataset_name(request.dataset, request.species), settings=settings)
        species_rows = {s: all_rows.filter(pl.col("species") == s) for s in request.species}
        progress = console.Progress(f"compare {','.join(arm.name for arm in arms)}", len(specs), "trainings")
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
                job = spec.job
                child_ids.append(lifecycle.log_training_run(
                    job, species_rows[job.species], result["history"], parent_run_id=run_id,
                    run_name=f"{spec.arm}-{job.species}-seed{job.seed}", dataset=request.dataset,
                    params=_child_params(spec), final_metrics={k: v for k, v in result.items() if k.startswith("test.")},
                    tags={"arm": spec.arm, "method": job.method, "species": job.species, "seed": job.seed,
                          "run_kind": "compare_run"},
                    settings=settings))
                progress.advance(1, last=f"{spec.arm}-{spec.job.species}-seed{spec.job.seed} "
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
        markdown = write_outputs(runs, summary, out_dir, f"{', '.join(arm.name for arm in arms)} ({request.preset})")
        tracking.log_artifacts(run_id, out_dir, "compare", settings=settings)
    except BaseException:
        for future in futures:
            ray.cancel(future)
        if run_id is not None:
            tracking.end_run(run_id, "FAILED", settings=settings)
        raise
    tracking.end_run(run_id, "FINISHED", settings=settings)
    return CompareResult(runs, summary, markdown, run_id, child_ids, out_dir)
