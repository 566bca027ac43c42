"""``recsys-assets``: ingest a dataset, run the nightly graph over days, print reports."""

from __future__ import annotations

import argparse
import sys
from datetime import date, datetime, timezone
from pathlib import Path

from recsys_assets.cli_ingest import SOURCES, cmd_ingest
from recsys_assets.lib.errors import RecsysError



def _add_lake(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lake", default=None, help="lake root (local folder or fsspec URL); default $RECSYS_LAKE or ./data_lake")


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
