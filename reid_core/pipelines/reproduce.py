"""A paper's claim as a comparison over seeds (``reid reproduce CLAIM``), on the compare pipeline.

The claim (``reports.claims``) names the arms; each arm x species x seed is one training of
``pipelines.compare`` (a Ray task, an MLflow child run of the parent run ``reproduce-<claim>`` in
experiment ``reid-reproduce``), tested on its own test split and on the claim's extra test sets (original
and masked images; the other species). The report (``reports.reproduce``: ours beside theirs, the
effects' directions and whether the intervals separate) is printed, written next to the compare's files
and logged to the parent run as ``reproduce/claim.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import polars as pl

from reid_core import tracking
from reid_core.data import manifest
from reid_core.pipelines.compare import (
    Arm,
    CompareRequest,
    CompareResult,
    ExtraTest,
    method_overrides,
    run_compare,
)
from reid_core.reports.claims import IMAGE_VIEWS, Claim, get_claim
from reid_core.reports.reproduce import report
from reid_core.settings import Settings

EXPERIMENT = "reid-reproduce"


@dataclass
class ReproduceRequest:
    claim: str
    manifest: str
    species: list[str] | None = None  # None: the claim's default species
    seeds: int = 3
    base_seed: int = 0
    preset: str = "cpu"
    overrides: dict = field(default_factory=dict)  # every arm's, under the arm's own
    epochs: int | None = None
    use_gpu: bool = False
    cpus_per_run: float = 1.0
    dataset: str = "custom"
    data: str = ""  # how the data was made, for the report ("synthetic, reference masks, cropped")
    out_dir: str | None = None  # default: REID_HOME/reproduce/<claim>-<UTC time>
    verbose: bool = False


@dataclass
class ReproduceResult:
    claim: Claim
    compare: CompareResult
    markdown: str
    caveat: bool


def check_manifest(claim: Claim, rows: pl.DataFrame, manifest_uri: str, species: list[str]) -> None:
    """The columns the claim needs, for every species it trains on: masked images, part maps."""
    needed = [("masked_uri", "background-removed images (run `reid segment` on it first)")] if claim.image_views else []
    if claim.needs_parts:
        needed.append(("parts_uri", "part maps (`reid part-masks`, or the synthetic species' own)"))
    for column, what in needed:
        for s in species:
            part = rows.filter(pl.col("species") == s)
            if column not in rows.columns or part[column].null_count() == part.height:
                raise ValueError(f"claim {claim.name} needs {what} in column {column!r}; {manifest_uri} has none "
                                 f"for species {s!r}")
    if claim.transfer and len(species) < 2:
        raise ValueError(f"claim {claim.name} needs at least two species (--species), got {', '.join(species)}")


def _dotted(config: dict, key: str):
    for part in key.split("."):
        config = config.get(part) if isinstance(config, dict) else None
    return config


def arm_configs(claim: Claim, request: ReproduceRequest) -> dict[str, dict]:
    """Each arm's validated config (the preset, --set, the arm's overrides) as a dict."""
    from reid_core.methods.registry import get_method

    compare = CompareRequest(manifest=request.manifest, methods=[], species=[], preset=request.preset,
                             overrides=request.overrides, epochs=request.epochs)
    out = {}
    for arm in claim.arms:
        method = get_method(arm.method)
        overrides = method_overrides(arm.method, compare, arm=Arm(arm.name, arm.method, arm.overrides))
        out[arm.name] = method.config(request.preset, overrides).model_dump(mode="json")
    return out


def compare_request(claim: Claim, request: ReproduceRequest, species: list[str], settings: Settings) -> CompareRequest:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = request.out_dir or str(settings.home / "reproduce" / f"{claim.name}-{stamp}")
    extra = []
    if claim.image_views:
        extra += [ExtraTest(IMAGE_VIEWS[0], use_masked=False), ExtraTest(IMAGE_VIEWS[1], use_masked=True)]
    if claim.transfer:
        extra += [ExtraTest(f"on_{s}", species=s) for s in species]
    arms = [Arm(a.name, a.method, dict(a.overrides), a.use_masked) for a in claim.arms]
    return CompareRequest(
        manifest=request.manifest, methods=list(dict.fromkeys(a.method for a in arms)), species=species,
        seeds=request.seeds, base_seed=request.base_seed, preset=request.preset, overrides=request.overrides,
        epochs=request.epochs, use_gpu=request.use_gpu, cpus_per_run=request.cpus_per_run,
        dataset=request.dataset, out_dir=out_dir, verbose=request.verbose, arms=arms, extra_tests=extra,
        experiment=EXPERIMENT, run_name=f"reproduce-{claim.name}",
        tags={"claim": claim.name, "claim_table": claim.table})


def run_claim(request: ReproduceRequest, settings: Settings | None = None) -> ReproduceResult:
    settings = settings or Settings.from_env()
    claim = get_claim(request.claim)
    species = request.species or list(claim.species)
    check_manifest(claim, manifest.read(request.manifest), request.manifest, species)
    configs = arm_configs(claim, request)  # a bad --set is a usage error before anything starts
    caveat = bool(claim.caveat_key) and any(_dotted(c, claim.caveat_key) is None for c in configs.values())
    labels = {a.name: f"{a.label} ({claim.swept_key.rsplit('.', 1)[-1]} = {_dotted(configs[a.name], claim.swept_key)})"
              if claim.swept_key else a.label for a in claim.arms}
    if caveat:
        print(f"note: {claim.caveat}")
    result = run_compare(compare_request(claim, request, species, settings), settings)
    markdown = report(claim, result.runs, result.summary, preset=request.preset, data=request.data,
                      caveat=caveat, labels=labels)
    (result.out_dir / "claim.md").write_text(markdown)
    tracking.log_text(result.run_id, markdown, "reproduce/claim.md", settings=settings)
    return ReproduceResult(claim, result, markdown, caveat)
