"""From per-user metrics to the warehouse's report rows (day tables, pooled rollups, warm-up curves).

File contract under ``eval/day=D/``: ``per_user.parquet`` (evaluate.PER_USER_SCHEMA),
``arm_stats.parquet`` (evaluate.ARM_STATS_SCHEMA), ``per_pair.parquet``
(evaluate.PER_PAIR_SCHEMA, the rank of each truth pair: the two-way bootstrap's input) and
``provenance.json`` (the configuration hash and code version that evaluated the day: the
rollup pools only days evaluated under the configuration it runs with), one of each per
day, each sorted by its keys so a rerun writes the same bytes.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path

import polars as pl

from recsys_assets.lib.evaluation.evaluate import ARM_STATS_SCHEMA, PER_PAIR_KEYS, PER_USER_KEYS, PER_USER_SCHEMA, RANKED_ITEMS, sort_rows
from recsys_assets.lib.evaluation.headline import headline_rows
from recsys_assets.lib.evaluation.lift import LiftConfig, comparisons_for, lift_rows, pool_days, warmup_rows, with_holm
from recsys_assets.lib.evaluation.ranker_check import CHECK_SCOPE, RANKER_CHECK_SCHEMA, ranker_check_rows
from recsys_assets.lib.confighash import config_hash
from recsys_assets.lib.lake import BlockParquetWriter, Lake, is_local, read_parquet, write_bytes_atomic, write_parquet_atomic
from recsys_assets.lib.ranking.arm_spec import encoder_of


@lru_cache(maxsize=1)
def code_version() -> str:
    """Package version + git commit (when run from a checkout)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("recsys-assets")
    except PackageNotFoundError:
        v = "0+unknown"
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{v}+g{sha}" if sha else v


EVAL_PROVENANCE = "provenance.json"


def evaluation_config_hash(feature_config, ranking_config) -> str:
    """The hash on every report row and in ``eval/day=D/provenance.json``: everything that decides a
    day's per-user metrics (features, encoders, protocols, and the ranker's settings)."""
    return config_hash(feature_config, ranking_config)


def save_eval(
    lake: Lake, day: date, per_user: Iterable[pl.DataFrame], arm_stats: pl.DataFrame, per_pair: pl.DataFrame | None = None, *, config_hash: str
) -> None:
    """Write day D's evaluation files, sorted by their keys (an identical rerun writes identical bytes),
    and the provenance the rollup reads to pool only days evaluated under one configuration.

    ``per_user``: the per-user rows as frames of whole protocols, in protocol order (e.g. one per protocol,
    each built only when written: a 10M world's day is 19M rows, ~1.3 GiB as one frame).
    """
    provenance = {"config_hash": config_hash, "code_version": code_version()}
    write_bytes_atomic(lake.eval_dir(day).joinpath(EVAL_PROVENANCE), json.dumps(provenance, sort_keys=True).encode())
    last = None
    with BlockParquetWriter(lake.eval_dir(day).joinpath("per_user.parquet")) as out:
        for frame in per_user:
            if frame.height == 0:
                continue
            protocols = frame["protocol"].unique().sort()
            if last is not None and protocols[0] <= last:
                raise ValueError(f"save_eval {day}: per-user frames must hold whole protocols in order, got {protocols.to_list()} after {last!r}.")
            last = protocols[-1]
            out.write(sort_rows(frame, PER_USER_KEYS))
        if out.rows == 0:
            out.write(pl.DataFrame(schema=PER_USER_SCHEMA))
    write_parquet_atomic(arm_stats.sort("protocol", "scope", "arm", "metric", "k"), lake.eval_dir(day).joinpath("arm_stats.parquet"))
    if per_pair is not None:
        write_parquet_atomic(sort_rows(per_pair, PER_PAIR_KEYS), lake.eval_dir(day).joinpath("per_pair.parquet"))


def load_eval_provenance(lake: Lake, day: date) -> dict | None:
    """Day D's evaluation provenance ({config_hash, code_version}); None for days evaluated before it was recorded."""
    path = lake.eval_dir(day).joinpath(EVAL_PROVENANCE)
    return json.loads(path.read_bytes()) if path.exists() else None


def _read_rows(path, keep: pl.Expr | None) -> pl.DataFrame:
    """The rows of one evaluation file where ``keep`` holds (all without it); on a local lake the filter
    is applied while reading, so the rows it drops never take memory (a 10M world's day is 19M per-user rows)."""
    if keep is None:
        return read_parquet(path)
    return pl.scan_parquet(path.path).filter(keep).collect() if is_local(path) else read_parquet(path).filter(keep)


def _read_columns(path, columns: list[str]) -> pl.DataFrame:
    """The distinct values of ``columns`` in one evaluation file (only those columns are read)."""
    if is_local(path):
        return pl.scan_parquet(path.path).select(columns).unique().collect()
    with path.open("rb") as fh:
        return pl.read_parquet(fh, columns=columns).unique()


def report_parts(lake: Lake, days: list[date]) -> tuple[list[tuple[str, str]], list[str]]:
    """((protocol, scope) parts, arms) present in the days' per-user files, both sorted.

    The lift reports read and compute one part at a time (``part_filter``): protocol and scope are both
    cell keys, so no cell spans two parts, and Holm runs over all of a protocol's parts together
    (``lift.with_holm``); a 10M world's day (19M per-user rows) then never sits in memory whole.
    """
    frames = [_read_columns(p, ["protocol", "scope", "arm"]) for d in days if (p := lake.eval_dir(d).joinpath("per_user.parquet")).exists()]
    if not frames:
        return [], []
    present = pl.concat(frames)
    return present.select("protocol", "scope").unique().sort("protocol", "scope").rows(), present["arm"].unique().sort().to_list()


def part_filter(protocol: str, scope: str) -> pl.Expr:
    """The rows of one (protocol, scope) part of the evaluation files (``report_parts``)."""
    return (pl.col("protocol") == protocol) & (pl.col("scope") == scope)


def load_per_pair(lake: Lake, day: date, keep: pl.Expr | None = None) -> pl.DataFrame | None:
    """Day D's per-pair ranks (those where ``keep`` holds, when given); None for days evaluated before they
    were stored (one-way statistics then)."""
    path = lake.eval_dir(day).joinpath("per_pair.parquet")
    return _read_rows(path, keep) if path.exists() else None


def load_per_user(lake: Lake, day: date, keep: pl.Expr | None = None) -> pl.DataFrame:
    """Day D's per-user rows (those where ``keep`` holds, when given: read as ``load_per_pair`` reads)."""
    path = lake.eval_dir(day).joinpath("per_user.parquet")
    if not path.exists():
        return pl.DataFrame(schema=PER_USER_SCHEMA)
    return _read_rows(path, keep)


def load_arm_stats(lake: Lake, day: date) -> pl.DataFrame:
    path = lake.eval_dir(day).joinpath("arm_stats.parquet")
    return read_parquet(path) if path.exists() else pl.DataFrame(schema=ARM_STATS_SCHEMA)


def _provenance(frame: pl.DataFrame, fingerprints: dict[str, str], config_hash: str) -> pl.DataFrame:
    return frame.with_columns(
        encoder=pl.col("arm").map_elements(encoder_of, return_dtype=pl.String),
    ).with_columns(
        encoder_fingerprint=pl.col("encoder").replace_strict(fingerprints, default=None, return_dtype=pl.String),
        config_hash=pl.lit(config_hash),
        code_version=pl.lit(code_version()),
    )


def day_arm_metrics(metrics: pl.DataFrame, day: date, config_hash: str, fingerprints: dict[str, str]) -> pl.DataFrame:
    """The ``reports.arm_metrics`` rows of day D from ``evaluate.arm_metrics_table`` rows (of one protocol or more)."""
    return _provenance(metrics, fingerprints, config_hash).with_columns(day=pl.lit(day)).drop("encoder_fingerprint")


def ranked_items(arm_stats: pl.DataFrame | None) -> pl.DataFrame:
    """(protocol, scope, n_ranked): how many items each scope ranked (from the arm stats)."""
    schema = {"protocol": pl.String, "scope": pl.String, "n_ranked": pl.Float64}
    if arm_stats is None or arm_stats.height == 0:
        return pl.DataFrame(schema=schema)
    return (
        arm_stats.filter(pl.col("metric") == RANKED_ITEMS)
        .group_by("protocol", "scope")
        .agg(pl.col("value").max().alias("n_ranked"))
        .sort("protocol", "scope")
        .cast(schema)
    )


def day_report(
    lake: Lake, day: date, lm_encoders: list[str], cfg: LiftConfig, config_hash: str, fingerprints: dict[str, str]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(``cold_start_lift`` rows, ``headline`` rows) of one day's evaluation files (snapshot D = events before
    D; truth = day D), read and computed one (protocol, scope) part at a time (``report_parts``)."""
    parts, arms = report_parts(lake, [day])
    comps = comparisons_for(arms, lm_encoders)
    ranked = ranked_items(load_arm_stats(lake, day))
    rows = []
    for protocol, scope in parts:
        keep = part_filter(protocol, scope)
        rows.append(lift_rows(load_per_user(lake, day, keep), comps, cfg, per_pair=load_per_pair(lake, day, keep), ranked_items=ranked, holm=False))
    lift = with_holm(rows)
    head = headline_rows(lift, day, day, "day", sorted({p for p, _ in parts}), comps, cfg.primary_endpoints, cfg.alpha)
    return _provenance(lift, fingerprints, config_hash).with_columns(day=pl.lit(day), snapshot=pl.lit(day)), head


def nontrivial(arm_stats: pl.DataFrame | None) -> pl.Expr | None:
    """The per-user rows of one day outside its trivial cells (the scope ranked no more than K items), as a
    filter on the rows (a scope without a ``ranked_items`` stat keeps every row); None when nothing is trivial."""
    ranked = ranked_items(arm_stats)
    if ranked.height == 0:
        return None
    n_ranked = pl.lit(None, dtype=pl.Float64)
    for row in ranked.iter_rows(named=True):
        n_ranked = pl.when((pl.col("protocol") == row["protocol"]) & (pl.col("scope") == row["scope"])).then(pl.lit(row["n_ranked"], dtype=pl.Float64)).otherwise(n_ranked)
    return n_ranked.is_null() | (pl.col("k").cast(pl.Float64) < n_ranked)


def drop_trivial(per_user: pl.DataFrame, arm_stats: pl.DataFrame | None) -> pl.DataFrame:
    """Per-user rows of one day without its trivial cells (scope ranked no more than K items), in their order."""
    keep = nontrivial(arm_stats)
    return per_user if keep is None or per_user.height == 0 else per_user.filter(keep)


def window_days(lake: Lake, end: date, n_days: int) -> list[date]:
    """Days in (end - n_days, end] that have an evaluation."""
    return [d for d in (end - timedelta(days=i) for i in range(n_days)) if lake.eval_dir(d).joinpath("per_user.parquet").exists()][::-1]


def comparable_window(lake: Lake, end: date, n_days: int, config_hash: str) -> tuple[list[date], dict[date, str]]:
    """(days to pool, {day left out: why}) of the window ending ``end``.

    A day evaluated under another configuration (another encoder set, ranker setting, protocol...)
    measured another experiment: pooling it would mix two treatments into one number, so it is
    left out, with its reason, until it is re-evaluated (re-materialize its ``day_job`` partition).
    Days evaluated before provenance was recorded are left out the same way. The code version is
    not compared (every commit would restart the window); it is reported with the pool instead.
    """
    days, excluded = [], {}
    for d in window_days(lake, end, n_days):
        recorded = (load_eval_provenance(lake, d) or {}).get("config_hash")
        if recorded == config_hash:
            days.append(d)
        elif recorded is None:
            excluded[d] = f"no {EVAL_PROVENANCE} (evaluated by an older version): re-materialize day_job for {d} to pool it"
        else:
            excluded[d] = f"evaluated under configuration {recorded}, this rollup's is {config_hash}: re-materialize day_job for {d} to pool it"
    return days, excluded


@dataclass(frozen=True)
class WindowReport:
    """What the rollup of the window ending D writes (the ``lift_rollup`` asset's tables)."""

    lift: pl.DataFrame
    """Pooled lift rows (``reports.cold_start_lift_rollup``)."""
    warmup: pl.DataFrame
    """Warm-up curves (``reports.warmup_curve``)."""
    days: list[date]
    """The evaluated days pooled."""
    headline: pl.DataFrame
    """One verdict per protocol x primary endpoint (``reports.headline``, window kind)."""
    ranker_check: pl.DataFrame
    """Every ranker arm vs the best of popularity/ALS (``reports.ranker_check``)."""
    excluded: dict[date, str] = field(default_factory=dict)
    """Evaluated days of the window left out of the pool, with the reason (another configuration)."""
    code_versions: dict[str, int] = field(default_factory=dict)
    """Code version -> number of pooled days it evaluated (more than one: the pool spans deploys)."""


def _both(a: pl.Expr | None, b: pl.Expr | None) -> pl.Expr | None:
    return b if a is None else a if b is None else a & b


def pooled_window(
    lake: Lake, days: list[date], keep_users: pl.Expr | None = None, keep_pairs: pl.Expr | None = None
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """(per-user rows, per-pair rows or None) of ``days`` pooled as the rollup pools them: trivial
    day-cells dropped, ``cluster_id`` = the user behind each user-day. ``keep_users`` / ``keep_pairs``:
    only the rows a caller reads (e.g. the study's cells), dropped while reading."""
    stats = {d: load_arm_stats(lake, d) for d in days}
    # The trivial cells are dropped while reading (a 10M world's day is 19M per-user rows).
    pooled = pool_days({d: load_per_user(lake, d, keep=_both(nontrivial(stats[d]), keep_users)) for d in days})
    if pooled.height == 0:
        return pooled, None
    pairs_by_day = {d: load_per_pair(lake, d, keep=keep_pairs) for d in days}
    # Two-way cells need every pooled day's pairs; a window with an older day falls back to users only.
    return pooled, pool_days(pairs_by_day) if all(p is not None for p in pairs_by_day.values()) else None


def rollup_report(
    lake: Lake, end: date, n_days: int, lm_encoders: list[str], cfg: LiftConfig, config_hash: str, fingerprints: dict[str, str]
) -> WindowReport:
    """Pooled lift rows, warm-up curve, headline and ranker check over the window's user-days.

    Users are clusters (all of a user's days resampled together); trivial day-cells (a scope
    that ranked no more than K items that day) are left out of the pool, and so are days
    evaluated under another configuration (``comparable_window``).
    """
    days, excluded = comparable_window(lake, end, n_days, config_hash)
    versions: dict[str, int] = {}
    for d in days:
        v = (load_eval_provenance(lake, d) or {}).get("code_version", "unknown")
        versions[v] = versions.get(v, 0) + 1
    parts, arms = report_parts(lake, days)
    comps = comparisons_for(arms, lm_encoders)
    start = days[0] if days else end
    lifts, warmups, checks = [], [], []
    for protocol, scope in parts:
        keep = part_filter(protocol, scope)
        pooled, pairs = pooled_window(lake, days, keep, keep)
        if pooled.height == 0:
            continue
        lifts.append(lift_rows(pooled, comps, cfg, per_pair=pairs, holm=False))
        warmups.append(warmup_rows(pooled, comps, cfg))
        if scope == CHECK_SCOPE:
            checks.append(ranker_check_rows(pooled, cfg, start, end, per_pair=pairs))
        del pooled, pairs
    if not lifts:
        return WindowReport(pl.DataFrame(), pl.DataFrame(), days, pl.DataFrame(), pl.DataFrame(), excluded, versions)
    rows = with_holm(lifts)
    head = headline_rows(rows, start, end, "window", sorted({p for p, _ in parts}), comps, cfg.primary_endpoints, cfg.alpha)
    lift = _provenance(rows, fingerprints, config_hash).with_columns(window_start=pl.lit(start), window_end=pl.lit(end))
    # Parts come in (protocol, scope) order, so the concatenations are in the order one call sorts into.
    warm = pl.concat([w for w in warmups if w.height] or warmups[:1]).with_columns(window_start=pl.lit(start), window_end=pl.lit(end))
    check = pl.concat(checks) if checks else pl.DataFrame(schema=RANKER_CHECK_SCHEMA)
    return WindowReport(lift, warm, days, head, check, excluded, versions)


def publish_window(lake: Lake, day: date, window: WindowReport):
    """Write a window's tables into the warehouse and the HTML report; returns the report's path.

    Replaces the ``window_end = D`` partitions of ``cold_start_lift_rollup``, ``warmup_curve``,
    ``headline`` (window kind) and ``ranker_check`` (an empty window writes nothing), then renders
    ``reports/index.html`` from the warehouse (daily lifts, encoder cost, the study's Pareto rows).
    """
    from recsys_assets.lib.evaluation.answer import window_headline
    from recsys_assets.lib.evaluation.html_report import write_html_report

    wh = open_warehouse(lake)
    if window.lift.height:
        wh.replace_partition("cold_start_lift_rollup", window.lift, {"window_end": day})
        wh.replace_partition("warmup_curve", window.warmup, {"window_end": day})
        wh.replace_partition("headline", window.headline, {"window_end": day, "window_kind": "window"})
        wh.replace_partition("ranker_check", window.ranker_check, {"window_end": day})
    start = window.days[0] if window.days else day
    daily = wh.query("SELECT * FROM reports.cold_start_lift WHERE day BETWEEN ? AND ?", [start, day])
    cost = wh.query("SELECT * FROM reports.encoder_cost WHERE day BETWEEN ? AND ?", [start, day])
    headline, headline_days = window_headline(lake.warehouse, start, day)
    study = wh.query("SELECT * FROM reports.encoder_study WHERE window_end = ?", [day])
    report = lake.reports.joinpath("index.html")
    write_html_report(
        report, window.lift, daily, window.warmup, cost, title=f"Cold-start lift, {start} to {day}",
        headline=headline, headline_days=headline_days, encoder_study=study, ranker_check=window.ranker_check,
    )
    return report


def open_warehouse(lake: Lake):
    """The analyst warehouse with its tables and views in place (idempotent)."""
    from recsys_assets.lib.evaluation.warehouse import Warehouse

    wh = Warehouse(lake.warehouse)
    wh.apply_sql()
    return wh


def encoder_cost_rows(day: date, metas: dict[str, dict]) -> pl.DataFrame:
    """One ``encoder_cost`` row per encoder from its embeddings' metadata."""
    rows = [
        {
            "day": day,
            "encoder": name,
            "encoder_fingerprint": m.get("fingerprint"),
            "params": int(m.get("params") or 0),
            "dim": int(m.get("dim") or 0),
            "texts_total": int(m.get("texts_total") or 0),
            "texts_encoded": int(m.get("texts_encoded") or 0),
            "cache_hits": int(m.get("cache_hits") or 0),
            "seconds": float(m.get("seconds") or 0.0),
            "texts_per_s": float(m.get("texts_per_s") or 0.0),
            "device": str(m.get("device", "cpu")),
            "precision": str(m.get("precision", "fp32")),
        }
        for name, m in metas.items()
    ]
    return pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame()
