"""benchmarks/replicate_nights.py: one night's examples under the earlier partitions, each with its own snapshot."""

from __future__ import annotations

import importlib.util
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest

from recsys_assets.lib.lake import Lake, read_parquet, write_parquet_atomic
from recsys_assets.lib.ranking.examples import SNAPSHOT_COL, audit_examples
from recsys_assets.lib.snapshot import PROTOCOLS

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "replicate_nights.py"
DAY = date(2024, 2, 29)


@pytest.fixture(scope="module")
def replicate():
    spec = importlib.util.spec_from_file_location("replicate_nights", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.replicate


def test_copies_carry_their_own_snapshot_and_are_never_overwritten_silently(tmp_path, replicate):
    lake = Lake.at(tmp_path / "lake")
    night = pl.DataFrame({SNAPSHOT_COL: [DAY - timedelta(days=1)] * 3, "user_id": ["a", "a", "b"], "item_id": ["1", "2", "1"], "label": pl.Series([1, 0, 1], dtype=pl.Int8)})
    for p in PROTOCOLS:
        write_parquet_atomic(night, lake.ranker_examples_file(DAY, p))
    assert replicate(lake, DAY, 4) == {p: 3 for p in PROTOCOLS}
    for p in PROTOCOLS:
        for j in range(1, 4):
            copy = read_parquet(lake.ranker_examples_file(DAY - timedelta(days=j), p))
            assert copy.drop(SNAPSHOT_COL).equals(night.drop(SNAPSHOT_COL))
            assert copy.get_column(SNAPSHOT_COL).unique().to_list() == [DAY - timedelta(days=j + 1)]
            assert audit_examples([copy], DAY) == []  # every copy could train the day's rankers
        assert not lake.ranker_examples_file(DAY - timedelta(days=4), p).exists()
    with pytest.raises(SystemExit, match="--force"):
        replicate(lake, DAY, 4)
    assert replicate(lake, DAY, 4, force=True) == {p: 3 for p in PROTOCOLS}
    with pytest.raises(SystemExit, match="run the night"):
        replicate(lake, DAY + timedelta(days=1), 4)
