"""The answer, first: the headline endpoints as a short table, one plain sentence per protocol, CSV/JSON.

Input is a frame with the columns of ``reports.headline``
(:data:`recsys_assets.lib.evaluation.headline.HEADLINE_COLUMNS`, one row per
window x protocol x primary endpoint with its verdict), as returned by
:func:`~recsys_assets.lib.evaluation.headline.read_headline`. Everything here
only presents those rows; the statistics behind them live in ``stats.py`` /
``headline.py``. Used by the CLI (terminal, ``--format csv|json``), the HTML
report's answer card and the Dagster UI metadata of the report assets.
"""

from __future__ import annotations

import json
import math
from datetime import date
from typing import Any

import polars as pl

from recsys_assets.lib.evaluation.headline import (
    HEADLINE_COLUMNS,
    VERDICT_HARM,
    VERDICT_LIFT,
    VERDICT_NONE,
    VERDICT_TOO_FEW,
)

PROTOCOL_WORDS = {
    "item_holdout": "20% of items hidden from every model until day D",
    "temporal": "natural new items and new users",
}
"""How each protocol is described in the plain-words sentences (others are named as they are)."""

VERDICT_MARKS = {VERDICT_LIFT: "▲", VERDICT_HARM: "▼", VERDICT_NONE: "·", VERDICT_TOO_FEW: "?"}
"""One-character marks of the verdicts in tables."""

TABLE_COLUMNS = ["protocol", "endpoint", "arm vs baseline", "metric", "value", "baseline", "abs lift", "95% CI", "rel", "p adj", "users", "items", "verdict"]
"""Columns of :func:`headline_display` (terminal table, markdown and HTML answer card)."""


# --- formatting ----------------------------------------------------------------------------


def finite_or_none(value: Any) -> float | None:
    """``value`` as a float, or None when it is missing, not a number, NaN or infinite."""
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) or math.isinf(f) else f


def fmt_value(value: Any, digits: int = 3) -> str:
    f = finite_or_none(value)
    return "" if f is None else f"{f:.{digits}f}"


def fmt_signed(value: Any, digits: int = 3) -> str:
    f = finite_or_none(value)
    return "" if f is None else f"{f:+.{digits}f}"


def fmt_pct(value: Any) -> str:
    f = finite_or_none(value)
    return "" if f is None else f"{f * 100:+.0f}%"


def fmt_p(value: Any) -> str:
    f = finite_or_none(value)
    if f is None:
        return ""
    return "<0.001" if f < 0.001 else f"{f:.3f}"


def fmt_ci(lo: Any, hi: Any, digits: int = 3) -> str:
    lo_f, hi_f = finite_or_none(lo), finite_or_none(hi)
    if lo_f is None or hi_f is None:
        return ""
    return f"[{lo_f:+.{digits}f}, {hi_f:+.{digits}f}]"


def fmt_int(value: Any) -> str:
    return "" if value is None else f"{int(value):,}"


def cell_words(endpoint: str) -> str:
    """``lm_vs_tfidf/cold_items`` -> ``cold items`` (the cell part of a stable endpoint id)."""
    cell = endpoint.split("/", 1)[1] if "/" in endpoint else endpoint
    return cell.replace("_", " ")


def metric_words(row: dict) -> str:
    return f"{row['metric']}@{row['k']}" if row.get("k") is not None else str(row["metric"])


def window_words(df: pl.DataFrame) -> str:
    """``1998-03-27 to 1998-04-16`` (or one day) of the headline rows; empty frame -> ''."""
    if df.is_empty():
        return ""
    start, end = df["window_start"].min(), df["window_end"].max()
    return f"{start}" if start == end else f"{start} to {end}"


def user_unit(df: pl.DataFrame) -> str:
    """What ``n_users`` counts: ``user-days`` in pooled windows (a user evaluated on two days counts twice), else ``users``."""
    return "user-days" if not df.is_empty() and (df["window_kind"] == "window").all() else "users"


def header(column: str, df: pl.DataFrame) -> str:
    """The shown name of a :data:`TABLE_COLUMNS` column (``users`` says its unit)."""
    return user_unit(df) if column == "users" else column


def _ordered(df: pl.DataFrame) -> pl.DataFrame:
    return df.sort("protocol", "endpoint", maintain_order=True) if not df.is_empty() else df


# --- the short table -----------------------------------------------------------------------


def headline_display(df: pl.DataFrame) -> pl.DataFrame:
    """The headline rows as strings in :data:`TABLE_COLUMNS` (what every presentation shows)."""
    rows = []
    for r in _ordered(df).iter_rows(named=True):
        rows.append(
            {
                "protocol": r["protocol"],
                "endpoint": r["endpoint"],
                "arm vs baseline": f"{r['arm']} vs {r['baseline_arm']}",
                "metric": metric_words(r),
                "value": fmt_value(r["value"]),
                "baseline": fmt_value(r["baseline_value"]),
                "abs lift": fmt_signed(r["abs_lift"]),
                "95% CI": fmt_ci(r["ci_low"], r["ci_high"]),
                "rel": fmt_pct(r["rel_lift"]),
                "p adj": fmt_p(r["p_adjusted"]),
                "users": fmt_int(r["n_users"]),
                "items": fmt_int(r["n_items"]),
                "verdict": f"{VERDICT_MARKS.get(r['verdict'], '')} {r['verdict']}".strip(),
            }
        )
    return pl.DataFrame(rows, schema={c: pl.String for c in TABLE_COLUMNS})


def metrics_words(df: pl.DataFrame) -> str:
    """``recall@20`` (or ``recall@20, ndcg@10``): the metrics of the headline rows."""
    seen = dict.fromkeys(metric_words(r) for r in df.select("metric", "k").iter_rows(named=True))
    return ", ".join(seen)


def format_headline_table(df: pl.DataFrame) -> str:
    """The short terminal table of the primary endpoints (``(no headline rows)`` when empty).

    Narrower than :func:`headline_display`: no arm names (the sentences name them), and
    no metric column when every row has the same metric (the caller says which).
    """
    if df.is_empty():
        return "(no headline rows)"
    columns = [c for c in TABLE_COLUMNS if c != "arm vs baseline" and (c != "metric" or "," in metrics_words(df))]
    shown = headline_display(df).select(columns)
    widths = [max(len(c), *(len(v) for v in shown[c].to_list())) for c in columns]
    right = {"value", "baseline", "abs lift", "95% CI", "rel", "p adj", "users", "items"}

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if name in right else c.ljust(w) for c, w, name in zip(cells, widths, columns)).rstrip()

    widths = [max(w, len(header(c, df))) for w, c in zip(widths, columns)]
    out = [line([header(c, df) for c in columns]), line(["-" * w for w in widths])]
    out += [line(list(row)) for row in shown.iter_rows()]
    return "\n".join(out)


def markdown_headline(df: pl.DataFrame) -> str:
    """The same table in markdown (Dagster UI metadata)."""
    if df.is_empty():
        return "_no headline rows yet_"
    shown = headline_display(df)
    esc = lambda s: s.replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(header(c, df) for c in TABLE_COLUMNS) + " |", "|" + "|".join("---" for _ in TABLE_COLUMNS) + "|"]
    lines += ["| " + " | ".join(esc(v) for v in row) + " |" for row in shown.iter_rows()]
    return "\n".join(lines)


# --- the sentences -------------------------------------------------------------------------


def _measured(r: dict) -> str:
    ci = fmt_ci(r["ci_low"], r["ci_high"])
    return f"{fmt_signed(r['abs_lift'])}" + (f", 95% CI {ci}" if ci else "")


def _arm_phrase(arm: str, rows: list[dict], metric: str) -> str:
    """What ``arm`` did against each of its baselines in one cell, verdicts grouped: plain words."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["verdict"], []).append(r)
    phrases = []
    for verdict, rs in groups.items():
        bases = [f"{r['baseline_arm']} ({_measured(r)})" for r in rs]
        if verdict == VERDICT_LIFT:
            phrases.append(f"lifts {metric} over " + " and over ".join(bases))
        elif verdict == VERDICT_HARM:
            phrases.append(f"lowers {metric} against " + " and against ".join(bases))
        elif verdict == VERDICT_NONE:
            phrases.append("shows no detectable lift over " + " or over ".join(bases))
        elif all(not r["n_users"] for r in rs):
            phrases.append("was not evaluated against " + " or ".join(r["baseline_arm"] for r in rs))
        else:
            phrases.append("has too few users to be judged against " + " or ".join(r["baseline_arm"] for r in rs))
    return f"{arm} " + ", and ".join(phrases)


def protocol_sentence(df: pl.DataFrame, protocol: str) -> str:
    """One plain-words sentence for the headline rows of ``protocol``."""
    rows = [r for r in _ordered(df).iter_rows(named=True) if r["protocol"] == protocol]
    if not rows:
        return f"{protocol}: no headline rows."
    parts: list[str] = []
    cells: dict[str, list[dict]] = {}
    for r in rows:
        cells.setdefault(cell_words(r["endpoint"]), []).append(r)
    about = PROTOCOL_WORDS.get(protocol)
    head = f"{protocol}" + (f" ({about})" if about else "")
    window = window_words(pl.DataFrame(rows))
    if not any(r["n_users"] for r in rows):
        return f"{head}, {window}: no primary endpoint has evaluated users (its arms did not run, or no user fell in its cells)."
    for cell, cell_rows in cells.items():
        n_users = max((r["n_users"] or 0) for r in cell_rows)
        n_items = max((r["n_items"] or 0) for r in cell_rows)
        if not n_users:
            parts.append(f"on {cell}, nothing measurable (no users, or no more than K items to rank)")
            continue
        who = f"{n_users:,} {user_unit(df)}" + (f", {n_items:,} items" if n_items else "")
        by_arm: dict[str, list[dict]] = {}
        for r in sorted(cell_rows, key=lambda r: (not r["arm"].startswith("ranker_"), r["arm"], r["baseline_arm"])):
            by_arm.setdefault(r["arm"], []).append(r)
        arms = "; ".join(_arm_phrase(arm, rs, metrics_words(pl.DataFrame(rs))) for arm, rs in by_arm.items())
        parts.append(f"on {cell} ({who}), {arms}")
    return f"{head}, {window}, {metrics_words(pl.DataFrame(rows))}: " + "; ".join(parts) + "."


def answer_sentences(df: pl.DataFrame) -> list[str]:
    """One sentence per protocol, in protocol order."""
    if df.is_empty():
        return []
    return [protocol_sentence(df, p) for p in sorted(df["protocol"].unique().to_list())]


def caveats(df: pl.DataFrame) -> list[str]:
    """Plain-words warnings a reader needs to read the verdicts right (empty when none apply)."""
    out = []
    odd = [
        f"{r['protocol']}/{r['endpoint']}"
        for r in _ordered(df).iter_rows(named=True)
        if r["verdict"] == VERDICT_NONE and r["ci_low"] is not None and r["ci_high"] is not None and (r["ci_low"] > 0 or r["ci_high"] < 0)
    ]
    if odd:
        out.append(
            "The 95% CIs are per endpoint; a verdict needs the Holm-adjusted p < 0.05 over all primary endpoints of its "
            f"protocol, so an interval that excludes 0 can still read 'no detectable lift' ({', '.join(odd)})."
        )
    return out


def verdict_counts(df: pl.DataFrame) -> dict[str, int]:
    """How many endpoints got each verdict (keys in the order lift, no detectable lift, harm, too few)."""
    counts = dict.fromkeys((VERDICT_LIFT, VERDICT_NONE, VERDICT_HARM, VERDICT_TOO_FEW), 0)
    for v in df["verdict"].to_list() if not df.is_empty() else []:
        counts[v] = counts.get(v, 0) + 1
    return counts


def cost_sentence(encoder_cost: pl.DataFrame | None) -> str:
    """What encoding cost over the window: per encoder, texts encoded, seconds and texts/s ('' without rows)."""
    if encoder_cost is None or encoder_cost.is_empty() or "encoder" not in encoder_cost.columns:
        return ""
    agg = (
        encoder_cost.group_by("encoder")
        .agg(
            pl.col("texts_encoded").sum().alias("texts"),
            pl.col("seconds").sum().alias("seconds"),
            pl.col("params").max().alias("params"),
            pl.col("device").last().alias("device"),
        )
        .sort("encoder")
    )
    parts = []
    for r in agg.iter_rows(named=True):
        texts, secs = int(r["texts"] or 0), float(r["seconds"] or 0.0)
        rate = f", {texts / secs:,.0f} texts/s" if secs > 0 and texts else ""
        params = f" ({r['params'] / 1e6:.1f}M parameters)" if r["params"] else ""
        parts.append(f"{r['encoder']}{params}: {texts:,} texts encoded in {secs:.1f} s on {r['device']}{rate}")
    return "Encoding cost over the window: " + "; ".join(parts) + "."


# --- machine-readable ----------------------------------------------------------------------


def to_csv(df: pl.DataFrame) -> str:
    """CSV of the rows (header included; dates ISO-8601)."""
    return df.write_csv()


def _json_default(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def to_json(df: pl.DataFrame) -> str:
    """A JSON list of row objects (dates ISO-8601, NaN as null)."""
    rows = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()} for r in df.iter_rows(named=True)]
    return json.dumps(rows, default=_json_default, indent=1, allow_nan=False)


def headline_numbers(df: pl.DataFrame) -> dict[str, float]:
    """Numeric values per endpoint (abs lift, CI bounds) keyed ``<protocol>/<endpoint>/<field>``.

    The Dagster UI plots numeric materialization metadata across partitions.
    """
    out: dict[str, float] = {}
    for r in _ordered(df).iter_rows(named=True):
        for field in ("abs_lift", "ci_low", "ci_high"):
            f = finite_or_none(r[field])
            if f is not None:
                out[f"{r['protocol']}/{r['endpoint']}/{field}"] = f
    return out


def check_columns(df: pl.DataFrame) -> pl.DataFrame:
    """The frame restricted to :data:`HEADLINE_COLUMNS`; a missing column raises naming it."""
    missing = [c for c in HEADLINE_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"headline frame lacks columns {missing} (expected reports.headline's {HEADLINE_COLUMNS})")
    return df.select(HEADLINE_COLUMNS)


def window_headline(db_path, start: date, end: date) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The pooled headline rows of the window ending ``end`` and the daily headline rows of [start, end].

    Reads ``reports.headline`` through :func:`~recsys_assets.lib.evaluation.headline.read_headline`;
    both frames are empty when the table has no rows for them.
    """
    from recsys_assets.lib.evaluation.headline import read_headline

    win = read_headline(db_path, "window", latest=False).filter(pl.col("window_end") == end)
    if win.height:
        win = win.filter(pl.col("window_start") == win["window_start"].max())
    days = read_headline(db_path, "day", latest=False).filter(pl.col("window_end").is_between(start, end))
    return win, days


def headline_texts(df: pl.DataFrame) -> dict[str, str]:
    """One short line per endpoint, keyed ``<protocol>/<endpoint>`` (shown inline in the Dagster UI)."""
    out: dict[str, str] = {}
    for r in _ordered(df).iter_rows(named=True):
        if r["n_users"]:
            who = f"{fmt_int(r['n_users'])} {user_unit(df)}" + (f", {fmt_int(r['n_items'])} items" if r["n_items"] else "")
        else:
            who = "no evaluated cell"
        measured = " ".join(x for x in (metric_words(r), fmt_signed(r["abs_lift"]), fmt_ci(r["ci_low"], r["ci_high"])) if x)
        out[f"{r['protocol']}/{r['endpoint']}"] = (
            f"{VERDICT_MARKS.get(r['verdict'], '')} {r['verdict']}: {r['arm']} vs {r['baseline_arm']}, {measured} ({who})"
        )
    return out
