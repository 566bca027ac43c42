"""``recsys-assets demo`` (ingest + backfill days through every asset) and ``recsys-assets report``.

Both end with the answer: the headline endpoints (``reports.headline``) as a short
table, one plain sentence per protocol, the encoding cost, then the paths of the
DuckDB file and the HTML report.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date, timedelta

import polars as pl

from recsys_assets.lib.errors import RecsysError

SHORT_HISTORY_DAYS = 21

FORMATS = ("text", "csv", "json")

ALL_PRINT_COLUMNS = [
    "protocol", "scope", "arm", "baseline_arm", "segment_kind", "segment", "metric", "k",
    "value", "baseline_value", "abs_lift", "ci_low", "ci_high", "p_adjusted", "n_users", "flag",
]
"""Columns of ``report --all`` (the cells' other columns are in the warehouse)."""


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


def _table(df: pl.DataFrame) -> str:
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=250, float_precision=4, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
        return str(df)


def format_all_cells(df: pl.DataFrame) -> str:
    """Every lift cell (every metric, K, segment), sorted."""
    if df.height == 0:
        return "(no lift rows)"
    cols = [c for c in ALL_PRINT_COLUMNS if c in df.columns]
    return _table(df.sort("protocol", "scope", "arm", "baseline_arm", "segment_kind", "segment", "metric", "k").select(cols))


def answer_text(headline: pl.DataFrame, encoder_cost: pl.DataFrame | None = None, ranker_check: pl.DataFrame | None = None) -> str:
    """The treatment check's warnings first, then the headline table, one sentence per protocol, the
    check's summary and the cost sentence (terminal text)."""
    from recsys_assets.lib.evaluation.answer import answer_sentences, caveats, cost_sentence, format_headline_table, metrics_words, verdict_counts, window_words
    from recsys_assets.lib.evaluation.ranker_check import ranker_check_notes, ranker_check_warnings

    if headline.is_empty():
        return "Headline: reports.headline has no rows yet (run the report assets: `recsys-assets demo`, or the nightly job)."
    warnings = ranker_check_warnings(ranker_check) if ranker_check is not None else []
    counts = ", ".join(f"{n} {v}" for v, n in verdict_counts(headline).items() if n)
    lines = warnings + ([""] if warnings else [])
    lines += [f"Headline, {window_words(headline)}: {headline.height} primary endpoints, {metrics_words(headline)} ({counts})", format_headline_table(headline), ""]
    lines += [f"- {s}" for s in answer_sentences(headline)]
    lines += [f"Note: {c}" for c in caveats(headline)]
    lines += ranker_check_notes(ranker_check) if ranker_check is not None else []
    cost = cost_sentence(encoder_cost)
    if cost:
        lines += ["", cost]
    return "\n".join(lines)


def print_answer(lake, fmt: str = "text", all_cells: bool = False, out=None) -> None:
    """Print the answer of the lake's warehouse: headline (or every cell with ``all_cells``) as text, CSV or JSON."""
    from recsys_assets.lib.evaluation.answer import to_csv, to_json
    from recsys_assets.lib.evaluation.headline import read_headline
    from recsys_assets.lib.evaluation.warehouse import Warehouse

    out = out or sys.stdout
    if fmt not in FORMATS:
        raise RecsysError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if not lake.warehouse.exists():
        raise RecsysError(f"no warehouse at {lake.warehouse}: run `recsys-assets demo` (or the nightly job) first")
    wh = Warehouse(lake.warehouse)
    headline = read_headline(lake.warehouse)
    cells = pl.DataFrame()
    if all_cells:
        latest = wh.query("SELECT max(window_end) AS d FROM reports.cold_start_lift_rollup")["d"][0]
        if latest is not None:
            cells = wh.query("SELECT * FROM reports.cold_start_lift_rollup WHERE window_end = ?", [latest])
    if fmt != "text":
        rows = cells if all_cells else headline
        print(to_csv(rows) if fmt == "csv" else to_json(rows), file=out, end="" if fmt == "csv" else "\n")
        return
    if all_cells:
        span = f"{cells['window_start'].min()}..{cells['window_end'].max()}" if cells.height else "(none)"
        print(f"Every pooled lift cell, window {span} ({cells.height} rows):", file=out)
        print(format_all_cells(cells), file=out)
        print(file=out)
    cost = check = pl.DataFrame()
    if headline.height:
        cost = wh.query(
            "SELECT * FROM reports.encoder_cost WHERE day BETWEEN ? AND ?",
            [headline["window_start"].min(), headline["window_end"].max()],
        )
        if wh.table_columns("ranker_check"):  # a warehouse written before the check existed has no such table
            check = wh.query("SELECT * FROM reports.ranker_check WHERE window_end = ?", [headline["window_end"].max()])
    print(answer_text(headline, cost, check), file=out)
    print(f"\nDuckDB:      {lake.warehouse}\nHTML report: {lake.reports.joinpath('index.html')}", file=out)


def cmd_demo(args) -> int:
    from recsys_assets import runner
    from recsys_assets.cli_ingest import cmd_ingest
    from recsys_assets.lib.progress import progress

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
        from recsys_assets.cli_ingest import check_demo_window

        end = date.fromisoformat(args.end)
        start = end - timedelta(days=args.days - 1)
        check_demo_window(days, start, end)
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
    # The rankers of day D train on the examples of the k nights before D (RankingConfig.train_nights), and of
    # earlier nights while those hold fewer than min_train_queries labelled queries (a small world): the nights
    # before the window get their features and examples first (no evaluation), a week further back at a time
    # while the first evaluated day's window asks for more.
    from recsys_assets.lib.ranking.config import RankingConfig
    from recsys_assets.lib.ranking.nightly import training_windows_full
    from recsys_assets.lib.snapshot import ProtocolConfig

    rcfg, have = RankingConfig(), set(days)
    done, reach = 0, rcfg.train_nights - 1  # nights start - reach .. start - done - 1 are warmed next
    while True:
        warm = [start - timedelta(days=j) for j in range(reach, done, -1) if start - timedelta(days=j) in have]
        if warm:
            say(f"warm-up: features and ranker examples of {len(warm)} nights {warm[0]}..{warm[-1]} (warmup_job)")
        for day in progress(warm, desc="warmup_job", unit="day", log=say):
            runner.run_job("warmup_job", inst, partition_key=day.isoformat(), run_config_resources=_resource_config(args))
        if reach >= rcfg.max_train_nights - 1 or training_windows_full(lake, start, ProtocolConfig().protocols, rcfg):
            break
        done, reach = reach, min(reach + 7, rcfg.max_train_nights - 1)
    for day in progress(wanted, desc=f"day_job {start}..{end}", unit="day", log=say):
        runner.run_job("day_job", inst, partition_key=day.isoformat(), run_config_resources=_resource_config(args))
    print()
    print_answer(lake, args.format)
    return 0


def _resource_config(args) -> dict:
    cfg = {}
    if args.encoders:
        cfg["encoders"] = args.encoders
    if args.rollup_days:
        cfg["rollup_days"] = args.rollup_days
    if args.ranker_monotone_text is not None:
        cfg["ranker_monotone_text"] = args.ranker_monotone_text
    if args.ranker_prior_profile_new is not None:
        cfg["ranker_prior_profile_new"] = args.ranker_prior_profile_new
    return {"models": {"config": cfg}} if cfg else {}


def cmd_report(args) -> int:
    from recsys_assets import runner

    lake = runner.use_lake(args.lake)
    try:
        print_answer(lake, args.format, all_cells=args.all)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader closed the pipe (`report --format csv | head`): not an error. Point stdout at
        # /dev/null so that the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def add_commands(sub, add_lake) -> None:
    from recsys_assets.cli_ingest import SOURCES

    p = sub.add_parser("demo", help="ingest a dataset and run every asset over N days, then print the headline")
    p.add_argument("--dataset", dest="source", choices=SOURCES, default="ml-100k")
    p.add_argument("--path", help="folder of GroupLens original files (for --dataset grouplens)")
    p.add_argument("--days", type=int, default=21, help="evaluated days (default 21)")
    p.add_argument("--end", help="last evaluated day (default: the end of the densest window of the data)")
    p.add_argument("--min-history-days", type=int, default=60, help="history required before the first evaluated day")
    p.add_argument("--encoders", help="comma-separated encoders (default minilm-l6,tfidf)")
    p.add_argument("--rollup-days", type=int, help="days pooled by lift_rollup (default 28)")
    p.add_argument(
        "--ranker-prior-profile-new",
        type=float,
        default=None,
        help="weight of profile_lift in the rankers' popularity prior for brand-new users (default: chosen every night on the "
        "rankers' training nights; 0 = off; docs/ranker.md round 7)",
    )
    p.add_argument(
        "--ranker-monotone-text",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="text arms' similarity features monotone increasing (default: ModelsResource.ranker_monotone_text)",
    )
    p.add_argument("--synthetic-events", type=int, default=200_000)
    p.add_argument("--synthetic-users", type=int, default=None, help="synthetic users (default: shop-like, events/33, at least 2,000)")
    p.add_argument("--synthetic-items", type=int, default=None, help="synthetic items (default: shop-like, events/200, at least 1,000)")
    p.add_argument("--text-signal", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--skip-ingest", action="store_true", help="use the events already in the lake")
    p.add_argument("--format", choices=FORMATS, default="text", help="how the final headline is printed (csv/json for scripts)")
    add_lake(p)
    p.set_defaults(func=cmd_demo)

    r = sub.add_parser("report", help="print the headline (primary endpoints, verdicts, one sentence per protocol) from DuckDB")
    r.add_argument("--all", action="store_true", help="print every pooled lift cell of the latest window, not only the headline")
    r.add_argument("--format", choices=FORMATS, default="text", help="text (default), or csv/json of the headline (of every cell with --all)")
    add_lake(r)
    r.set_defaults(func=cmd_report)
