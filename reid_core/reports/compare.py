"""Presenting a method comparison (AER Table 2): per-seed statistics, the paper-style table, a bar chart.

Input is the per-run table of ``reid_core.pipelines.compare`` (one row per arm x species x seed, with its
``method``, ``protocol`` and ``test.*`` metrics; an arm is a method, or a named variant of one, and a table
without an ``arm`` column is read as one arm per method); the summary is long: arm, method, species,
protocol, metric, n, mean, sd and the 95% t-interval half-width over the seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from reid_core.reports.tables import markdown_table

# Per protocol, the (metric, label) columns the table shows per species; the ATRW ones only when present.
RERANKED_METRICS = (("fused.mAP", "mAP +local"), ("fused.rank1", "R@1 +local"))  # compare --matcher
TABLE_METRICS = {
    "atrw": (("mAP", "mAP"), ("rank1", "R@1"), ("mmAP", "mmAP"), ("rank1_single", "R@1(s)"),
             ("rank1_cross", "R@1(c)"), *RERANKED_METRICS),
    "default": (("mAP", "mAP"), ("rank1", "R@1"), *RERANKED_METRICS),
}
CHART_METRICS = (("mAP", "mAP"), ("rank1", "rank-1"))
SUMMARY_SCHEMA = {"arm": pl.String, "method": pl.String, "species": pl.String, "protocol": pl.String, "metric": pl.String,
                  "n": pl.Int64, "mean": pl.Float64, "sd": pl.Float64, "ci95": pl.Float64}


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
    """Per arm x species x ``test.*`` metric: n, mean, sd, ci95 over the seeds."""
    metrics = [c.removeprefix("test.") for c in runs.columns if c.startswith("test.")]
    arm = "arm" if "arm" in runs.columns else "method"
    rows = []
    for (name, species), group in runs.group_by([arm, "species"], maintain_order=True):
        for metric in metrics:
            values = [v for v in group[f"test.{metric}"].to_list() if v is not None]
            if not values:
                continue
            mean, sd, half = ci95(values)
            rows.append({"arm": name, "method": group["method"][0], "species": species,
                         "protocol": group["protocol"][0], "metric": metric, "n": len(values), "mean": mean,
                         "sd": sd, "ci95": half})
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
    """AER Table 2's layout: one row per arm (method), per species its metrics as ``mean ± ci95`` (%)."""
    columns = table_columns(summary)
    cells = {(r["arm"], r["species"], r["metric"]): r for r in summary.iter_rows(named=True)}
    rows = []
    for arm in dict.fromkeys(summary["arm"].to_list()):
        row = {"Method": arm}
        for species, key, header in columns:
            r = cells.get((arm, species, key))
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
    """One panel per species; per arm (method) a bar per metric (mAP, rank-1) with 95% CI error bars."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a cluster node or in CI
    import matplotlib.pyplot as plt
    import numpy as np

    methods = list(dict.fromkeys(summary["arm"].to_list()))
    species = list(dict.fromkeys(summary["species"].to_list()))
    cells = {(r["arm"], r["species"], r["metric"]): r for r in summary.iter_rows(named=True)}
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
