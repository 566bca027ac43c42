"""A day's events are read once per run (DaySnapshot), and late data still invalidates the snapshot."""

from __future__ import annotations

import polars as pl
import pytest

from recsys_assets.defs.resources import ModelsResource
from recsys_assets.lib.day import DaySnapshot, clear_cache
from recsys_assets.lib.ingest.catalog import read_catalog
from recsys_assets.lib.lake import Lake, write_parquet_atomic
from recsys_assets_tests.defs import tiny_world as tw


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Lake:
    root = str(tmp_path_factory.mktemp("day_snapshot") / "lake")
    tw.make_world(root)
    tw.materialize_ingest(root)
    return Lake.at(root)


def test_one_day_job_reads_the_events_once(lake, monkeypatch):
    reads: list[tuple] = []
    original = Lake.read_events

    def counting(self, before=None, days=None):
        reads.append((before, tuple(days) if days else None))
        return original(self, before=before, days=days)

    monkeypatch.setattr(Lake, "read_events", counting)
    clear_cache()
    result = tw.materialize_day(str(lake.root.path))
    assert result.success
    # Every asset of the day shares one snapshot: the events before D once, day D's events once.
    assert sorted(reads, key=str) == sorted([(tw.LAST_DAY, None), (None, (tw.LAST_DAY,))], key=str), reads


def test_republished_day_invalidates_the_snapshot(lake):
    clear_cache()
    cfg = ModelsResource(**tw.tiny_models().model_dump()).feature_config()
    items = read_catalog(lake, "items")
    first = DaySnapshot.of(lake, tw.LAST_DAY, items, cfg)
    assert DaySnapshot.of(lake, tw.LAST_DAY, items, cfg) is first
    n_before = first.events_before.height
    # Late data: an earlier day is republished with one event fewer.
    day = tw.DAYS[3]
    events = pl.read_parquet(lake.events_day(day).path)
    write_parquet_atomic(events.head(events.height - 1), lake.events_day(day))
    again = DaySnapshot.of(lake, tw.LAST_DAY, items, cfg)
    assert again is not first
    assert again.events_before.height == n_before - 1
    # A rebuilt catalogue is another snapshot too.
    assert DaySnapshot.of(lake, tw.LAST_DAY, items.head(items.height - 1), cfg) is not again
