"""The ingest assets through ``dagster.materialize``: partitions, reconciliation, atomicity, blocking checks, CLI."""

from __future__ import annotations

import os
import shutil
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from recsys_assets.defs.ingest.catalogs import items, users
from recsys_assets.defs.ingest.events import events
from recsys_assets.defs.ingest.staged_events import staged_events
from recsys_assets.defs.resources import IngestResource, LakeResource
from recsys_assets.lib import lake as lake_module
from recsys_assets.lib.ingest.events import read_manifest
from recsys_assets.lib.schema import EVENT_SCHEMA, ITEM_SCHEMA, USER_SCHEMA
from recsys_assets.lib.ingest.synthetic import SyntheticConfig, generate_synthetic_world
from recsys_assets.lib.lake import LAKE_ENV_VAR, Lake, read_parquet

SMALL = SyntheticConfig(n_users=200, n_items=150, n_events=10_000, n_topics=5, n_days=8, start_day="2024-03-01", seed=3)
SMALL_DAYS = [SMALL.start + timedelta(days=i) for i in range(SMALL.n_days)]
CATALOG_ASSETS = [staged_events, items, users]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch):
    # The CLI points resources at its lake through $RECSYS_LAKE; never leak it (or a persistent instance).
    monkeypatch.delenv(LAKE_ENV_VAR, raising=False)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)


@pytest.fixture(scope="module")
def small_landing(tmp_path_factory) -> Path:
    """A lake folder holding only the landing files of SMALL (copied per test)."""
    root = tmp_path_factory.mktemp("small_landing")
    generate_synthetic_world(Lake.at(root), SMALL)
    return root


@pytest.fixture
def small_lake(small_landing, tmp_path) -> Lake:
    root = tmp_path / "lake"
    shutil.copytree(small_landing, root)
    return Lake.at(root)


def _resources(lake: Lake) -> dict:
    return {"lake": LakeResource(root=str(lake.root.path)), "ingest": IngestResource()}


def _materialize_catalogs(lake: Lake, **kw) -> dg.ExecuteInProcessResult:
    return dg.materialize(CATALOG_ASSETS, resources=_resources(lake), **kw)


def _materialize_events(lake: Lake, start: date, end: date | None = None, **kw) -> dg.ExecuteInProcessResult:
    """One run over [start, end] as runner.run_range does (single-run backfill policy)."""
    end = end or start
    tags = {"dagster/asset_partition_range_start": start.isoformat(), "dagster/asset_partition_range_end": end.isoformat()}
    return dg.materialize([events], resources=_resources(lake), tags=tags, selection=[events], **kw)


def _meta(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    out = {}
    for ev in result.get_asset_materialization_events():
        if ev.materialization.asset_key.to_user_string() == asset:
            out = {k: v.value for k, v in ev.materialization.metadata.items()}
    return out


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def _bytes(path) -> bytes:
    return Path(path.path).read_bytes()


# --- (a) a small synthetic world end to end --------------------------------------------------


def test_synthetic_world_end_to_end(small_lake):
    lake = small_lake
    cat = _materialize_catalogs(lake)
    assert cat.success
    assert _checks(cat) == {"items_expectations": True}
    staged = _meta(cat, "staged_events")
    assert staged["files"] == 1 and staged["rows_read"] == SMALL.n_events
    assert staged["rows_valid"] + staged["rows_quarantined"] == SMALL.n_events

    manifest = read_manifest(lake)
    days = sorted({d for ds in manifest["days"].to_list() for d in ds})
    assert days == SMALL_DAYS

    res = _materialize_events(lake, days[0], days[-1])
    assert res.success
    assert _checks(res) == {"events_expectations": True}
    meta = _meta(res, "events")
    assert meta["days"] == len(days) and meta["days_failed_validation"] == 0 and meta["reconciles"] is True
    assert meta["rows_read"] == meta["rows_written"] + meta["rows_quarantined"] + meta["duplicates_dropped"]
    assert meta["rows_read"] + staged["quarantined_without_day"] == SMALL.n_events

    # One published partition per day, with the contract schema and only that day's rows.
    assert lake.event_days() == days
    total = 0
    for d in days:
        part = read_parquet(lake.events_day(d))
        assert dict(part.schema) == EVENT_SCHEMA
        assert part.height > 0
        assert (part["ts"].dt.date() == d).all()
        assert part["ts"].is_sorted() and part["event_id"].n_unique() == part.height
        total += part.height
    assert total == meta["rows_written"]
    assert lake.read_events().height == total

    items_cat = read_parquet(lake.catalog("items"))
    assert dict(items_cat.schema) == ITEM_SCHEMA
    assert items_cat.height == SMALL.n_items and items_cat["item_id"].n_unique() == SMALL.n_items
    assert items_cat["text_hash"].null_count() == 0 and items_cat["text_hash"].str.len_chars().eq(16).all()
    assert items_cat["title"].null_count() == 0
    # first_seen_day: never after the item's first event, and set for every item with events.
    ev = lake.read_events()
    first = ev.group_by("item_id").agg(pl.col("ts").min().dt.date().alias("first_ev"))
    joined = items_cat.join(first, on="item_id")
    assert joined.height == ev["item_id"].n_unique()
    assert joined["first_seen_day"].null_count() == 0
    assert (joined["first_seen_day"] <= joined["first_ev"]).all()
    assert ev.join(items_cat, on="item_id", how="anti").height == 0

    users_cat = read_parquet(lake.catalog("users"))
    assert dict(users_cat.schema) == USER_SCHEMA
    assert users_cat["user_id"].n_unique() == users_cat.height
    assert ev.join(users_cat, on="user_id", how="anti").height == 0


# --- (b) real ml-100k --------------------------------------------------------------------------


def test_ml100k_published_over_its_days(ml100k_wheel_cache, tmp_path):
    from recsys_assets.lib.ingest.movielens import write_movielens_landing

    lake = Lake.at(tmp_path / "lake")
    wheels = Path(lake.cache.joinpath("wheels").path)
    wheels.mkdir(parents=True)
    for whl in ml100k_wheel_cache.glob("recbole-1.2.1-*.whl"):
        shutil.copy(whl, wheels / whl.name)
    counts = write_movielens_landing(lake, "ml-100k")
    assert counts["events"] == 100_000

    cat = _materialize_catalogs(lake)
    assert cat.success and _checks(cat) == {"items_expectations": True}
    assert _meta(cat, "staged_events")["rows_valid"] == 100_000
    assert _meta(cat, "items")["items"] == 1682 and _meta(cat, "users")["users"] == 943

    days = sorted({d for ds in read_manifest(lake)["days"].to_list() for d in ds})
    assert (days[0], days[-1]) == (date(1997, 9, 20), date(1998, 4, 22))
    res = _materialize_events(lake, days[0], days[-1])  # the whole history in one run (~30 s)
    assert res.success and _checks(res) == {"events_expectations": True}
    meta = _meta(res, "events")
    assert meta["rows_read"] == 100_000 and meta["reconciles"] is True
    assert meta["rows_quarantined"] == 0 and meta["days_failed_validation"] == 0
    # MovieLens has no exact duplicate (user, item, ts, rating) rows.
    assert meta["rows_written"] == 100_000 and meta["duplicates_dropped"] == 0
    # Every calendar day of the range is published; the few days without ratings as empty partitions.
    calendar = [days[0] + timedelta(days=i) for i in range((days[-1] - days[0]).days + 1)]
    assert lake.event_days() == calendar and len(days) < len(calendar)
    gap = sorted(set(calendar) - set(days))[0]
    assert read_parquet(lake.events_day(gap)).height == 0
    assert dict(read_parquet(lake.events_day(gap)).schema) == EVENT_SCHEMA
    published = lake.read_events()
    assert published.height == 100_000
    assert published["event_type"].cast(pl.String).unique().to_list() == ["rating"]
    assert published["item_id"].n_unique() == 1682 and published["user_id"].n_unique() == 943


# --- (c) idempotence ---------------------------------------------------------------------------


def test_rematerializing_gives_byte_identical_files(small_lake):
    lake = small_lake
    assert _materialize_catalogs(lake).success
    day = SMALL_DAYS[2]
    assert _materialize_events(lake, day).success
    first = {p: _bytes(p) for p in (lake.events_day(day), lake.catalog("items"), lake.catalog("users"))}

    assert _materialize_catalogs(lake).success
    assert _materialize_events(lake, day).success
    for p, data in first.items():
        assert _bytes(p) == data, p

    # Also when staging is thrown away and every landing file is parsed again.
    shutil.rmtree(lake.cache.joinpath("staged").path)
    assert _meta(_materialize_catalogs(lake), "staged_events")["parsed_now"] == 1
    assert _materialize_events(lake, day).success
    for p, data in first.items():
        assert _bytes(p) == data, p
    assert lake.event_days() == [day]


# --- (d) a run killed mid-write ----------------------------------------------------------------


class _OsFailingReplace:
    """``os`` for lake.py whose ``replace`` dies after the temp file is written (for events partitions)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, name):
        return getattr(os, name)

    def replace(self, src, dst):
        if "/events/day=" in str(dst):
            self.calls.append(str(src))
            assert Path(src).exists() and Path(src).stat().st_size > 0  # the bytes were written
            raise OSError("simulated kill between writing the temp file and moving it in place")
        return os.replace(src, dst)


def test_killed_write_leaves_previous_version(small_lake, monkeypatch):
    lake = small_lake
    day = SMALL_DAYS[1]
    assert _materialize_catalogs(lake).success
    assert _materialize_events(lake, day).success
    target = lake.events_day(day)
    old_bytes = _bytes(target)
    old = read_parquet(target)

    # New landing data for the day: the next version of the partition would differ.
    extra = old.head(3).select(
        "user_id", "item_id", pl.col("event_type").cast(pl.String), pl.col("ts").dt.epoch("s").alias("ts") + 1, "value"
    )
    extra.write_parquet(Path(lake.landing_dir("events").path) / "late.parquet")
    assert _materialize_catalogs(lake).success

    fake_os = _OsFailingReplace()
    monkeypatch.setattr(lake_module, "os", fake_os)
    failed = _materialize_events(lake, day, raise_on_error=False)
    assert not failed.success
    assert fake_os.calls, "the write was not attempted"

    # The previous version is intact and readable; no temp file looks like a partition.
    assert _bytes(target) == old_bytes
    assert read_parquet(target).equals(old)
    assert lake.event_days() == [day]
    day_dir = Path(target.path).parent
    leftovers = [p.name for p in day_dir.iterdir() if p.name != "part-0.parquet"]
    assert all(n.startswith(".") and n.endswith(".tmp") for n in leftovers), leftovers
    assert sorted(p.name for p in Path(lake.path("events").path).iterdir()) == [f"day={day.isoformat()}"]
    assert lake.read_events().equals(old)

    monkeypatch.undo()
    again = _materialize_events(lake, day)
    assert again.success
    new = read_parquet(target)
    assert new.height == old.height + 3
    assert _meta(again, "events")["reconciles"] is True


# --- (e) a failed blocking check -----------------------------------------------------------------


def test_failed_validation_does_not_publish(small_lake):
    lake = small_lake
    assert _materialize_catalogs(lake).success
    day, other = SMALL_DAYS[4], SMALL_DAYS[5]
    # Drop from the catalog one item that has events on `day` (not on `other`, so that day stays valid).
    staged_day = pl.read_parquet(sorted(Path(lake.cache.joinpath("staged").path).glob("*/good/day=*/*.parquet")))
    on_day = set(staged_day.filter(pl.col("ts").dt.date() == day)["item_id"].to_list())
    on_other = set(staged_day.filter(pl.col("ts").dt.date() == other)["item_id"].to_list())
    victim = sorted(on_day - on_other)[0]
    cat_path = Path(lake.catalog("items").path)
    pl.read_parquet(cat_path).filter(pl.col("item_id") != victim).write_parquet(cat_path)

    res = _materialize_events(lake, day, other, raise_on_error=False)
    evals = {e.check_name: e for e in res.get_asset_check_evaluations()}
    assert evals["events_expectations"].passed is False
    failures = str(evals["events_expectations"].metadata["failures"].value)
    assert day.isoformat() in failures and "_in_catalog" in failures
    assert other.isoformat() not in failures
    meta = _meta(res, "events")
    assert meta["days_failed_validation"] == 1

    assert not Path(lake.events_day(day).path).exists()  # not published
    assert lake.event_days() == [other]  # the valid day of the same run is


def test_failed_items_check_does_not_publish_catalog(small_lake, monkeypatch):
    from recsys_assets.defs.ingest import catalogs as catalogs_defs
    from recsys_assets.lib.ingest.validation import SuiteOutcome

    lake = small_lake
    monkeypatch.setattr(catalogs_defs, "validate_items", lambda frame: SuiteOutcome("items", False, []))
    res = dg.materialize(CATALOG_ASSETS, resources=_resources(lake), raise_on_error=False)
    assert _checks(res)["items_expectations"] is False
    assert not Path(lake.catalog("items").path).exists()


# --- (f) CLI -----------------------------------------------------------------------------------


def test_cli_ingest_synthetic(tmp_path, capsys):
    from recsys_assets.cli import main

    rc = main(["ingest", "--source", "synthetic", "--synthetic-events", "10000", "--lake", str(tmp_path / "lake")])
    out = capsys.readouterr().out
    assert rc == 0, out
    line = next(ln for ln in out.splitlines() if ln.startswith("reconciliation:"))
    assert "[OK]" in line and "rows read 10,000" in line
    assert Lake.at(tmp_path / "lake").event_days()


def test_cli_too_few_synthetic_events_is_a_one_line_error(tmp_path, capsys):
    from recsys_assets.cli import main

    rc = main(["ingest", "--source", "synthetic", "--synthetic-events", "3000", "--lake", str(tmp_path / "lake")])
    err = capsys.readouterr().err
    assert rc == 2
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "n_events" in errors[0]
    assert "Traceback" not in err


def test_cli_missing_grouplens_path(tmp_path, capsys):
    from recsys_assets.cli import main

    missing = tmp_path / "no_such_folder"
    rc = main(["ingest", "--source", "grouplens", "--path", str(missing), "--lake", str(tmp_path / "lake")])
    captured = capsys.readouterr()
    assert rc == 2
    err_lines = [ln for ln in captured.err.splitlines() if ln.startswith("error:")]
    assert len(err_lines) == 1 and str(missing) in err_lines[0] and "does not exist" in err_lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert "reconciliation" not in captured.out


def test_step_spans_time_every_step_of_a_run(small_lake):
    """runner.step_spans (the benchmarks' per-asset timings) reads one span per step from the run's event log."""
    from recsys_assets import runner

    inst = dg.DagsterInstance.ephemeral()
    result = _materialize_catalogs(small_lake, instance=inst)
    assert result.success
    spans = runner.step_spans(inst, result.run_id)
    executed = {e.step_key for e in result.all_events if e.is_step_success}
    assert executed and set(spans) == executed
    for start, end, ok in spans.values():
        assert ok and end is not None and start <= end
