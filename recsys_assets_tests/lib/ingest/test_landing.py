"""Landing files -> normalized rows + quarantine: every bad row is kept with file, line, field, reason.

One test per kind of bad input; each also checks that the good rows of the same file survive.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from pathlib import Path

import polars as pl
import pytest
from upath import UPath

from recsys_assets.lib.ingest.config import IngestConfig
from recsys_assets.lib.ingest.events import build_day_partitions, stage_landing_events
from recsys_assets.lib.ingest.landing import BAD_SCHEMA, STAGED_SCHEMA, ParsedFile, parse_event_file
from recsys_assets.lib.lake import Lake

NOW = datetime(2024, 6, 1, tzinfo=timezone.utc)
CSV_HEADER = "user_id,item_id,event_type,ts,value"


def _ev(user: str = "u1", item: str = "i1", etype: str = "view", ts="2024-01-02T10:00:00+00:00", **extra) -> dict:
    return {"user_id": user, "item_id": item, "event_type": etype, "ts": ts, **extra}


def _line(obj: dict) -> bytes:
    return json.dumps(obj).encode("utf-8")


def _parse(tmp_path: Path, name: str, data: bytes, cfg: IngestConfig | None = None) -> ParsedFile:
    path = tmp_path / name
    path.write_bytes(data)
    parsed = parse_event_file(UPath(path), cfg or IngestConfig(), now=NOW)
    assert parsed.source_file == name
    assert dict(parsed.good.schema) == STAGED_SCHEMA
    assert dict(parsed.bad.schema) == BAD_SCHEMA
    return parsed


def _one_bad(parsed: ParsedFile, line: int, field: str, *words: str) -> dict:
    """The single quarantined row: it has the expected file, line, field and a reason naming the problem."""
    assert parsed.bad.height == 1, parsed.bad
    row = parsed.bad.row(0, named=True)
    assert row["source_file"] == parsed.source_file
    assert row["line"] == line
    assert row["field"] == field
    for w in words:
        assert w.lower() in row["reason"].lower(), row["reason"]
    return row


def _good_lines(parsed: ParsedFile) -> list[int]:
    return sorted(parsed.good["line"].to_list())


def _jsonl_with_bad(bad: bytes) -> bytes:
    """good (line 1), bad (line 2), good (line 3)."""
    return b"\n".join([_line(_ev("u1")), bad, _line(_ev("u3")), b""])


# --- JSONL / CSV row-level problems --------------------------------------------------------


def test_malformed_json_line(tmp_path):
    parsed = _parse(tmp_path, "a.jsonl", _jsonl_with_bad(b'{"user_id": "u2", "item_id": '))
    row = _one_bad(parsed, 2, "(row)", "malformed JSON")
    assert row["raw"] == '{"user_id": "u2", "item_id": '
    assert row["day"] is None
    assert _good_lines(parsed) == [1, 3]
    assert parsed.good["user_id"].to_list() == ["u1", "u3"]


def test_json_line_that_is_not_an_object(tmp_path):
    parsed = _parse(tmp_path, "a.jsonl", _jsonl_with_bad(b'["u2", "i1"]'))
    _one_bad(parsed, 2, "(row)", "JSON object")
    assert _good_lines(parsed) == [1, 3]


def test_csv_wrong_field_count(tmp_path):
    data = f"{CSV_HEADER}\nu1,i1,view,2024-01-02T10:00:00+00:00,\nu2,i2,view\nu3,i3,click,2024-01-02T11:00:00+00:00,2\n"
    parsed = _parse(tmp_path, "e.csv", data.encode())
    row = _one_bad(parsed, 3, "(row)", "expected 5 fields, got 3")  # header = line 1
    assert row["raw"] == "u2,i2,view"
    assert _good_lines(parsed) == [2, 4]
    assert parsed.good.filter(pl.col("line") == 4)["value"].item() == 2.0


def test_csv_unterminated_quote(tmp_path):
    data = f'{CSV_HEADER}\nu1,i1,view,2024-01-02T10:00:00+00:00,\nu2,"i2,view,2024-01-02T10:00:00+00:00,\nu3,i3,view,2024-01-02T10:00:00+00:00,\n'
    parsed = _parse(tmp_path, "e.csv", data.encode())
    _one_bad(parsed, 3, "(row)", "malformed CSV")
    assert _good_lines(parsed) == [2, 4]


def test_missing_field(tmp_path):
    no_item = _ev("u2")
    del no_item["item_id"]
    parsed = _parse(tmp_path, "a.jsonl", _jsonl_with_bad(_line(no_item)))
    row = _one_bad(parsed, 2, "item_id", "missing item_id")
    assert row["day"] == date(2024, 1, 2)  # the timestamp is readable: filed under its day
    assert _good_lines(parsed) == [1, 3]


def test_missing_field_in_csv_is_empty_cell(tmp_path):
    data = f"{CSV_HEADER}\nu1,i1,view,2024-01-02T10:00:00+00:00,\n,i2,view,2024-01-02T10:00:00+00:00,\n"
    parsed = _parse(tmp_path, "e.csv", data.encode())
    _one_bad(parsed, 3, "user_id", "missing user_id")
    assert _good_lines(parsed) == [2]


def test_mistyped_value(tmp_path):
    parsed = _parse(tmp_path, "a.jsonl", _jsonl_with_bad(_line(_ev("u2", value="abc"))))
    _one_bad(parsed, 2, "value", "'abc'", "not a number")
    assert _good_lines(parsed) == [1, 3]
    assert parsed.good["value"].to_list() == [1.0, 1.0]  # no value -> 1.0


def test_mistyped_value_in_csv(tmp_path):
    data = f"{CSV_HEADER}\nu1,i1,rating,2024-01-02T10:00:00+00:00,abc\nu2,i2,rating,2024-01-02T10:00:00+00:00,4.5\n"
    parsed = _parse(tmp_path, "e.csv", data.encode())
    _one_bad(parsed, 2, "value", "abc")
    assert parsed.good["value"].to_list() == [4.5]


@pytest.mark.parametrize("ts", ["yesterday", "2024-13-45T10:00:00+00:00", "02/01/2024 10:00"])
def test_unparseable_timestamp(tmp_path, ts):
    parsed = _parse(tmp_path, "a.jsonl", _jsonl_with_bad(_line(_ev("u2", ts=ts))))
    row = _one_bad(parsed, 2, "ts", "unparseable timestamp", ts)
    assert row["day"] is None  # no readable day: goes to quarantine/events/day=unknown
    assert _good_lines(parsed) == [1, 3]


@pytest.mark.parametrize("ts", ["1800-05-01T00:00:00+00:00", "2999-01-01T00:00:00+00:00", "-100000000"])
def test_out_of_range_timestamp(tmp_path, ts):
    parsed = _parse(tmp_path, "a.jsonl", _jsonl_with_bad(_line(_ev("u2", ts=ts))))
    row = _one_bad(parsed, 2, "ts", "out of range")
    assert row["day"] is None
    assert _good_lines(parsed) == [1, 3]


def test_max_future_days_is_relative_to_now(tmp_path):
    cfg = IngestConfig(max_future_days=1)
    tomorrow_ish = "2024-06-01T23:00:00+00:00"  # < now + 1 day: kept
    too_far = "2024-06-03T00:00:00+00:00"  # > now + 1 day: quarantined
    data = b"\n".join([_line(_ev("u1", ts=tomorrow_ish)), _line(_ev("u2", ts=too_far))])
    parsed = _parse(tmp_path, "a.jsonl", data, cfg)
    _one_bad(parsed, 2, "ts", "out of range")
    assert _good_lines(parsed) == [1]


def test_timestamp_without_offset_is_rejected(tmp_path):
    parsed = _parse(tmp_path, "a.jsonl", _jsonl_with_bad(_line(_ev("u2", ts="2024-01-02T10:00:00"))))
    _one_bad(parsed, 2, "ts", "2024-01-02T10:00:00", "offset")
    assert _good_lines(parsed) == [1, 3]


def test_unknown_event_type(tmp_path):
    parsed = _parse(tmp_path, "a.jsonl", _jsonl_with_bad(_line(_ev("u2", etype="teleport"))))
    _one_bad(parsed, 2, "event_type", "unknown event_type", "teleport")
    assert _good_lines(parsed) == [1, 3]


def test_non_utf8_jsonl_line(tmp_path):
    bad = b'{"user_id": "u\xff\xfe2", "item_id": "i1", "event_type": "view", "ts": "2024-01-02T10:00:00+00:00"}'
    parsed = _parse(tmp_path, "a.jsonl", _jsonl_with_bad(bad))
    row = _one_bad(parsed, 2, "(row)", "UTF-8")
    assert "\ufffd" in row["raw"]  # kept (with replacement chars) so that an analyst can see it
    assert _good_lines(parsed) == [1, 3]


def test_non_utf8_csv_line(tmp_path):
    data = (
        f"{CSV_HEADER}\nu1,i1,view,2024-01-02T10:00:00+00:00,\n".encode()
        + b"u\xe92,i2,view,2024-01-02T10:00:00+00:00,\n"  # latin-1 e-acute
        + b"u3,i3,view,2024-01-02T10:00:00+00:00,\n"
    )
    parsed = _parse(tmp_path, "e.csv", data)
    _one_bad(parsed, 3, "(row)", "UTF-8")
    assert _good_lines(parsed) == [2, 4]


def test_first_failing_check_names_the_field(tmp_path):
    # missing user_id AND a bad timestamp: the row is quarantined once, under the first check.
    obj = _ev("u2", ts="nope")
    del obj["user_id"]
    parsed = _parse(tmp_path, "a.jsonl", _jsonl_with_bad(_line(obj)))
    _one_bad(parsed, 2, "user_id", "missing user_id")


def test_rating_out_of_range_and_without_value(tmp_path):
    data = b"\n".join(
        [
            _line(_ev("u1", etype="rating", value=4)),
            _line(_ev("u2", etype="rating", value=11)),
            _line(_ev("u3", etype="rating")),
            _line(_ev("u4", etype="purchase", value=-1)),
        ]
    )
    parsed = _parse(tmp_path, "a.jsonl", data)
    assert _good_lines(parsed) == [1]
    bad = {r["line"]: r for r in parsed.bad.iter_rows(named=True)}
    assert set(bad) == {2, 3, 4}
    assert bad[2]["field"] == "value" and "outside" in bad[2]["reason"]
    assert bad[3]["field"] == "value" and "without value" in bad[3]["reason"]
    assert bad[4]["field"] == "value" and "out of range" in bad[4]["reason"]


# --- whole-file problems ------------------------------------------------------------------


@pytest.mark.parametrize("name,data", [("e.jsonl", b""), ("e.csv", b"  \n\n"), ("e.parquet", b"")])
def test_empty_file(tmp_path, name, data):
    parsed = _parse(tmp_path, name, data)
    assert parsed.good.height == 0
    row = _one_bad(parsed, 0, "(file)", "empty")
    assert row["day"] is None


def test_csv_with_only_a_header(tmp_path):
    parsed = _parse(tmp_path, "e.csv", f"{CSV_HEADER}\n".encode())
    assert parsed.good.height == 0
    _one_bad(parsed, 0, "(file)", "no data rows")


def test_truncated_parquet(tmp_path):
    frame = pl.DataFrame({"user_id": ["u1", "u2"], "item_id": ["i1", "i2"], "event_type": ["view", "click"], "ts": [1704189600, 1704189700]})
    full = tmp_path / "full.parquet"
    frame.write_parquet(full)
    assert _parse(tmp_path, "full.parquet", full.read_bytes()).good.height == 2  # the uncut file is fine
    data = full.read_bytes()
    parsed = _parse(tmp_path, "cut.parquet", data[: len(data) // 2])
    assert parsed.good.height == 0
    _one_bad(parsed, 0, "(file)", "unreadable Parquet")


def test_unsupported_suffix_is_quarantined_as_a_file(tmp_path):
    parsed = _parse(tmp_path, "e.xml", b"<events/>")
    _one_bad(parsed, 0, "(file)", "unsupported file type")


# --- accepted variants ----------------------------------------------------------------------


def test_epoch_seconds_and_z_suffix_accepted(tmp_path):
    expected = datetime(2024, 1, 2, 10, 0, tzinfo=timezone.utc)
    data = b"\n".join(
        [
            _line(_ev("u1", ts=1704189600)),  # JSON int
            _line(_ev("u2", ts="1704189600")),  # string
            _line(_ev("u3", ts=1704189600.25)),  # fractional seconds
            _line(_ev("u4", ts="2024-01-02T10:00:00Z")),
            _line(_ev("u5", ts="2024-01-02T10:00:00.500Z")),
            _line(_ev("u6", ts="2024-01-02T12:00:00+02:00")),  # converted to UTC
            _line(_ev("u7", ts="2024-01-02 10:00:00+00:00")),  # space separator
        ]
    )
    parsed = _parse(tmp_path, "a.jsonl", data)
    assert parsed.bad.height == 0, parsed.bad
    ts = dict(zip(parsed.good["user_id"], parsed.good["ts"]))
    assert ts["u1"] == ts["u2"] == ts["u4"] == ts["u6"] == ts["u7"] == expected
    assert ts["u3"] == datetime(2024, 1, 2, 10, 0, 0, 250_000, tzinfo=timezone.utc)
    assert ts["u5"] == datetime(2024, 1, 2, 10, 0, 0, 500_000, tzinfo=timezone.utc)
    assert parsed.good.schema["ts"] == pl.Datetime("us", "UTC")


def test_epoch_and_z_in_csv(tmp_path):
    data = f"{CSV_HEADER}\nu1,i1,view,1704189600,\nu2,i1,view,2024-01-02T10:00:00Z,\n"
    parsed = _parse(tmp_path, "e.csv", data.encode())
    assert parsed.bad.height == 0
    assert parsed.good["ts"].n_unique() == 1


def test_parquet_datetime_and_epoch_columns(tmp_path):
    naive = pl.DataFrame(
        {"user_id": ["u1"], "item_id": ["i1"], "event_type": ["VIEW"], "ts": [datetime(2024, 1, 2, 10)], "value": [2]}
    )
    parsed = _parse(tmp_path, "n.parquet", _to_parquet(naive, tmp_path))
    assert parsed.bad.height == 0
    assert parsed.good["ts"].item() == datetime(2024, 1, 2, 10, tzinfo=timezone.utc)  # naive datetime = UTC
    assert parsed.good["event_type"].cast(pl.String).item() == "view"
    assert parsed.good["value"].item() == 2.0
    assert parsed.good["line"].item() == 1


def _to_parquet(frame: pl.DataFrame, tmp_path: Path) -> bytes:
    p = tmp_path / "_tmp.parquet"
    frame.write_parquet(p)
    return p.read_bytes()


def test_field_map_renames_landing_fields(tmp_path):
    cfg = IngestConfig(field_map={"uid": "user_id", "sku": "item_id", "kind": "event_type", "time": "ts", "qty": "value"})
    rows = [{"uid": "u1", "sku": "i1", "kind": "purchase", "time": "2024-01-02T10:00:00Z", "qty": 3}]
    parsed = _parse(tmp_path, "a.jsonl", _line(rows[0]), cfg)
    assert parsed.bad.height == 0
    got = parsed.good.row(0, named=True)
    assert (got["user_id"], got["item_id"], str(got["event_type"]), got["value"]) == ("u1", "i1", "purchase", 3.0)
    # CSV headers and Parquet columns are renamed too.
    csv_parsed = _parse(tmp_path, "b.csv", b"uid,sku,kind,time,qty\nu1,i1,purchase,2024-01-02T10:00:00Z,3\n", cfg)
    assert csv_parsed.bad.height == 0 and csv_parsed.good["user_id"].to_list() == ["u1"]
    pq_frame = pl.DataFrame({"uid": ["u1"], "sku": ["i1"], "kind": ["purchase"], "time": [1704189600]})
    pq_parsed = _parse(tmp_path, "c.parquet", _to_parquet(pq_frame, tmp_path), cfg)
    assert pq_parsed.bad.height == 0 and pq_parsed.good["item_id"].to_list() == ["i1"]
    # Without the map the same file has no user_id.
    plain = _parse(tmp_path, "a.jsonl", _line(rows[0]))
    _one_bad(plain, 1, "user_id", "missing user_id")


def test_event_type_map_extension(tmp_path):
    base = IngestConfig()
    cfg = IngestConfig(event_type_map={**base.event_type_map, "wishlist": "cart", "stream": "view"})
    data = b"\n".join([_line(_ev("u1", etype="Wishlist")), _line(_ev("u2", etype="stream")), _line(_ev("u3", etype="teleport"))])
    parsed = _parse(tmp_path, "a.jsonl", data, cfg)
    assert parsed.good["event_type"].cast(pl.String).to_list() == ["cart", "view"]
    _one_bad(parsed, 3, "event_type", "teleport")
    # The defaults alone do not know "wishlist".
    assert _parse(tmp_path, "a.jsonl", data).good.height == 0


def test_default_event_type_aliases(tmp_path):
    rows = [_ev("u1", etype=t) for t in ("impression", "add_to_cart", "BUY")] + [_ev("u1", etype=" rate ", value=3)]
    data = b"\n".join(_line(r) for r in rows) + b"\n"
    parsed = _parse(tmp_path, "a.jsonl", data)
    assert parsed.bad.height == 0, parsed.bad
    assert parsed.good["event_type"].cast(pl.String).to_list() == ["view", "cart", "purchase", "rating"]


# --- staging: dedup and reconciliation ------------------------------------------------------


def _write_landing(lake: Lake, name: str, data: bytes) -> None:
    p = Path(lake.landing_dir("events").path) / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)


def test_same_event_in_two_files_is_kept_once(tmp_path):
    lake = Lake.at(tmp_path / "lake")
    shared = _ev("u1", "i1", "click", "2024-01-02T10:00:00Z")
    _write_landing(lake, "a.jsonl", b"\n".join([_line(shared), _line(_ev("u2", ts="2024-01-02T11:00:00Z"))]))
    # The same event re-delivered in another format (epoch ts, CSV) plus one bad row and one next-day row.
    _write_landing(
        lake,
        "b.csv",
        f"{CSV_HEADER}\nu1,i1,click,1704189600,\nu3,i3,teleport,2024-01-02T12:00:00Z,\nu4,i4,view,2024-01-03T00:00:00Z,\n".encode(),
    )
    summary = stage_landing_events(lake, IngestConfig(), now=NOW)
    assert sorted(summary.parsed_now) == ["a.jsonl", "b.csv"]
    assert summary.days == [date(2024, 1, 2), date(2024, 1, 3)]
    assert summary.manifest["rows_read"].sum() == 5

    d2, d3 = build_day_partitions(lake, [date(2024, 1, 2), date(2024, 1, 3)])
    assert d2.events.height == 2  # u1's click once + u2's view
    assert d2.duplicates_dropped == 1
    assert d2.quarantine.height == 1 and d2.quarantine["source_file"].item() == "b.csv" and d2.quarantine["line"].item() == 3
    assert d2.rows_read == 4 and d2.rows_read == d2.events.height + d2.quarantine.height + d2.duplicates_dropped
    assert d2.reconciles and d3.reconciles
    assert (d3.events.height, d3.duplicates_dropped, d3.rows_read) == (1, 0, 1)
    # Sorted by ts, unique ids, the normalized schema only.
    assert d2.events["event_id"].n_unique() == 2
    assert d2.events["ts"].is_sorted()
    assert "source_file" not in d2.events.columns

    # Staging is cached per content: a second run parses nothing and gives the same partitions.
    again = stage_landing_events(lake, IngestConfig(), now=NOW)
    assert again.parsed_now == [] and sorted(again.reused) == ["a.jsonl", "b.csv"]
    d2b, _ = build_day_partitions(lake, [date(2024, 1, 2), date(2024, 1, 3)])
    assert d2b.events.equals(d2.events)


def test_distinct_events_are_not_deduplicated(tmp_path):
    lake = Lake.at(tmp_path / "lake")
    rows = [
        _ev("u1", "i1", "click", "2024-01-02T10:00:00Z"),
        _ev("u1", "i1", "view", "2024-01-02T10:00:00Z"),  # other type
        _ev("u1", "i1", "click", "2024-01-02T10:00:01Z"),  # other second
        _ev("u1", "i1", "click", "2024-01-02T10:00:00Z", value=2),  # other value
    ]
    _write_landing(lake, "a.jsonl", b"\n".join(_line(r) for r in rows))
    stage_landing_events(lake, IngestConfig(), now=NOW)
    (d2,) = build_day_partitions(lake, [date(2024, 1, 2)])
    assert d2.events.height == 4 and d2.duplicates_dropped == 0


def test_changing_config_restages(tmp_path):
    lake = Lake.at(tmp_path / "lake")
    _write_landing(lake, "a.jsonl", _line(_ev("u1", etype="wishlist")))
    first = stage_landing_events(lake, IngestConfig(), now=NOW)
    assert first.manifest["rows_bad"].to_list() == [1]
    cfg = IngestConfig(event_type_map={**IngestConfig().event_type_map, "wishlist": "cart"})
    second = stage_landing_events(lake, cfg, now=NOW)
    assert second.parsed_now == ["a.jsonl"]
    assert second.manifest["rows_good"].to_list() == [1]
