"""A claim's result beside the paper's: per arm our mean ± 95% CI over seeds and their reported number, then
per arm against the reference the effect's direction, whether our intervals separate, and theirs.

Input: a ``reports.claims.Claim`` and the compare's per-run table and summary (``reports.compare``).
"Separate" means the two 95% t-intervals of the means do not overlap, a conservative reading (two
intervals can overlap while the difference is significant); with one seed there is no interval.
"""

from __future__ import annotations

import math

import polars as pl

from reid_core.reports.claims import DATASET_OF, Claim, Reported
from reid_core.reports.compare import format_cell
from reid_core.reports.tables import markdown_table
from reid_core.reports.transfer import paper_table as transfer_paper_table

PART_METRIC = "part_mIoU"  # PAW-ViT's part segmentation on the test split, when the training reports it


def metric_key(view: str, metric: str) -> str:
    return f"{view}.{metric}" if view else metric


def headline_metric(summary: pl.DataFrame, species: str, view: str = "") -> str:
    """mmAP where the species' protocol computes it (ATRW), else mAP."""
    present = set(summary.filter(pl.col("species") == species)["metric"].to_list())
    return "mmAP" if metric_key(view, "mmAP") in present else "mAP"


def _cells(summary: pl.DataFrame) -> dict[tuple[str, str, str], dict]:
    return {(r["arm"], r["species"], r["metric"]): r for r in summary.iter_rows(named=True)}


def interval(row: dict | None) -> tuple[float, float] | None:
    if row is None or math.isnan(row["ci95"]):
        return None
    return row["mean"] - row["ci95"], row["mean"] + row["ci95"]


def separation(a: dict | None, b: dict | None) -> str:
    """'yes' when the two 95% intervals do not overlap, 'no' when they do, 'n/a' without intervals."""
    ia, ib = interval(a), interval(b)
    if ia is None or ib is None:
        return "n/a (one seed)"
    return "yes" if ia[1] < ib[0] or ib[1] < ia[0] else "no"


def direction(delta: float | None, tolerance: float = 0.0) -> str:
    if delta is None or math.isnan(delta):
        return "?"
    return "up" if delta > tolerance else "down" if delta < -tolerance else "flat"


def _seeds(runs: pl.DataFrame, arm: str, species: str, key: str) -> str:
    column = f"test.{key}"
    if column not in runs.columns:
        return "-"
    part = runs.filter((pl.col("arm") == arm) & (pl.col("species") == species)).sort("seed")
    return " / ".join("-" if v is None else f"{v:.3f}" for v in part[column].to_list())


def _theirs(claim: Claim, arm: str, view: str) -> str:
    found = [r for r in claim.reported if r.arm == arm and r.view == view]
    return "; ".join(f"{r.dataset} {r.metric} {r.value:.1f}" + (f" ± {r.ci95:.1f}" if r.ci95 is not None else "")
                     for r in found) or "-"


def _their_delta(claim: Claim, arm: str, view: str) -> tuple[str, float | None]:
    """Their effect of ``arm`` against the reference on the first dataset and metric both were reported on."""
    base = {(r.dataset, r.metric): r for r in claim.reported if r.arm == claim.reference and r.view == view}
    for r in claim.reported:
        if r.arm == arm and r.view == view and (r.dataset, r.metric) in base:
            delta = r.value - base[(r.dataset, r.metric)].value
            return f"{delta:+.1f} ({r.dataset} {r.metric})", delta
    return "-", None


def arms_table(claim: Claim, runs: pl.DataFrame, summary: pl.DataFrame, labels: dict[str, str] | None = None) -> str:
    """One row per species x test set x arm: ours (mean ± CI in %, per seed) and theirs."""
    cells = _cells(summary)
    show_parts = claim.needs_parts and any(m == PART_METRIC for m in summary["metric"].to_list())
    rows = []
    for species in dict.fromkeys(summary["species"].to_list()):
        for view in claim.views:
            metric = headline_metric(summary, species, view)
            for arm in claim.arms:
                key = metric_key(view, metric)
                row = {"species": species, **({"tested on": view.replace("_", " ")} if view else {}),
                       "arm": arm.name, "what": (labels or {}).get(arm.name, arm.label),
                       f"ours {metric}": format_cell(*_mean_ci(cells.get((arm.name, species, key)))),
                       "ours R@1": format_cell(*_mean_ci(cells.get((arm.name, species, metric_key(view, "rank1"))))),
                       f"ours {metric} per seed": _seeds(runs, arm.name, species, key)}
                if show_parts:
                    row["ours part mIoU"] = format_cell(*_mean_ci(cells.get((arm.name, species, PART_METRIC))))
                row[f"theirs ({claim.table})"] = _theirs(claim, arm.name, view)
                rows.append(row)
    return markdown_table(rows)


def _mean_ci(row: dict | None) -> tuple[float | None, float | None]:
    return (None, None) if row is None else (row["mean"], row["ci95"])


def effects(claim: Claim, summary: pl.DataFrame) -> list[dict[str, str]]:
    """Per species x test set x arm (not the reference): our change of the headline metric against the
    reference, whether the intervals separate, their change, and whether the directions agree."""
    cells = _cells(summary)
    out = []
    for species in dict.fromkeys(summary["species"].to_list()):
        for view in claim.views:
            key = metric_key(view, headline_metric(summary, species, view))
            base = cells.get((claim.reference, species, key))
            for arm in claim.arms:
                if arm.name == claim.reference:
                    continue
                ours = cells.get((arm.name, species, key))
                delta = None if ours is None or base is None else 100 * (ours["mean"] - base["mean"])
                their_text, their_delta = _their_delta(claim, arm.name, view)
                agree = ("?" if delta is None or their_delta is None
                         else "yes" if direction(delta) == direction(their_delta) else "no")
                out.append({"species": species, **({"tested on": view.replace("_", " ")} if view else {}),
                            "arm vs reference": f"{arm.name} vs {claim.reference}", "metric": key,
                            "ours: change (points)": "-" if delta is None else f"{delta:+.1f}",
                            "direction": direction(delta), "95% intervals separate": separation(ours, base),
                            "theirs: change": their_text, "same direction": agree})
    return out


def best_arm(claim: Claim, summary: pl.DataFrame, species: str) -> tuple[str | None, str | None]:
    """(our best arm by headline-metric mean, their best arm by their first metric's value)."""
    key = metric_key(claim.views[0], headline_metric(summary, species, claim.views[0]))
    ours = summary.filter((pl.col("species") == species) & (pl.col("metric") == key)).sort("mean", descending=True)
    first = claim.reported[0] if claim.reported else None
    theirs = sorted((r for r in claim.reported if first and (r.dataset, r.metric) == (first.dataset, first.metric)),
                    key=lambda r: -r.value)
    return (ours["arm"][0] if ours.height else None), (theirs[0].arm if theirs else None)


# -- the transfer matrix (AER Table A.5) -----------------------------------------------------------------

TRANSFER_METRICS = ("mAP", "rank1", "mmAP", "rank1_single", "rank1_cross")


def _transfer_key(train: str, test: str, metric: str) -> str:
    """The summary metric of ``train``'s trainings on ``test``: the diagonal is ``test.*`` itself, the rest
    the extra test sets ``on_<species>``."""
    return metric if train == test else f"on_{test}.{metric}"


def transfer_matrix(summary: pl.DataFrame) -> pl.DataFrame:
    """The mean matrix in the shape of ``reports.transfer`` (train_species, test_species, model, protocol,
    metrics): one cell per training species x test species, means over the seeds."""
    cells = _cells(summary)
    species = list(dict.fromkeys(summary["species"].to_list()))
    protocol = {r["species"]: r["protocol"] for r in summary.iter_rows(named=True)}
    rows = []
    for train in species:
        arm = summary.filter(pl.col("species") == train)["arm"][0]
        n = summary.filter(pl.col("species") == train)["n"].max()
        for test in species:
            values = {m: (cells.get((arm, train, _transfer_key(train, test, m))) or {}).get("mean")
                      for m in TRANSFER_METRICS}
            rows.append({"train_species": train, "test_species": test, "model": f"{arm}, mean of {n} seeds",
                         "protocol": protocol[test], **values})
    schema = {"train_species": pl.String, "test_species": pl.String, "model": pl.String, "protocol": pl.String,
              **{m: pl.Float64 for m in TRANSFER_METRICS}}
    return pl.DataFrame(rows, schema=schema)


def transfer_effects(claim: Claim, summary: pl.DataFrame) -> list[dict[str, str]]:
    """Per test species (a column) and other training species: the diagonal's headline metric against the
    cell trained on the other species; ours (mean ± CI, separation) and theirs (AER Table A.5)."""
    cells = _cells(summary)
    species = list(dict.fromkeys(summary["species"].to_list()))
    reported = {tuple(r.arm.split(">")): r for r in claim.reported}
    out = []
    for test in species:
        metric = headline_metric(summary, test)
        for train in species:
            if train == test:
                continue
            diagonal = _arm_cell(cells, summary, test, _transfer_key(test, test, metric))
            other = _arm_cell(cells, summary, train, _transfer_key(train, test, metric))
            delta = None if diagonal is None or other is None else 100 * (diagonal["mean"] - other["mean"])
            theirs_diag, theirs_other = reported.get((test, test)), reported.get((train, test))
            their_delta = (theirs_diag.value - theirs_other.value) if theirs_diag and theirs_other else None
            out.append({
                "test species": test, "trained on": f"{test} (diagonal) vs {train}",
                f"ours {metric}": f"{format_cell(*_mean_ci(diagonal))} vs {format_cell(*_mean_ci(other))}",
                "ours: diagonal minus transfer (points)": "-" if delta is None else f"{delta:+.1f}",
                "95% intervals separate": separation(diagonal, other),
                "theirs": _their_pair(theirs_diag, theirs_other),
                "same direction": ("?" if delta is None or their_delta is None
                                   else "yes" if direction(delta) == direction(their_delta) else "no")})
    return out


def _arm_cell(cells: dict, summary: pl.DataFrame, species: str, key: str) -> dict | None:
    arms = summary.filter(pl.col("species") == species)["arm"]
    return cells.get((arms[0], species, key)) if arms.len() else None


def _their_pair(diagonal: Reported | None, other: Reported | None) -> str:
    if diagonal is None or other is None:
        return "-"
    return (f"{diagonal.dataset} {diagonal.metric} {diagonal.value:.1f} vs {other.value:.1f} "
            f"({diagonal.value - other.value:+.1f})")


def their_matrix(claim: Claim) -> str:
    """AER Table A.5 as reported (their headline metric per test set), rows = training data."""
    species = list(dict.fromkeys(r.arm.split(">")[0] for r in claim.reported))
    values = {tuple(r.arm.split(">")): r for r in claim.reported}
    rows = [{"training data": DATASET_OF[train],
             **{f"{DATASET_OF[test]} {values[(train, test)].metric}": f"{values[(train, test)].value:.1f}"
                for test in species}} for train in species]
    return markdown_table(rows)


# -- the whole report ----------------------------------------------------------------------------------

def report(claim: Claim, runs: pl.DataFrame, summary: pl.DataFrame, *, preset: str, data: str,
           caveat: bool = False, labels: dict[str, str] | None = None) -> str:
    """The Markdown a ``reid reproduce`` run prints and logs: the claim, ours beside theirs, the effects."""
    seeds = sorted(set(summary["n"].to_list()))
    lines = [f"## {claim.name}: {claim.table}", "", f"Their claim ({claim.paper}): {claim.statement}", "",
             f"Ours: preset `{preset}`, {data}, {'/'.join(map(str, seeds))} seeds; values in %, mean ± 95% CI "
             f"half-width (t) over seeds. Theirs: {claim.their_model}, as reported in {claim.table} (their data, "
             "their scale: compare directions, not values).", ""]
    if caveat and claim.caveat:
        lines += [f"**Cannot show here:** {claim.caveat}", ""]
    if claim.transfer:
        lines += ["Ours (mean over seeds; rows: training species, columns: test species):", "",
                  transfer_paper_table(transfer_matrix(summary)).rstrip(), "",
                  f"Theirs ({claim.table}, {claim.their_model}):", "", their_matrix(claim), "",
                  "Diagonal against transfer, per test species:", "",
                  markdown_table(transfer_effects(claim, summary))]
    else:
        lines += [arms_table(claim, runs, summary, labels), "", f"Effects against `{claim.reference}`:", "",
                  markdown_table(effects(claim, summary))]
        if len(claim.arms) > 2:
            for species in dict.fromkeys(summary["species"].to_list()):
                ours, theirs = best_arm(claim, summary, species)
                lines += ["", f"Best arm on {species}: ours `{ours}`, theirs `{theirs}` "
                              f"({'the same' if ours == theirs else 'different'})."]
    if claim.needs_parts:
        measured = PART_METRIC in summary["metric"].to_list()
        lines += ["", "PAW-ViT part mIoU (test split): " + (
            "in the table above (`ours part mIoU`)." if measured else
            "not measured: these trainings report no `test.part_mIoU`.")]
    return "\n".join(lines) + "\n"
