"""``recsys-assets``: ingest a dataset, run the nightly graph over days, print reports."""

from __future__ import annotations

import argparse
import sys

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
        from recsys_assets.lib.ingest.synthetic import SyntheticConfig, generate_synthetic_world

        cfg = SyntheticConfig(n_events=args.synthetic_events, text_signal=args.text_signal, seed=args.seed)
        say(f"generating a synthetic world ({cfg.n_events:,} events, text_signal={cfg.text_signal})")
        counts = generate_synthetic_world(lake, cfg)
        say(f"landing files written: { {k: v for k, v in counts.items() if isinstance(v, int)} }")
    elif source != "landing":
        raise RecsysError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")


def cmd_ingest(args) -> int:
    from recsys_assets import runner
    from recsys_assets.lib.ingest.events import read_manifest

    runner.quiet_dagster()
    say = runner.Progress()
    lake = runner.use_lake(args.lake)
    write_source(lake, args.source, args, say)
    inst = runner.instance()
    say("staging landing files and rebuilding catalogs (catalog_job)")
    result = runner.run_job("catalog_job", inst)
    staged = runner.metadata_of(result, "staged_events")
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
    print(
        f"reconciliation: rows read {read:,} = written {ev.get('rows_written', 0):,} + quarantined {quarantined:,}"
        f" + duplicates dropped {ev.get('duplicates_dropped', 0):,}"
        f" [{'OK' if read == ev.get('rows_written', 0) + quarantined + ev.get('duplicates_dropped', 0) else 'MISMATCH'}]"
        f"; days {days[0]}..{days[-1]}; lake {lake.root}"
    )
    if ev.get("days_failed_validation"):
        print(f"WARNING: {ev['days_failed_validation']} day(s) failed validation and were not published; see the events_expectations check")
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recsys-assets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ingest", help="write a dataset's landing files and materialize the ingest assets for every day")
    p.add_argument("--source", choices=SOURCES, default="ml-100k")
    p.add_argument("--path", help="folder of GroupLens original files (for --source grouplens)")
    p.add_argument("--synthetic-events", type=int, default=50_000, help="events in a synthetic world")
    p.add_argument("--text-signal", type=float, default=1.0, help="synthetic: how much item text reflects latent topics (0..1)")
    p.add_argument("--seed", type=int, default=7)
    _add_lake(p)
    p.set_defaults(func=cmd_ingest)

    from recsys_assets import cli_reports

    cli_reports.add_commands(sub, _add_lake)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except RecsysError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
