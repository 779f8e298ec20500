"""Presenting a transfer matrix: the paper-style Markdown table, a heatmap, and the change since last time.

Input is the long table of ``reid_core.pipelines.transfer`` (one row per train x test cell).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import polars as pl

from reid_core.reports.tables import markdown_table

# Per test protocol, the columns the paper's Table A.5 shows (ATRW: mmAP and single/cross-camera R@1).
PAPER_COLUMNS = {
    "atrw": (("mmAP", "mmAP"), ("rank1_single", "R@1(s)"), ("rank1_cross", "R@1(m)")),
    "default": (("mAP", "mAP"), ("rank1", "R@1")),
}
RERANKED_COLUMNS = (("fused_mAP", "mAP +local"), ("fused_rank1", "R@1 +local"))  # transfer --matcher
HEATMAP_METRICS = (("mAP", "mAP (%)"), ("rank1", "rank-1 (%)"))
CHANGED_METRICS = ("mAP", "rank1")


def _pct(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{100 * value:.1f}"


def paper_table(table: pl.DataFrame) -> str:
    """Rows: training species (model); column groups: test species with its protocol's metrics, in %."""
    tests = list(dict.fromkeys(table["test_species"].to_list()))
    protocol = dict(zip(table["test_species"], table["protocol"], strict=True))
    reranked = tuple(c for c in RERANKED_COLUMNS if c[0] in table.columns and table[c[0]].is_not_null().any())
    columns = [(t, key, f"{t} {label}") for t in tests
               for key, label in (*PAPER_COLUMNS.get(protocol[t], PAPER_COLUMNS["default"]), *reranked)]
    rows = []
    for train in dict.fromkeys(table["train_species"].to_list()):
        cells = {r["test_species"]: r for r in table.filter(pl.col("train_species") == train).iter_rows(named=True)}
        model = next(iter(cells.values()))["model"]
        rows.append({"Training data": train, "Model": model,
                     **{header: _pct(cells[t][key]) if t in cells else "-" for t, key, header in columns}})
    protocols = ", ".join(f"{t}: {protocol[t]}" for t in tests)
    return (markdown_table(rows, right=[header for *_, header in columns])
            + f"\n\nValues in %; each test set scored with its own protocol ({protocols}).\n")


def changes(table: pl.DataFrame, previous_metrics: Mapping[str, float] | None,
            previous_params: Mapping[str, str] | None = None) -> pl.DataFrame | None:
    """Per cell: current and previous mAP / rank-1 and their difference; None without a previous run.

    A cell the previous run lacked has null previous values; ``model_changed`` says whether the row's
    model differs from the previous run's (a change of model versus a change of data or code).
    """
    if previous_metrics is None:
        return None
    rows = []
    for r in table.iter_rows(named=True):
        row = {"train_species": r["train_species"], "test_species": r["test_species"]}
        for m in CHANGED_METRICS:
            before = previous_metrics.get(f"transfer.{r['train_species']}.{r['test_species']}.{m}")
            row[m] = r[m]
            row[f"previous_{m}"] = before
            row[f"delta_{m}"] = None if before is None or r[m] is None else r[m] - before
        before_model = (previous_params or {}).get(f"model.{r['train_species']}")
        row["model_changed"] = None if before_model is None else before_model != r["model_uri"]
        rows.append(row)
    schema = {"train_species": pl.String, "test_species": pl.String,
              **{f"{p}{m}": pl.Float64 for m in CHANGED_METRICS for p in ("", "previous_", "delta_")},
              "model_changed": pl.Boolean}
    return pl.DataFrame(rows, schema=schema)


def format_changes(delta: pl.DataFrame) -> str:
    """The change per cell since the previous run, in percentage points ("new": a cell it lacked)."""

    def signed(value: float | None) -> str:
        return "new" if value is None else f"{100 * value:+.1f}"

    rows = [{"train": r["train_species"], "test": r["test_species"], "mAP": _pct(r["mAP"]),
             "mAP change": signed(r["delta_mAP"]), "rank-1": _pct(r["rank1"]),
             "rank-1 change": signed(r["delta_rank1"]),
             "model changed": "?" if r["model_changed"] is None else ("yes" if r["model_changed"] else "no")}
            for r in delta.iter_rows(named=True)]
    table = markdown_table(rows, right=("mAP", "mAP change", "rank-1", "rank-1 change"))
    return table + "\n\nValues and changes in percentage points.\n"


def heatmap(table: pl.DataFrame, path: Path, title: str) -> None:
    """One panel per metric, train species down, test species across, values annotated."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a cluster node or in CI
    import matplotlib.pyplot as plt
    import numpy as np

    trains = list(dict.fromkeys(table["train_species"].to_list()))
    tests = list(dict.fromkeys(table["test_species"].to_list()))
    size = (len(HEATMAP_METRICS) * (1.8 + 1.0 * len(tests)), 1.6 + 0.7 * len(trains))
    fig, axes = plt.subplots(1, len(HEATMAP_METRICS), figsize=size, squeeze=False)
    for ax, (key, label) in zip(axes[0], HEATMAP_METRICS, strict=True):
        grid = np.full((len(trains), len(tests)), np.nan)
        for r in table.iter_rows(named=True):
            if r[key] is not None:
                grid[trains.index(r["train_species"]), tests.index(r["test_species"])] = r[key]
        ax.imshow(grid, vmin=0.0, vmax=1.0, cmap="viridis")
        for (i, j), value in np.ndenumerate(grid):
            if not np.isnan(value):
                ax.text(j, i, f"{100 * value:.1f}", ha="center", va="center",
                        color="white" if value < 0.6 else "black", fontsize=9)
        ax.set_xticks(range(len(tests)), tests)
        ax.set_yticks(range(len(trains)), trains)
        ax.set_xlabel("test species")
        ax.set_ylabel("trained on")
        ax.set_title(label)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(table: pl.DataFrame, delta: pl.DataFrame | None, out_dir: Path, method: str) -> str:
    """Write transfer_matrix.{parquet,csv,md}, transfer_heatmap.png (and transfer_changes.md); returns the
    Markdown table."""
    out_dir.mkdir(parents=True, exist_ok=True)
    table.write_parquet(out_dir / "transfer_matrix.parquet")
    table.write_csv(out_dir / "transfer_matrix.csv")
    markdown = paper_table(table)
    (out_dir / "transfer_matrix.md").write_text(markdown)
    heatmap(table, out_dir / "transfer_heatmap.png", f"{method}: cross-species transfer")
    if delta is not None:
        (out_dir / "transfer_changes.md").write_text(format_changes(delta))
    return markdown
