"""The console summary of a row stage's report (segment, part masks): one table row and the lines after it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from reid_core.reports.tables import markdown_table


def rounded(value: float | None, digits: int = 2) -> Any:
    return "-" if value is None else round(value, digits)


def stage_report_text(report, extra_columns: Mapping[str, Any] | None = None,
                      extra_lines: Sequence[str] = ()) -> str:
    """``report``: a ``row_stage.StageReport`` (or a stage's subclass). A stage adds its own columns
    (after the speed) and lines (after the statuses)."""
    row = {"rows": report.rows, "selected": report.selected, "skipped (done)": report.skipped,
           "to process": report.to_process}
    if not report.dry_run:
        row |= {"processed": report.processed, "failed": report.failed, "images/s": rounded(report.images_per_s),
                "images/s after 1st batch": rounded(report.images_per_s_after_first_batch),
                "start-up s": rounded(report.ray_init_s + (report.first_batch_s or 0)), **(extra_columns or {})}
    lines = [markdown_table([row])]
    if report.statuses:
        lines.append("statuses: " + ", ".join(f"{k} {v}" for k, v in report.statuses.items()))
    lines += list(extra_lines)
    lines += [f"failed {image_id}: {error}" for image_id, error in report.failures]
    lines += [f"note: {n}" for n in report.notes]
    lines.append(("would write " if report.dry_run else "wrote ") + f"{report.output} and {report.manifest_out}")
    return "\n".join(lines)
