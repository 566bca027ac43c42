"""Ingest commands of ``recsys-assets`` (shared by ingest, demo and study): landing files in, events published."""

from __future__ import annotations

from datetime import date, timedelta

from recsys_assets.lib.errors import RecsysError

SOURCES = ("ml-100k", "ml-1m", "synthetic", "landing", "grouplens")
"""Where ``--source`` / ``--dataset`` can take the landing files from."""


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
        cfg = SyntheticConfig(
            n_users=n_users, n_items=n_items, n_events=args.synthetic_events, text_signal=args.text_signal, seed=args.seed,
            image_dim=getattr(args, "image_dim", 0), image_signal=getattr(args, "image_signal", 0.0),
        )
        images = f", image vectors of {cfg.image_dim} dims, image_signal={cfg.image_signal}" if cfg.image_dim else ""
        say(f"generating a synthetic world ({cfg.n_events:,} events, {cfg.n_users:,} users, {cfg.n_items:,} items, text_signal={cfg.text_signal}{images})")
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
