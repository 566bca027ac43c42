"""``recsys-assets demo`` (ingest + backfill days through every asset) and ``recsys-assets report``."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl

from recsys_assets.lib.errors import RecsysError

SHORT_HISTORY_DAYS = 21

LIFT_PRINT_COLUMNS = ["protocol", "scope", "arm", "baseline_arm", "segment_kind", "segment", "value", "baseline_value", "abs_lift", "ci_low", "ci_high", "p_adjusted", "n_users", "flag"]


def densest_window(event_days: list[date], counts: dict[date, int], n_days: int, min_history_days: int) -> tuple[date, date]:
    """The n-day window with the most events that still leaves ``min_history_days`` of history before it."""
    if not event_days:
        raise RecsysError("no published events: run `recsys-assets ingest` first")
    first = event_days[0]
    candidates = [d for d in event_days if d - timedelta(days=n_days - 1) >= first + timedelta(days=min_history_days)]
    if not candidates:
        raise RecsysError(
            f"the data covers {first}..{event_days[-1]}: too short for {n_days} evaluated days after {min_history_days} days of history"
        )
    best = max(candidates, key=lambda end: (sum(counts.get(end - timedelta(days=i), 0) for i in range(n_days)), end))
    return best - timedelta(days=n_days - 1), best


def format_lift_table(df: pl.DataFrame, metric: str = "recall", k: int = 20) -> str:
    if df.height == 0:
        return "(no lift rows)"
    shown = df.filter((pl.col("metric") == metric) & (pl.col("k") == k) & pl.col("segment_kind").is_in(["all", "user", "item"]))
    shown = shown.sort("protocol", "scope", "arm", "baseline_arm", "segment_kind", "segment").select(LIFT_PRINT_COLUMNS)
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=250, float_precision=4, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
        return f"{metric}@{k}:\n{shown}"


def cmd_demo(args) -> int:
    from recsys_assets import runner
    from recsys_assets.cli import cmd_ingest
    from recsys_assets.lib.evaluation.reporting import open_warehouse

    if not args.skip_ingest:
        rc = cmd_ingest(args)
        if rc:
            return rc
    runner.quiet_dagster()
    say = runner.Progress()
    lake = runner.use_lake(args.lake)
    days = lake.event_days()
    counts = {d: n for d, n in lake.read_events().group_by(pl.col("ts").dt.date().alias("d")).len().iter_rows()}
    if args.end:
        end = date.fromisoformat(args.end)
        start = end - timedelta(days=args.days - 1)
    else:
        try:
            start, end = densest_window(days, counts, args.days, args.min_history_days)
        except RecsysError:
            # Short worlds (the 60-day synthetic default): keep just the label window + a week.
            say(f"data too short for {args.min_history_days} days of history; using {SHORT_HISTORY_DAYS}")
            start, end = densest_window(days, counts, args.days, SHORT_HISTORY_DAYS)
    wanted = [start + timedelta(days=i) for i in range(args.days)]
    say(f"evaluating {len(wanted)} days {start}..{end} through features, ranking and reports (day_job)")
    inst = runner.instance()
    for i, day in enumerate(wanted, 1):
        runner.run_job("day_job", inst, partition_key=day.isoformat(), run_config_resources=_resource_config(args))
        say(f"day {i}/{len(wanted)} {day} done ({counts.get(day, 0)} events)")
    wh = open_warehouse(lake)
    rollup = wh.query("SELECT * FROM reports.cold_start_lift_rollup WHERE window_end = ?", [end])
    print(f"\nPooled lift over {rollup['window_start'].min() if rollup.height else start}..{end} (paired bootstrap over user-days, Holm-adjusted p):")
    print(format_lift_table(rollup))
    print(f"\nDuckDB:      {lake.warehouse}\nHTML report: {lake.reports.joinpath('index.html')}")
    return 0


def _resource_config(args) -> dict:
    cfg = {}
    if args.encoders:
        cfg["encoders"] = args.encoders
    if args.rollup_days:
        cfg["rollup_days"] = args.rollup_days
    return {"models": {"config": cfg}} if cfg else {}


def cmd_report(args) -> int:
    from recsys_assets import runner
    from recsys_assets.lib.evaluation.warehouse import Warehouse

    lake = runner.use_lake(args.lake)
    if not lake.warehouse.exists():
        raise RecsysError(f"no warehouse at {lake.warehouse}: run `recsys-assets demo` (or the nightly job) first")
    wh = Warehouse(lake.warehouse)
    latest = wh.query("SELECT max(window_end) AS d FROM reports.cold_start_lift_rollup")["d"][0]
    if latest is not None:
        rollup = wh.query("SELECT * FROM reports.cold_start_lift_rollup WHERE window_end = ?", [latest])
        print(f"Pooled lift, window ending {latest}:")
        print(format_lift_table(rollup, args.metric, args.k))
    day = wh.query("SELECT max(day) AS d FROM reports.cold_start_lift")["d"][0]
    if day is not None:
        print(f"\nLift on the latest day {day}:")
        print(format_lift_table(wh.query("SELECT * FROM reports.cold_start_lift WHERE day = ?", [day]), args.metric, args.k))
    if latest is None and day is None:
        print("the warehouse has no lift rows yet")
    return 0


def add_commands(sub, add_lake) -> None:
    from recsys_assets.cli import SOURCES

    p = sub.add_parser("demo", help="ingest a dataset and run every asset over N days, then print the pooled lift table")
    p.add_argument("--dataset", dest="source", choices=SOURCES, default="ml-100k")
    p.add_argument("--path", help="folder of GroupLens original files (for --dataset grouplens)")
    p.add_argument("--days", type=int, default=21, help="evaluated days (default 21)")
    p.add_argument("--end", help="last evaluated day (default: the end of the densest window of the data)")
    p.add_argument("--min-history-days", type=int, default=60, help="history required before the first evaluated day")
    p.add_argument("--encoders", help="comma-separated encoders (default minilm-l6,tfidf)")
    p.add_argument("--rollup-days", type=int, help="days pooled by lift_rollup (default 28)")
    p.add_argument("--synthetic-events", type=int, default=200_000)
    p.add_argument("--text-signal", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--skip-ingest", action="store_true", help="use the events already in the lake")
    add_lake(p)
    p.set_defaults(func=cmd_demo)

    r = sub.add_parser("report", help="print the latest lift tables from DuckDB")
    r.add_argument("--metric", default="recall", choices=["recall", "ndcg", "hitrate", "mrr"])
    r.add_argument("-k", type=int, default=20)
    add_lake(r)
    r.set_defaults(func=cmd_report)

