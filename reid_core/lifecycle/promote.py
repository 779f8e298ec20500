"""Promote a registered version to ``production`` behind a gate against the current production version.

Both versions are evaluated here, now, on the same test rows with the species' protocol (never read
from tags written at training time, which may come from another manifest or code version). The
candidate passes when ``candidate >= production - tolerance`` on the gate metric. The first promotion
of a model has nothing to compare with and needs no gate; ``force`` skips the gate with a reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reid_core import tracking
from reid_core.lifecycle.model_eval import ModelEvaluation, evaluate_model, species_test_rows
from reid_core.settings import Settings
from reid_core.tracking.promotion import Rollback, now_iso

# Decisions recorded in the version tag ``promotion_decision``.
FIRST, PASSED, REJECTED, FORCED, ALREADY = "first_promotion", "gate_passed", "gate_rejected", "forced", "already_production"
# Metrics copied into gate tags besides the gate metric itself.
REPORTED = ("mAP", "rank1")
# Float noise allowed on top of the tolerance, so a model scored against an identical copy ties.
EPS = 1e-9


@dataclass
class PromotionRequest:
    name: str  # reid-<method>-<species>
    manifest: str | None = None  # None: the manifest the candidate was trained on (its `manifest` tag)
    version: str | None = None
    alias: str | None = None  # used when version is None (default: candidate)
    metric: str = "mAP"
    tolerance: float = 0.0  # how much worse (absolute, on the metric) still passes
    force: bool = False
    reason: str | None = None
    use_masked: bool = True


@dataclass
class PromotionResult:
    name: str
    candidate: str
    previous: str | None  # production before this call
    decision: str
    promoted: bool
    reason: str
    metric: str
    candidate_metrics: dict[str, float] = field(default_factory=dict)
    production_metrics: dict[str, float] = field(default_factory=dict)


def passes_gate(candidate: float, production: float, tolerance: float = 0.0) -> bool:
    """Not worse than production, allowing ``tolerance``; a tie passes."""
    return candidate >= production - tolerance - EPS


def _metric(evaluation: ModelEvaluation, metric: str) -> float:
    if metric not in evaluation.metrics:
        raise ValueError(f"gate metric {metric!r} is not computed by the {evaluation.protocol!r} protocol; "
                         f"choose one of: {', '.join(sorted(evaluation.metrics))}")
    return evaluation.metrics[metric]


def _gate_tags(request: PromotionRequest, manifest: str, rows_version: str, protocol: str,
               candidate: dict[str, float], production: dict[str, float], production_version: str) -> dict[str, str]:
    tags = {"gate.metric": request.metric, "gate.tolerance": str(request.tolerance),
            "gate.manifest": manifest, "gate.data_version": rows_version, "gate.protocol": protocol,
            "gate.production_version": production_version}
    for key in dict.fromkeys((request.metric, *REPORTED)):
        if key in candidate:
            tags[f"gate.candidate.{key}"] = f"{candidate[key]:.6g}"
        if key in production:
            tags[f"gate.production.{key}"] = f"{production[key]:.6g}"
    return tags


def promote(request: PromotionRequest, settings: Settings | None = None) -> PromotionResult:
    """Evaluate, decide, and move the alias (or record the rejection) with tags on the candidate."""
    settings = settings or Settings.from_env()
    if request.force and not (request.reason or "").strip():
        raise ValueError("--force needs --reason: say why the gate is overridden (it is recorded on the version)")
    _, species = tracking.parse_registered_model_name(request.name)
    alias = None if request.version is not None else (request.alias or tracking.CANDIDATE)
    candidate = str(tracking.get_version(request.name, request.version, alias, settings).version)
    previous = tracking.production_version(request.name, settings)

    def result(decision: str, promoted: bool, reason: str, **metrics) -> PromotionResult:
        return PromotionResult(request.name, candidate, previous, decision, promoted, reason, request.metric,
                               **metrics)

    if previous == candidate:
        return result(ALREADY, False, f"v{candidate} is already production")
    if previous is None or request.force:
        decision = FIRST if previous is None else FORCED
        reason = request.reason or "first promotion: no production version to compare with"
        tracking.move_production(request.name, candidate, {"promotion_decision": decision,
                                                            "promotion_reason": reason}, settings)
        return result(decision, True, reason)

    manifest = request.manifest or tracking.get_version(request.name, candidate, None,
                                                        settings).tags.get("manifest")
    if not manifest:
        raise ValueError(f"{request.name} v{candidate} has no `manifest` tag: pass --manifest with the "
                         "manifest whose test split the versions should be evaluated on")
    rows = species_test_rows(manifest, species)
    cand = evaluate_model(f"models:/{request.name}/{candidate}", rows, settings=settings,
                          use_masked=request.use_masked)
    prod = evaluate_model(f"models:/{request.name}/{previous}", rows, settings=settings,
                          use_masked=request.use_masked)
    c, p = _metric(cand, request.metric), _metric(prod, request.metric)
    passed = passes_gate(c, p, request.tolerance)
    verdict = "not worse than" if passed else "worse than"
    reason = (f"{request.metric} {c:.4f} is {verdict} production v{previous} {p:.4f} "
              f"(tolerance {request.tolerance:g})" + (f"; {request.reason}" if request.reason else ""))
    tags = {**_gate_tags(request, manifest, tracking.data_version(rows), cand.protocol, cand.metrics, prod.metrics, previous),
            "promotion_decision": PASSED if passed else REJECTED, "promotion_reason": reason,
            "gate.decided_at": now_iso()}
    if passed:
        tracking.move_production(request.name, candidate, tags, settings)
    else:
        tracking.tag_version(request.name, candidate, tags, settings)
    return result(PASSED if passed else REJECTED, passed, reason,
                  candidate_metrics=cand.metrics, production_metrics=prod.metrics)


def rollback(name: str, reason: str = "rollback", settings: Settings | None = None) -> Rollback:
    return tracking.rollback(name, reason, settings or Settings.from_env())
