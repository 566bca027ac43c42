"""Streaming ingest: a Parquet landing file staged chunk by chunk, days published in bounded batches.

The chunked parse must give exactly what one whole-file parse gives (same rows, same line
numbers, same deduplication across chunk boundaries), and the day batches must cover every
day once while never exceeding the row bound (except a single day larger than it).
"""

from __future__ import annotations

import gzip
import json
from datetime import date, datetime, timezone

import polars as pl
import pytest
from upath import UPath

from recsys_assets.lib.ingest import events as ev_mod
from recsys_assets.lib.ingest import landing
from recsys_assets.lib.ingest.config import IngestConfig
from recsys_assets.lib.ingest.events import build_day_partitions, iter_day_partitions, stage_landing_events, staged_first_days
from recsys_assets.lib.ingest.landing import iter_event_file, parse_event_file
from recsys_assets.lib.ingest.synthetic import SHOP_EVENTS_PER_ITEM, SHOP_EVENTS_PER_USER, shop_shape
from recsys_assets.lib.lake import Lake

NOW = datetime(2024, 6, 1, tzinfo=timezone.utc)


def _landing_parquet(lake: Lake, n: int = 2_000) -> None:
    """n events over 4 days, one exact duplicate pair split across rows 10 / n-5, and two bad rows."""
    users = [f"u{i % 37}" for i in range(n)]
    items = [f"i{(i * 7) % 53}" for i in range(n)]
    ts = [f"2024-01-0{2 + (i * 4) // n}T{(i % 24):02d}:{(i % 60):02d}:00+00:00" for i in range(n)]
    etype = ["view"] * n
    etype[100] = "teleport"  # bad: unknown type
    ts[200] = "yesterday"  # bad: unparseable
    users[n - 5], items[n - 5], ts[n - 5] = users[10], items[10], ts[10]  # a re-delivered event
    frame = pl.DataFrame({"user_id": users, "item_id": items, "event_type": etype, "ts": ts})
    path = lake.landing_dir("events").joinpath("big.parquet")
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path.path, row_group_size=300)


def test_chunked_parse_equals_whole_file_parse(tmp_path):
    lake = Lake.at(tmp_path)
    _landing_parquet(lake)
    path = lake.landing_dir("events").joinpath("big.parquet")
    whole = parse_event_file(path, IngestConfig(), NOW)
    chunks = list(iter_event_file(path, IngestConfig(), NOW, chunk_rows=256))
    assert len(chunks) == 8  # 2,000 rows / 256
    good = pl.concat([c.good for c in chunks])
    bad = pl.concat([c.bad for c in chunks])
    assert good.equals(whole.good)
    assert bad.equals(whole.bad)
    assert sorted(bad["line"].to_list()) == [101, 201]  # line numbers continue across chunks


def test_staged_days_match_and_batches_are_bounded(tmp_path, monkeypatch):
    lake = Lake.at(tmp_path)
    _landing_parquet(lake)
    monkeypatch.setattr(landing, "CHUNK_ROWS", 256)
    monkeypatch.setattr(ev_mod, "iter_event_file", lambda p, cfg, now: iter_event_file(p, cfg, now, chunk_rows=256))
    summary = stage_landing_events(lake, IngestConfig(), now=NOW)
    days = summary.days
    from pathlib import Path

    assert len(list(Path(lake.cache.path).glob("staged/*/good/day=*/part-*.parquet"))) >= 8  # one part per (chunk, day)
    assert days == [date(2024, 1, d) for d in (2, 3, 4, 5)]
    parts = build_day_partitions(lake, days)
    assert sum(p.duplicates_dropped for p in parts) == 1  # the duplicate straddles two chunks
    assert all(p.reconciles for p in parts)
    assert sum(p.events.height for p in parts) == 2_000 - 2 - 1
    # Batches: every day exactly once, in order, each batch within the bound unless it is one day.
    batches = list(iter_day_partitions(lake, days, max_rows=600))
    assert [p.day for b in batches for p in b] == days
    assert len(batches) >= 2
    for b in batches:
        assert len(b) == 1 or sum(p.rows_read for p in b) <= 600
    again = [p for b in batches for p in b]
    assert all(a.events.equals(b.events) for a, b in zip(parts, again))
    # The catalogs' first-seen days come from the per-file summaries.
    first = staged_first_days(lake, "user_id").sort("user_id")
    good = pl.concat([c.good for c in iter_event_file(lake.landing_dir("events").joinpath("big.parquet"), IngestConfig(), NOW)])
    want = good.group_by("user_id").agg(pl.col("ts").min().dt.date().alias("first_day")).sort("user_id")
    assert first.equals(want)


@pytest.mark.parametrize("n", [10_000, 1_000_000, 10_000_000])
def test_shop_shape_grows_users_and_items_with_events(n):
    users, items = shop_shape(n)
    assert users == max(2_000, round(n / SHOP_EVENTS_PER_USER))
    assert items == max(1_000, round(n / SHOP_EVENTS_PER_ITEM))
    assert shop_shape(n, 5, 6) == (5, 6)


def test_shop_shape_at_10m_looks_like_a_shop():
    assert shop_shape(10_000_000) == (303_030, 50_000)


# --- text landing files (JSONL / CSV, plain or compressed) are streamed -----------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402

from recsys_assets_tests.lib.ingest.test_landing_fuzz import DERANDOMIZE, landing_file  # noqa: E402


def _streamed_equals_whole(path, chunk_rows: int) -> int:
    """The streamed chunks of ``path`` concatenate to its whole-file parse; returns the number of chunks."""
    whole = parse_event_file(path, IngestConfig(), NOW)
    chunks = list(iter_event_file(path, IngestConfig(), NOW, chunk_rows=chunk_rows))
    assert pl.concat([c.good for c in chunks]).equals(whole.good)
    assert pl.concat([c.bad for c in chunks]).equals(whole.bad)
    return len(chunks)


@settings(max_examples=60, deadline=None, derandomize=DERANDOMIZE, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
@given(spec=landing_file())
def test_streamed_text_file_equals_whole_file_parse(spec, tmp_path):
    """Hostile JSONL/CSV files (BOM, LF/CRLF/CR, quoted newlines, bad bytes, gzip) read in 5-byte
    blocks and 3-row chunks give exactly the rows and line numbers of a whole-file parse."""
    name, data, _n = spec
    path = UPath(tmp_path) / name
    path.write_bytes(data)
    block = landing.STREAM_BLOCK
    landing.STREAM_BLOCK = 5  # a block boundary inside every line, CRLF pair and UTF-8 sequence
    try:
        _streamed_equals_whole(path, chunk_rows=3)
    finally:
        landing.STREAM_BLOCK = block


@pytest.mark.parametrize(
    "name, data",
    [
        ("empty.jsonl", b""),
        ("blank.csv", b" \r\n\n\t"),
        ("header_only.csv", b"user_id,item_id,event_type,ts\r\n"),
        ("bom_only.jsonl", b"\xef\xbb\xbf"),
        ("broken_quote.csv", b'user_id,item_id,event_type,ts\nu1,"i1,view,2024-01-02T00:00:00Z\nu2,i2,view,2024-01-02T00:00:00Z\n'),
        ("truncated.jsonl.gz", gzip.compress(b'{"user_id": "u1", "item_id": "i1", "event_type": "view", "ts": 1704153600}\n' * 50, mtime=0)[:150]),
    ],
)
def test_streamed_edge_files_equal_whole_file_parse(name, data, tmp_path):
    path = UPath(tmp_path) / name
    path.write_bytes(data)
    _streamed_equals_whole(path, chunk_rows=1)


def test_large_jsonl_is_staged_in_chunks(tmp_path):
    """A JSONL file of 2,000 rows is parsed 256 rows at a time: 8 chunks, as many rows as lines."""
    path = UPath(tmp_path) / "big.jsonl"
    lines = [json.dumps({"user_id": f"u{i % 37}", "item_id": f"i{i % 53}", "event_type": "view", "ts": 1704153600 + i}) for i in range(2_000)]
    path.write_text("\n".join(lines) + "\n")
    chunks = list(iter_event_file(path, IngestConfig(), NOW, chunk_rows=256))
    assert len(chunks) == 8 and sum(c.good.height for c in chunks) == 2_000
    assert chunks[-1].good["line"].to_list()[-1] == 2_000
