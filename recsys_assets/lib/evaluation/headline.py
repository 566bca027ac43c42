"""The headline: one verdict per primary endpoint, in ``reports.headline`` (docs/statistics.md).

Table contract (``sql/ddl/002_headline.sql``), one row per (window_start,
window_end, protocol, endpoint); :data:`HEADLINE_COLUMNS` in table order:

window_start DATE, window_end DATE, window_kind VARCHAR ('day' for a daily
report, 'window' for the pooled rollup), protocol, endpoint (stable id such as
``lm_vs_tfidf/cold_items``), arm, baseline_arm, scope, segment_kind, segment,
metric, k INTEGER, value, baseline_value, abs_lift, rel_lift, ci_low, ci_high,
p_value, p_adjusted (DOUBLE), n_users, n_items (BIGINT), verdict VARCHAR in
:data:`VERDICTS`.
"""

from __future__ import annotations

import os
from datetime import date

import polars as pl

HEADLINE_TABLE = "reports.headline"
"""Where the headline rows live in the warehouse."""

HEADLINE_SCHEMA: dict[str, pl.DataType] = {
    "window_start": pl.Date,
    "window_end": pl.Date,
    "window_kind": pl.String,
    "protocol": pl.String,
    "endpoint": pl.String,
    "arm": pl.String,
    "baseline_arm": pl.String,
    "scope": pl.String,
    "segment_kind": pl.String,
    "segment": pl.String,
    "metric": pl.String,
    "k": pl.Int32,
    "value": pl.Float64,
    "baseline_value": pl.Float64,
    "abs_lift": pl.Float64,
    "rel_lift": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "p_value": pl.Float64,
    "p_adjusted": pl.Float64,
    "n_users": pl.Int64,
    "n_items": pl.Int64,
    "verdict": pl.String,
}
"""Polars dtypes of the headline columns (DuckDB: DATE, VARCHAR, INTEGER, DOUBLE, BIGINT)."""

HEADLINE_COLUMNS: list[str] = list(HEADLINE_SCHEMA)
"""Column names of ``reports.headline`` and of :func:`read_headline`, in order."""

WINDOW_KINDS = ("day", "window")
"""``day``: one evaluated day (window_start = window_end = D); ``window``: the pooled rollup."""

VERDICT_LIFT = "lift"
VERDICT_NONE = "no detectable lift"
VERDICT_HARM = "harm"
VERDICT_TOO_FEW = "too few"
VERDICTS = (VERDICT_LIFT, VERDICT_NONE, VERDICT_HARM, VERDICT_TOO_FEW)
"""Allowed ``verdict`` values (see :func:`verdict`)."""


def empty_headline() -> pl.DataFrame:
    """A headline frame with no rows and the contract's columns."""
    return pl.DataFrame(schema=HEADLINE_SCHEMA)


def read_headline(db_path: str | os.PathLike, window_kind: str = "window", latest: bool = True) -> pl.DataFrame:
    """Rows of ``reports.headline`` of one window kind (the latest window by default).

    Args:
        db_path: the warehouse file (``<lake>/warehouse.duckdb``, local path or fsspec URL).
        window_kind: ``'window'`` (pooled rollups) or ``'day'`` (daily reports).
        latest: only the rows of the latest ``window_end`` (and, for it, the latest
            ``window_start``); ``False`` returns every window.

    Returns a polars frame with :data:`HEADLINE_COLUMNS` (no rows when the table is
    missing or empty), sorted by window, protocol and endpoint. Raises
    ``WarehouseError`` when ``db_path`` holds no warehouse.
    """
    from recsys_assets.lib.evaluation.warehouse import Warehouse, WarehouseError

    if window_kind not in WINDOW_KINDS:
        raise WarehouseError(f"read_headline: window_kind must be one of {WINDOW_KINDS}, got {window_kind!r}.")
    wh = Warehouse(db_path)
    if not wh.exists():
        raise WarehouseError(f"No warehouse at {db_path}: run the pipeline (e.g. `recsys-assets demo`) first.")
    exists = wh.query(
        "SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = 'reports' AND table_name = 'headline'"
    )["n"][0]
    if not exists:
        return empty_headline()
    cols = ", ".join(HEADLINE_COLUMNS)
    sql = f"SELECT {cols} FROM {HEADLINE_TABLE} WHERE window_kind = ?"
    if latest:
        sql += (
            " AND window_end = (SELECT max(window_end) FROM reports.headline WHERE window_kind = ?)"
            " AND window_start = (SELECT max(window_start) FROM reports.headline WHERE window_kind = ?"
            " AND window_end = (SELECT max(window_end) FROM reports.headline WHERE window_kind = ?))"
        )
        params = [window_kind] * 4
    else:
        params = [window_kind]
    sql += " ORDER BY window_end, window_start, protocol, endpoint"
    out = wh.query(sql, params)
    if out.height == 0:
        return empty_headline()
    return out.cast(HEADLINE_SCHEMA).select(HEADLINE_COLUMNS)


def window_bounds(day_or_start: date, end: date | None = None) -> tuple[date, date, str]:
    """(window_start, window_end, window_kind) of a daily report (one day) or a pooled window."""
    if end is None:
        return day_or_start, day_or_start, "day"
    return day_or_start, end, "window"
