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

import math
import os
from dataclasses import dataclass, replace
from datetime import date

import polars as pl

from recsys_assets.lib.ranking.arm_spec import headline_lm

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


LM = "{lm}"
"""Placeholder in an endpoint's arm names: the headline LM encoder (the first LM one configured)."""


@dataclass(frozen=True)
class PrimaryEndpoint:
    """One confirmatory comparison (per protocol): the cells Holm corrects and a verdict is given for."""

    name: str
    """Stable id, e.g. ``lm_vs_tfidf/cold_items`` (the ``endpoint`` column)."""
    arm: str
    """Treatment arm; ``{lm}`` stands for the headline LM encoder."""
    baseline_arm: str
    """Baseline arm; ``{lm}`` as above."""
    scope: str
    """``full`` or ``cold_only``."""
    segment_kind: str
    """``all``, ``user`` or ``item``."""
    segment: str
    """Segment of that kind, e.g. ``new``."""
    metric: str = "recall"
    """Per-user metric."""
    k: int = 20
    """Cut-off."""


DEFAULT_PRIMARY_ENDPOINTS: tuple[PrimaryEndpoint, ...] = (
    PrimaryEndpoint("lm_vs_tfidf/cold_items", "ranker_{lm}", "ranker_tfidf", "cold_only", "all", "all"),
    PrimaryEndpoint("lm_vs_no_text/cold_items", "ranker_{lm}", "ranker_no_text", "cold_only", "all", "all"),
    PrimaryEndpoint("lm_vs_tfidf/new_users", "ranker_{lm}", "ranker_tfidf", "full", "user", "new"),
    PrimaryEndpoint("lm_vs_no_text/new_users", "ranker_{lm}", "ranker_no_text", "full", "user", "new"),
    PrimaryEndpoint("content_lm_vs_tfidf/cold_items", "content_{lm}", "content_tfidf", "cold_only", "all", "all"),
    PrimaryEndpoint("content_lm_vs_tfidf/new_users", "content_{lm}", "content_tfidf", "full", "user", "new"),
)
"""Per protocol: the LM ranker vs TF-IDF and vs no text, and the LM content arm vs TF-IDF, on the
cold-item cell (``cold_only`` scope, all users) and the new-user cell, recall@20."""


def resolve_endpoints(endpoints: tuple[PrimaryEndpoint, ...], comparisons: list[tuple[str, str]]) -> list[PrimaryEndpoint]:
    """Endpoints with ``{lm}`` replaced by the headline LM: the first LM whose arm is compared.

    ``comparisons`` lists (arm, baseline) pairs in configured encoder order; endpoints whose
    comparison is absent stay in the list with ``{lm}`` resolved when possible (their verdict
    is then ``too few``).
    """
    lm = headline_lm([arm for arm, _ in comparisons])
    out = []
    for e in endpoints:
        if lm is not None:
            e = replace(e, arm=e.arm.replace(LM, lm), baseline_arm=e.baseline_arm.replace(LM, lm))
        out.append(e)
    return out


def verdict(abs_lift: float | None, p_adjusted: float | None, flag: str | None, alpha: float = 0.05) -> str:
    """``too few`` (flagged, untested or missing cell), else ``lift`` / ``harm`` when Holm-adjusted
    p < alpha (by the sign of the lift), else ``no detectable lift``."""
    if flag or p_adjusted is None or abs_lift is None or (isinstance(p_adjusted, float) and math.isnan(p_adjusted)):
        return VERDICT_TOO_FEW
    if p_adjusted < alpha:
        return VERDICT_LIFT if abs_lift > 0 else VERDICT_HARM
    return VERDICT_NONE


def headline_rows(
    lift: pl.DataFrame,
    window_start: date,
    window_end: date,
    window_kind: str,
    protocols: list[str],
    comparisons: list[tuple[str, str]],
    endpoints: tuple[PrimaryEndpoint, ...] = DEFAULT_PRIMARY_ENDPOINTS,
    alpha: float = 0.05,
) -> pl.DataFrame:
    """One row per protocol x primary endpoint from a report's lift rows (``lift.LIFT_COLUMNS``).

    An endpoint without a lift row (arm not run, cell empty or dropped as trivial) still
    gets a row: NULL statistics and verdict ``too few``.
    """
    resolved = resolve_endpoints(endpoints, comparisons)
    rows = []
    index = {}
    if lift.height:
        for r in lift.iter_rows(named=True):
            index[(r["protocol"], r["arm"], r["baseline_arm"], r["scope"], r["segment_kind"], r["segment"], r["metric"], r["k"])] = r
    for protocol in protocols:
        for e in resolved:
            r = index.get((protocol, e.arm, e.baseline_arm, e.scope, e.segment_kind, e.segment, e.metric, e.k), {})
            row = {
                "window_start": window_start, "window_end": window_end, "window_kind": window_kind, "protocol": protocol,
                "endpoint": e.name, "arm": e.arm, "baseline_arm": e.baseline_arm, "scope": e.scope,
                "segment_kind": e.segment_kind, "segment": e.segment, "metric": e.metric, "k": e.k,
            }
            for c in ("value", "baseline_value", "abs_lift", "rel_lift", "ci_low", "ci_high", "p_value", "p_adjusted", "n_users", "n_items"):
                v = r.get(c)
                row[c] = None if v is None or (isinstance(v, float) and math.isnan(v)) else v
            row["verdict"] = verdict(row["abs_lift"], row["p_adjusted"], r.get("flag") if r else "missing", alpha)
            rows.append(row)
    if not rows:
        return empty_headline()
    return pl.DataFrame(rows, schema=HEADLINE_SCHEMA).sort("protocol", "endpoint")


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
