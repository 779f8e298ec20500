"""The cross-species transfer matrix (AER Table A.5): every species' model on every species' test set.

Rows are the training species (its model: the ``production`` version of ``reid-<method>-<species>`` by
default, or a named version, alias, run or model URI), columns the test species, each cell scored with
the *test* species' protocol. Cells run in parallel as Ray tasks. The matrix is written as Parquet,
CSV, a paper-style Markdown table and a heatmap, and logged to an MLflow run (``run_kind`` tag
``transfer_matrix`` in experiment ``reid-<method>``) with metrics ``transfer.<train>.<test>.<metric>``;
the change against the previous such run is returned.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from reid_core import tracking
from reid_core.data import manifest
from reid_core.lifecycle.local_rerank import LocalRerank
from reid_core.lifecycle.model_eval import evaluate_model, species_rows, species_test_rows
from reid_core.methods.registry import method_names
from reid_core.pipelines.ray_runtime import init_ray, worker_env
from reid_core.reports import transfer as transfer_report
from reid_core.settings import Settings
from reid_core.tracking.versions import ModelNotFoundError

RUN_KIND = "transfer_matrix"
# Metrics logged per cell (when the test protocol computes them); mmAP/rank1_single/rank1_cross: ATRW;
# fused_*: re-ranked by local-feature matching (``--matcher``).
CELL_METRICS = ("mAP", "rank1", "mmAP", "rank1_single", "rank1_cross", "fused_mAP", "fused_rank1")
TABLE_SCHEMA = {"train_species": pl.String, "test_species": pl.String, "model": pl.String, "model_uri": pl.String,
                "protocol": pl.String, **{m: pl.Float64 for m in CELL_METRICS},
                "n_queries": pl.Float64, "n_images": pl.Int64}


@dataclass
class TransferRequest:
    method: str
    manifest: str
    species: list[str] | None = None  # training species; None: every manifest species that has a model
    test_species: list[str] | None = None  # None: the training species
    alias: str = tracking.PRODUCTION
    models: dict[str, str] = field(default_factory=dict)  # species -> "7" | "@candidate" | "run:<id>" | "models:/..."
    use_masked: bool = True
    cpus_per_task: float = 1.0
    dataset: str = "custom"
    out_dir: str | None = None  # default: REID_HOME/transfer/<method>-<UTC time>
    rerank: LocalRerank | None = None  # also re-rank each cell by local-feature matching (fused_mAP, fused_rank1)


@dataclass
class ModelRef:
    species: str
    uri: str  # pinned: models:/<name>/<version> or models:/m-<id>
    label: str  # what the table shows, e.g. "reid-dve-tiger v3 (@production)"


@dataclass
class TransferResult:
    table: pl.DataFrame  # one row per (train, test) cell, TABLE_SCHEMA
    run_id: str
    previous_run_id: str | None
    changes: pl.DataFrame | None  # per-cell change against the previous run (None: first run)
    out_dir: Path
    markdown: str
    skipped: list[str] = field(default_factory=list)  # species without a model (default species only)


def resolve_model(method: str, species: str, reference: str | None, alias: str,
                  settings: Settings | None = None) -> ModelRef:
    """A species' model reference pinned to one model, so the run records exactly what was measured."""
    name = tracking.registered_model_name(method, species)
    ref = (reference or f"@{alias}").strip()
    if ref.startswith("models:/"):
        return ModelRef(species, ref, ref)
    if ref.startswith("run:"):
        run_id = ref.removeprefix("run:")
        return ModelRef(species, tracking.run_model_uri(run_id, settings), f"run {run_id[:8]}")
    if ref.startswith("@"):
        version = tracking.get_version(name, alias=ref[1:], settings=settings).version
        return ModelRef(species, f"models:/{name}/{version}", f"{name} v{version} ({ref})")
    if ref.isdigit():
        version = tracking.get_version(name, version=ref, settings=settings).version
        return ModelRef(species, f"models:/{name}/{version}", f"{name} v{version}")
    raise ValueError(f"model reference {ref!r} for {species}: use a version (7), an alias (@candidate), "
                     "a run (run:<run_id>) or a model URI (models:/...)")


def resolve_models(request: TransferRequest, manifest_species: list[str],
                   settings: Settings) -> tuple[list[ModelRef], list[str]]:
    """The row models and the species skipped for lack of one (only when species were not named)."""
    named = request.species is not None or bool(request.models)
    species = request.species or (sorted(request.models) if request.models else manifest_species)
    refs, skipped = [], []
    for s in species:
        try:
            refs.append(resolve_model(request.method, s, request.models.get(s), request.alias, settings))
        except ModelNotFoundError:
            if named:
                raise
            skipped.append(s)
    if not refs:
        raise ModelNotFoundError(
            f"no species of {request.manifest} has a model reid-{request.method}-<species>@{request.alias} "
            f"(tried: {', '.join(species)}); promote one (python workflows/promote.py --model ...) or name "
            "models with --model SPECIES=VERSION")
    return refs, skipped


def evaluate_cell(ref: ModelRef, manifest_uri: str, test_species: str, settings: Settings,
                  use_masked: bool, threads: int, rerank: LocalRerank | None = None) -> dict:
    """One cell (runs as a Ray task): ``ref``'s model on ``test_species``' test rows; with ``rerank``, also
    re-ranked by local-feature matching, calibrated on ``test_species``' validation rows."""
    import torch

    torch.set_num_threads(max(1, threads))
    all_rows = manifest.read(manifest_uri)
    rows = species_test_rows(manifest_uri, test_species, all_rows)
    result = evaluate_model(ref.uri, rows, settings=settings, use_masked=use_masked, rerank=rerank,
                            calibration_rows=species_rows(manifest_uri, test_species, "val", all_rows))
    metrics = {k.replace(".", "_"): v for k, v in result.metrics.items()}  # fused.mAP -> fused_mAP
    return {"train_species": ref.species, "test_species": test_species, "model": ref.label,
            "model_uri": ref.uri, "protocol": result.protocol,
            **{m: metrics.get(m) for m in CELL_METRICS},
            "n_queries": result.metrics.get("n_queries"), "n_images": result.n_images}


def compute_matrix(refs: list[ModelRef], test_species: list[str], request: TransferRequest,
                   settings: Settings) -> pl.DataFrame:
    import ray

    # Per-task download progress bars from parallel cells interleave into noise in the driver's log.
    env = worker_env() | {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    task = ray.remote(num_cpus=request.cpus_per_task, runtime_env={"env_vars": env})(evaluate_cell)
    futures = [task.remote(ref, request.manifest, t, settings, request.use_masked, int(request.cpus_per_task),
                           request.rerank)
               for ref in refs for t in test_species]
    return pl.DataFrame(ray.get(futures), schema=TABLE_SCHEMA)


def cell_metrics(table: pl.DataFrame) -> dict[str, float]:
    """``transfer.<train>.<test>.<metric>`` for every computed value (species names have no dots)."""
    return {f"transfer.{row['train_species']}.{row['test_species']}.{m}": row[m]
            for row in table.iter_rows(named=True) for m in CELL_METRICS if row[m] is not None}


def run_transfer_matrix(request: TransferRequest, settings: Settings | None = None) -> TransferResult:
    settings = settings or Settings.from_env()
    if request.method not in method_names():
        raise ValueError(f"unknown method {request.method!r}; registered methods: {', '.join(method_names())}")
    df = manifest.read(request.manifest)
    manifest_species = sorted(df.filter(pl.col("split") == "test")["species"].unique().to_list())
    refs, skipped = resolve_models(request, manifest_species, settings)
    test_species = request.test_species or [r.species for r in refs]
    # Fail on the driver, naming the file, before any task starts.
    test_rows = pl.concat([species_test_rows(request.manifest, s, df) for s in test_species], how="diagonal_relaxed")

    experiment = tracking.experiment_name(request.method)
    tracking.get_or_create_experiment(experiment, settings)
    previous = tracking.latest_run(experiment, f"tags.run_kind = '{RUN_KIND}' and attributes.status = 'FINISHED'",
                                   settings=settings)
    tags = tracking.standard_tags(species=",".join(test_species), method=request.method, dataset=request.dataset,
                                  data_version=tracking.data_version(test_rows))
    run_id = tracking.start_run(
        experiment, RUN_KIND, "transfer-matrix", settings=settings,
        tags={**tags, **({"previous_run_id": previous.info.run_id} if previous else {})},
        params={"manifest": request.manifest, "alias": request.alias, "use_masked": request.use_masked,
                "train_species": ",".join(r.species for r in refs), "test_species": ",".join(test_species),
                **{f"model.{r.species}": r.uri for r in refs}})
    try:
        init_ray(settings)
        started = time.perf_counter()
        table = compute_matrix(refs, test_species, request, settings)
        tracking.log_metrics(run_id, {**cell_metrics(table), "transfer_seconds": time.perf_counter() - started},
                             settings=settings)
        changes = transfer_report.changes(table, previous.data.metrics if previous else None,
                                          previous.data.params if previous else None)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        out_dir = Path(request.out_dir or settings.home / "transfer" / f"{request.method}-{stamp}")
        markdown = transfer_report.write_outputs(table, changes, out_dir, method=request.method)
        tracking.log_artifacts(run_id, out_dir, "transfer_matrix", settings=settings)
    except BaseException:
        tracking.end_run(run_id, "FAILED", settings=settings)
        raise
    tracking.end_run(run_id, "FINISHED", settings=settings)
    return TransferResult(table, run_id, previous.info.run_id if previous else None, changes, out_dir, markdown,
                          skipped)
