"""Small markdown rendering for Dagster UI metadata (no extra dependency)."""

from __future__ import annotations

import polars as pl


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v).replace("|", "\\|")


def frame_to_markdown(df: pl.DataFrame, max_rows: int = 50) -> str:
    """A markdown table of the first ``max_rows`` rows (and a line saying how many were left out)."""
    if df.height == 0:
        return "_no rows_"
    head = df.head(max_rows)
    lines = ["| " + " | ".join(head.columns) + " |", "|" + "---|" * len(head.columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in head.iter_rows()]
    if df.height > max_rows:
        lines.append(f"\n_{df.height - max_rows} more rows not shown_")
    return "\n".join(lines)
