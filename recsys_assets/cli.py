"""``recsys-assets``: ingest a dataset, run the nightly graph over days, print reports."""

from __future__ import annotations

import argparse
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from recsys_assets.lib.errors import RecsysError

SOURCES = ("ml-100k", "ml-1m", "synthetic", "landing", "grouplens")


def _add_lake(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lake", default=None, help="lake root (local folder or fsspec URL); default $RECSYS_LAKE or ./data_lake")


def write_source(lake, source: str, args, say) -> None:
    """Put the chosen dataset's files into the lake's landing folder (landing: use what is there)."""
    if source in ("ml-100k", "ml-1m", "grouplens"):
        from recsys_assets.lib.ingest.movielens import write_movielens_landing

        if source == "grouplens" and not args.path:
            raise RecsysError("--source grouplens needs --path to a folder with u.data/u.item/u.user or ratings.dat/movies.dat/users.dat")
        say(f"writing {source} landing files")
        counts = write_movielens_landing(lake, source, grouplens_path=getattr(args, "path", None))
        say(f"landing files written: {counts}")
    elif source == "synthetic":
        from recsys_assets.lib.ingest.synthetic import SyntheticConfig, generate_synthetic_world, shop_shape

        n_users, n_items = shop_shape(args.synthetic_events, getattr(args, "synthetic_users", None), getattr(args, "synthetic_items", None))
        cfg = SyntheticConfig(n_users=n_users, n_items=n_items, n_events=args.synthetic_events, text_signal=args.text_signal, seed=args.seed)
        say(f"generating a synthetic world ({cfg.n_events:,} events, {cfg.n_users:,} users, {cfg.n_items:,} items, text_signal={cfg.text_signal})")
        counts = generate_synthetic_world(lake, cfg)
        say(f"landing files written: { {k: v for k, v in counts.items() if isinstance(v, int)} }")
    elif source != "landing":
        raise RecsysError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")


def cmd_ingest(args) -> int:
    from recsys_assets import runner
    from recsys_assets.lib.ingest.events import read_manifest, stale_event_days, unpublish_days

    runner.quiet_dagster()
    say = runner.Progress()
    lake = runner.use_lake(args.lake)
    write_source(lake, args.source, args, say)
    inst = runner.instance()
    say("staging landing files and rebuilding catalogs (catalog_job)")
    result = runner.run_job("catalog_job", inst)
    staged = runner.metadata_of(result, "staged_events")
    items_meta = runner.metadata_of(result, "items")
    manifest = read_manifest(lake)
    days = sorted({d for ds in manifest["days"].to_list() for d in (ds or [])})
    if not days:
        raise RecsysError(f"no events with a readable day in {lake.landing_dir('events')}; see {lake.quarantine_day('unknown')}")
    say(f"publishing {len(days)} days of events {days[0]}..{days[-1]} in one run (events_job)")
    result = runner.run_range("events_job", inst, days[0], days[-1])
    ev = runner.metadata_of(result, "events")
    unknown = staged.get("quarantined_without_day", 0)
    read = ev.get("rows_read", 0) + unknown
    quarantined = ev.get("rows_quarantined", 0) + unknown
    written, dups = ev.get("rows_written", 0), ev.get("duplicates_dropped", 0)
    # What the lake holds after this run: every published day, not only the ones written now.
    stale = stale_event_days(lake, days)
    pruned = 0
    if stale and getattr(args, "prune", False):
        pruned = unpublish_days(lake, stale)
        say(f"pruned {len(stale)} published day(s) that no landing row covers ({pruned:,} events)")
        stale = []
    published = lake.event_days()
    held = lake.count_events(published)
    stale_rows = lake.count_events(stale)
    lake_ok = not stale and held == written
    print(
        f"reconciliation: rows read {read:,} = written {written:,} + quarantined {quarantined:,}"
        f" + duplicates dropped {dups:,}"
        f" [{'OK' if read == written + quarantined + dups else 'MISMATCH'}]"
        f"; days {days[0]}..{days[-1]}"
        f"; lake holds {held:,} events on {len(published):,} days"
        + (f", {stale_rows:,} of them on {len(stale)} day(s) no landing row covers ({stale[0]}..{stale[-1]})" if stale else "")
        + f" [{'OK' if lake_ok else 'STALE'}]"
        f"; lake {lake.root}"
    )
    if items_meta:
        items_ok = items_meta.get("reconciles", True)
        print(
            f"items: landing rows read {items_meta.get('landing_rows_read', 0):,} = catalogued {items_meta.get('items_from_landing', 0):,}"
            f" + quarantined {items_meta.get('quarantined_rows', 0):,} + superseded {items_meta.get('superseded_rows', 0):,}"
            f" [{'OK' if items_ok else 'MISMATCH'}]; catalogue {items_meta.get('items', 0):,} items"
        )
    rc = 0
    changes = [c.strip("- ") for c in str(staged.get("landing_changes", "none")).splitlines() if c.strip() and c.strip() != "none"]
    for change in changes:
        print(f"WARNING: {change}; the landing is append-only (README, 'Bring your own logs')")
    if staged.get("files_refused"):
        print(f"WARNING: {staged['files_refused']} landing entr(y/ies) not read (broken or escaping symlinks, unsupported types): see the (file) rows in {lake.quarantine_day('unknown')}")
    if stale:
        print(
            f"WARNING: {len(stale)} published day(s) {stale[0]}..{stale[-1]} hold {stale_rows:,} events that no landing file has any more;"
            " restore the landing rows, or rerun with --prune to unpublish those days"
        )
        rc = 1
    if ev.get("days_failed_validation"):
        print(f"WARNING: {ev['days_failed_validation']} day(s) failed validation and were not published:")
        for line in runner.check_failures(result)[:5]:
            print(f"  {line}")
        rc = 1
    return rc


def cmd_sql(args) -> int:
    """Run one read-only query on the warehouse, retrying while a writer holds DuckDB's lock."""
    from recsys_assets import runner
    import polars as pl

    from recsys_assets.lib.evaluation.warehouse import Warehouse

    lake = runner.use_lake(args.lake)
    if not lake.warehouse.exists():
        raise RecsysError(f"no warehouse at {lake.warehouse}: run `recsys-assets demo` (or the nightly job) first")
    import duckdb

    try:
        frame = Warehouse(lake.warehouse, lock_timeout_s=args.lock_timeout).query(args.query)
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RecsysError(f"query failed on {lake.warehouse}: {first}") from exc
    if args.csv:
        print(frame.write_csv(), end="")
    else:
        with pl.Config(tbl_rows=args.max_rows, tbl_cols=-1, tbl_width_chars=250, tbl_hide_dataframe_shape=True):
            print(frame)
    return 0


def check_demo_window(event_days: list[date], start: date, end: date) -> None:
    """An explicit --end must put the evaluated days inside the data, with history before them."""
    if not event_days:
        raise RecsysError("no published events: run `recsys-assets ingest` first")
    first, last = event_days[0], event_days[-1]
    if start <= first or end > last:
        n = (end - start).days + 1
        raise RecsysError(
            f"--end {end} --days {n} evaluates {start}..{end}, but the published events cover {first}..{last}: "
            f"pick an --end between {first + timedelta(days=n)} and {last} (or omit --end to use the densest window)"
        )


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (``error: ...``) and exit 2, with no usage dump."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"error: {self.prog}: {message} (see --help)\n")


def _positive(name: str, minimum: int = 1):
    def check(args, value) -> str | None:
        if value is not None and value < minimum:
            return f"{name} must be at least {minimum}, got {value}"
        return None

    return check


def _day_not_in_future(args, value) -> str | None:
    if value is None:
        return None
    try:
        day = date.fromisoformat(str(value).strip())
    except ValueError:
        return f"--end {value!r} is not a day (want YYYY-MM-DD, e.g. 1998-04-01)"
    today = datetime.now(timezone.utc).date()
    if day > today:
        return f"--end {day} is in the future (today is {today} UTC): pick a day that has events"
    args.end = day.isoformat()
    return None


def _fraction(args, value) -> str | None:
    if value is not None and not (0.0 <= value <= 1.0):
        return f"--text-signal must be in [0, 1], got {value}"
    return None


def _encoders(args, value) -> str | None:
    if value is not None and not [e for e in str(value).split(",") if e.strip()]:
        return f"--encoders {value!r} names no encoder (e.g. minilm-l6,tfidf)"
    return None


def _path_exists(args, value) -> str | None:
    if value is not None and "://" not in str(value) and not Path(value).expanduser().is_dir():
        return f"--path {value} does not exist (or is not a folder)"
    return None


ARG_CHECKS = {
    "days": _positive("--days"),
    "end": _day_not_in_future,
    "min_history_days": _positive("--min-history-days", 0),
    "rollup_days": _positive("--rollup-days"),
    "synthetic_events": _positive("--synthetic-events"),
    "synthetic_users": _positive("--synthetic-users"),
    "synthetic_items": _positive("--synthetic-items"),
    "text_signal": _fraction,
    "k": _positive("-k"),
    "encoders": _encoders,
    "path": _path_exists,
}
"""Checks of argument values argparse's types cannot express, by destination (any subcommand)."""


def validate_args(args: argparse.Namespace) -> str | None:
    """The first problem with the parsed arguments as one line, or None (normalizes ``--end``)."""
    for dest, check in ARG_CHECKS.items():
        if hasattr(args, dest):
            problem = check(args, getattr(args, dest))
            if problem:
                return problem
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="recsys-assets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ingest", help="write a dataset's landing files and materialize the ingest assets for every day")
    p.add_argument("--source", choices=SOURCES, default="ml-100k")
    p.add_argument("--path", help="folder of GroupLens original files (for --source grouplens)")
    p.add_argument("--synthetic-events", type=int, default=50_000, help="events in a synthetic world")
    p.add_argument("--synthetic-users", type=int, default=None, help="users in a synthetic world (default: shop-like, events/33, at least 2,000)")
    p.add_argument("--synthetic-items", type=int, default=None, help="items in a synthetic world (default: shop-like, events/200, at least 1,000)")
    p.add_argument("--text-signal", type=float, default=1.0, help="synthetic: how much item text reflects latent topics (0..1)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--prune", action="store_true", help="unpublish event days that no landing row covers any more (rows removed from landing)")
    _add_lake(p)
    p.set_defaults(func=cmd_ingest)

    q = sub.add_parser("sql", help="run a read-only SQL query on the warehouse (retries while a run holds the DuckDB lock)")
    q.add_argument("query", help='e.g. "SELECT * FROM reports.significant_lm_lift"')
    q.add_argument("--csv", action="store_true", help="print CSV instead of a table")
    q.add_argument("--max-rows", type=int, default=50, help="rows shown in the table (-1 = all)")
    q.add_argument("--lock-timeout", type=float, default=300.0, help="seconds to keep retrying while a writer holds the file")
    _add_lake(q)
    q.set_defaults(func=cmd_sql)

    from recsys_assets import cli_reports

    cli_reports.add_commands(sub, _add_lake)
    from recsys_assets import cli_study

    cli_study.add_command(sub, _add_lake)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    problem = validate_args(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except RecsysError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
