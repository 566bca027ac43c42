"""Is the treatment model worth measuring? Every ranker arm against the best trivial baseline.

The text lift is measured inside a LightGBM ranker; that number only answers a team's
question if the ranker is one they would ship, i.e. at least as good as the baselines it is
given as inputs (docs/protocol.md, "The treatment model"). This check runs over the same
pooled user-days and with the same statistics as the rollup (``lift.lift_rows``: user-day
clusters, items resampled where they are shared), on the cell that says whether a model is
usable at all: every user, full catalogue, recall@20 and NDCG@20, per protocol.

One row per (protocol, ranker arm, metric, K), in ``reports.ranker_check``:
``best_baseline`` is whichever of ``popularity`` / ``als`` has the higher value in the cell;
``abs_lift`` and its CI are the ranker minus that baseline; ``status`` is

- ``above``: CI above 0 (significantly better than the best baseline);
- ``reaches``: lift >= 0 (not significantly);
- ``short``: lift < 0, CI covers 0 (not shown to be worse, not shown to be as good);
- ``below``: CI below 0 (significantly worse: the report says so loudly);
- ``too few``: flagged cell (too few users) or a baseline missing.

Not a confirmatory test: no multiplicity correction, no claim; a quality gate with its CI.
"""

from __future__ import annotations

import math
from datetime import date

import polars as pl

from recsys_assets.lib.evaluation.lift import LiftConfig, lift_rows
from recsys_assets.lib.ranking.arm_spec import parse_arm

CHECK_BASELINES = ("popularity", "als")
"""The trivial baselines every ranker must reach (both are inputs of the ranker)."""
CHECK_METRICS = (("recall", 20), ("ndcg", 20))
"""(metric, K) of the check: how many of tomorrow's items, and how high."""
CHECK_SCOPE = "full"
"""The scope of the check: every ranker over the whole catalogue, all users."""

STATUS_ABOVE, STATUS_REACHES, STATUS_SHORT, STATUS_BELOW, STATUS_TOO_FEW = "above", "reaches", "short", "below", "too few"
STATUSES = (STATUS_ABOVE, STATUS_REACHES, STATUS_SHORT, STATUS_BELOW, STATUS_TOO_FEW)

RANKER_CHECK_SCHEMA: dict[str, pl.DataType] = {
    "window_start": pl.Date,
    "window_end": pl.Date,
    "protocol": pl.String,
    "arm": pl.String,
    "metric": pl.String,
    "k": pl.Int32,
    "value": pl.Float64,
    "best_baseline": pl.String,
    "baseline_value": pl.Float64,
    "abs_lift": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "n_users": pl.Int64,
    "status": pl.String,
}
"""Columns of ``reports.ranker_check`` (``sql/ddl/005_ranker_check.sql``), in order."""


def _status(row: dict) -> str:
    lift, lo, hi = row.get("abs_lift"), row.get("ci_low"), row.get("ci_high")
    if row.get("flag") or lift is None or (isinstance(lift, float) and math.isnan(lift)):
        return STATUS_TOO_FEW
    if lo is not None and not math.isnan(lo) and lo > 0:
        return STATUS_ABOVE
    if lift >= 0:
        return STATUS_REACHES
    if hi is not None and not math.isnan(hi) and hi < 0:
        return STATUS_BELOW
    return STATUS_SHORT


def ranker_check_rows(per_user: pl.DataFrame, cfg: LiftConfig, window_start: date, window_end: date, per_pair: pl.DataFrame | None = None) -> pl.DataFrame:
    """The check over pooled per-user rows (``evaluate.PER_USER_SCHEMA``, ``cluster_id`` for user-days).

    Rankers whose baselines were not served (an arm subset) get ``too few`` rows rather than
    none, so a missing comparison is visible.
    """
    if per_user.height == 0:
        return pl.DataFrame(schema=RANKER_CHECK_SCHEMA)
    arms = per_user["arm"].unique().sort().to_list()
    rankers = [a for a in arms if parse_arm(a).is_ranker]
    baselines = [b for b in CHECK_BASELINES if b in arms]
    metric_filter = pl.any_horizontal([(pl.col("metric") == m) & (pl.col("k") == k) for m, k in CHECK_METRICS])
    cell = per_user.filter((pl.col("scope") == CHECK_SCOPE) & (pl.col("segment_kind") == "all") & metric_filter)
    comps = [(a, b) for a in rankers for b in baselines]
    lifts = lift_rows(cell, comps, cfg, kinds=("all",), per_pair=per_pair) if comps else pl.DataFrame()
    index = {(r["protocol"], r["arm"], r["baseline_arm"], r["metric"], r["k"]): r for r in lifts.iter_rows(named=True)} if lifts.height else {}
    rows = []
    for protocol in cell["protocol"].unique().sort().to_list():
        for arm in rankers:
            for metric, k in CHECK_METRICS:
                candidates = [index[key] for b in baselines if (key := (protocol, arm, b, metric, k)) in index]
                best = max(candidates, key=lambda r: r["baseline_value"], default={})
                row = {
                    "window_start": window_start, "window_end": window_end, "protocol": protocol, "arm": arm,
                    "metric": metric, "k": k, "value": best.get("value"), "best_baseline": best.get("baseline_arm"),
                    "baseline_value": best.get("baseline_value"), "abs_lift": best.get("abs_lift"),
                    "ci_low": best.get("ci_low"), "ci_high": best.get("ci_high"), "n_users": best.get("n_users"),
                }
                row["status"] = _status({**best, **row}) if len(candidates) == len(CHECK_BASELINES) else STATUS_TOO_FEW
                rows.append(row)
    return pl.DataFrame(rows, schema=RANKER_CHECK_SCHEMA, orient="row") if rows else pl.DataFrame(schema=RANKER_CHECK_SCHEMA)


def _metric_words(metric: str, k: int) -> str:
    return f"{'NDCG' if metric == 'ndcg' else metric}@{k}"


def ranker_check_warnings(check: pl.DataFrame) -> list[str]:
    """One ``WARNING:`` line per ranker cell significantly below its best baseline, worst first."""
    below = check.filter(pl.col("status") == STATUS_BELOW).sort("abs_lift") if check.height else check
    return [
        f"WARNING: {r['arm']} is significantly below {r['best_baseline']} on {_metric_words(r['metric'], r['k'])} "
        f"({r['protocol']}): {r['value']:.3f} vs {r['baseline_value']:.3f}, lift {r['abs_lift']:+.3f} "
        f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]. Lifts measured inside this ranker are measured inside a model "
        f"that loses to a trivial baseline."
        for r in below.iter_rows(named=True)
    ]


def ranker_check_notes(check: pl.DataFrame) -> list[str]:
    """The rest of what the check says: one line for cells short of the best baseline (not
    significantly), then the summary line."""
    if check.height == 0:
        return []
    lines = []
    short = check.filter(pl.col("status") == STATUS_SHORT)
    if short.height:
        cells = ", ".join(f"{r['arm']} {_metric_words(r['metric'], r['k'])} {r['protocol']} {r['abs_lift']:+.3f}" for r in short.iter_rows(named=True))
        lines.append(f"Short of the best baseline, not significantly: {cells}.")
    counts = {s: check.filter(pl.col("status") == s).height for s in STATUSES}
    n_ok = counts[STATUS_ABOVE] + counts[STATUS_REACHES]
    verdict = "every ranker reaches the best of popularity and ALS" if n_ok == check.height else f"{check.height - n_ok} of {check.height} ranker cells do NOT reach the best of popularity and ALS"
    lines.append(
        f"Treatment check (all users, full catalogue, recall@20 and NDCG@20 vs the best of popularity/ALS): {verdict} "
        f"({counts[STATUS_ABOVE]} significantly above, {counts[STATUS_REACHES]} reach, {counts[STATUS_SHORT]} short, "
        f"{counts[STATUS_BELOW]} significantly below, {counts[STATUS_TOO_FEW]} too few)."
    )
    return lines
