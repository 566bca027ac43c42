"""The rankers' training window (``nightly.training_window``): the last ``train_nights`` partitions, reaching further
back one night at a time while they hold fewer than ``min_train_queries`` labelled queries, never past
``max_train_nights``; the queries come from each examples file's record (or from the file where the record is
missing or older)."""

from __future__ import annotations

import json
from datetime import date, timedelta

import polars as pl
import pytest

from recsys_assets.lib.lake import Lake, write_parquet_atomic
from recsys_assets.lib.ranking.config import RankingConfig, RankingConfigError
from recsys_assets.lib.ranking.nightly import examples_record, record_examples_digest, training_window, training_windows_full

D = date(2024, 3, 1)
PROTOCOL = "temporal"


def _night(lake: Lake, part: date, users: int, record: bool = True) -> None:
    """Partition ``part``'s examples: snapshot part - 1, ``users`` labelled users with two candidates each."""
    frame = pl.DataFrame(
        {
            "snapshot": [part - timedelta(days=1)] * (2 * users),
            "user_id": [f"u{part:%m%d}_{i}" for i in range(users) for _ in range(2)],
            "item_id": ["a", "b"] * users,
            "label": [1, 0] * users,
        }
    )
    path = lake.ranker_examples_file(part, PROTOCOL)
    write_parquet_atomic(frame, path)
    if record:
        record_examples_digest(path)


@pytest.fixture
def lake(tmp_path) -> Lake:
    lake = Lake.at(tmp_path / "lake")
    for j in range(12):  # partitions D - 11 .. D, ten labelled users each
        _night(lake, D - timedelta(days=j), 10)
    return lake


def _parts(window) -> list[date]:
    return [d for d, _, _ in window.nights]


def test_window_reaches_back_until_it_holds_min_train_queries(lake):
    cfg = RankingConfig(train_nights=3, min_train_queries=45, max_train_nights=8)
    w = training_window(lake, D, PROTOCOL, cfg)
    # 3 nights hold 30 < 45 queries: two more nights, oldest first
    assert _parts(w) == [D - timedelta(days=j) for j in range(4, -1, -1)]
    assert (w.queries, w.missing, w.problems) == (50, [], [])
    # enough in the first k nights: exactly k
    w = training_window(lake, D, PROTOCOL, RankingConfig(train_nights=3, min_train_queries=30, max_train_nights=8))
    assert _parts(w) == [D - timedelta(days=j) for j in (2, 1, 0)] and w.queries == 30
    # never past max_train_nights, however few the queries
    w = training_window(lake, D, PROTOCOL, RankingConfig(train_nights=3, min_train_queries=10_000, max_train_nights=8))
    assert len(w.nights) == 8 and w.queries == 80 and not w.missing


def test_missing_partitions_are_listed_and_leave_the_window_short(lake):
    for j in (5, 6, 7):
        lake.ranker_examples_file(D - timedelta(days=j), PROTOCOL).unlink()
    cfg = RankingConfig(train_nights=3, min_train_queries=70, max_train_nights=8)
    w = training_window(lake, D, PROTOCOL, cfg)
    assert _parts(w) == [D - timedelta(days=j) for j in (4, 3, 2, 1, 0)]
    assert w.missing == [str(D - timedelta(days=j)) for j in (7, 6, 5)]
    assert w.queries == 50  # short of 70: earlier nights would add queries
    assert not training_windows_full(lake, D, [PROTOCOL], cfg)
    assert training_windows_full(lake, D, [PROTOCOL], RankingConfig(train_nights=3, min_train_queries=50, max_train_nights=8))
    assert not training_windows_full(Lake.at(lake.root.joinpath("empty")), D, [PROTOCOL], cfg)  # no night at all


def test_queries_without_a_record_or_from_older_code_are_counted_from_the_file(lake):
    path = lake.ranker_examples_file(D, PROTOCOL)
    recorded = examples_record(path)
    assert recorded["queries"] == 10
    rec = json.loads(path.with_suffix(".json").read_bytes())
    del rec["queries"]  # a record written before queries were recorded
    path.with_suffix(".json").write_bytes(json.dumps(rec).encode())
    assert examples_record(path) == recorded
    path.with_suffix(".json").unlink()
    assert examples_record(path) == recorded
    _night(lake, D, 7, record=False)  # republished without a record: its own digest and queries
    assert examples_record(path)["queries"] == 7 and examples_record(path)["blake2b"] != recorded["blake2b"]


def test_max_train_nights_below_train_nights_is_refused():
    with pytest.raises(RankingConfigError, match="max_train_nights"):
        RankingConfig(train_nights=14, max_train_nights=7)
