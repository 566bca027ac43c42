"""The hostile corpus at the library level: one bad thing per case, the rest of the file publishes.

Every case asserts where the bad value went (file, line, field, reason) AND that
the valid rows beside it survive; the CLI-level cases (exit codes, reconciliation
lines) are in recsys_assets_tests/defs/test_hostile_cli.py, the fuzz test in
test_landing_fuzz.py. ``benchmarks/hostile_corpus.py`` runs the same cases through
the real CLI and prints the before/after table.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
from datetime import date, datetime, timezone
from pathlib import Path

import duckdb
import polars as pl
import pytest
from upath import UPath

from recsys_assets.lib.features.encoders import image_vectors
from recsys_assets.lib.ingest.catalog import build_items_counted, build_users, parse_vector, vector_dim
from recsys_assets.lib.ingest.config import PARTITIONS_START_ENV, IngestConfig, partitions_start
from recsys_assets.lib.ingest.events import (
    build_day_partitions,
    stage_landing_events,
    stale_event_days,
    unknown_day_quarantine,
    unpublish_days,
    publish_day,
)
from recsys_assets.lib.ingest.landing import list_landing, parse_event_file
from recsys_assets.lib.ingest.validation import validate_events, validate_items
from recsys_assets.lib.lake import Lake, safe_name
from recsys_assets_tests.duckdb_lock import duckdb_lock_held

NOW = datetime(2024, 6, 1, tzinfo=timezone.utc)
EMPTY_FIRST_DAYS = pl.DataFrame(schema={"item_id": pl.String, "first_day": pl.Date})


def _ev(user="u1", item="i1", ts="2024-03-02T10:00:00Z", etype="view", **extra) -> dict:
    return {"user_id": user, "item_id": item, "event_type": etype, "ts": ts, **extra}


def _jsonl(rows) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()


def _parse(tmp_path: Path, name: str, data: bytes, cfg: IngestConfig | None = None):
    path = tmp_path / name
    path.write_bytes(data)
    return parse_event_file(UPath(path), cfg or IngestConfig(), now=NOW)


def _bad(parsed) -> list[tuple]:
    return parsed.bad.select("line", "field", "reason").rows()


def _lake_with(tmp_path: Path, kind: str, files: dict[str, bytes]) -> Lake:
    lake = Lake.at(tmp_path / "lake")
    folder = tmp_path / "lake" / "landing" / kind
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return lake


def _items(n: int = 6, dim: int = 4) -> list[dict]:
    return [{"item_id": f"i{i:02d}", "title": f"Item {i}", "year": 1990 + i, "image_vector": [0.5] * dim} for i in range(n)]


# --- (1) events before the partitions' start ---------------------------------------------------


def test_event_before_partitions_start_is_quarantined_not_fatal(tmp_path):
    parsed = _parse(tmp_path, "e.jsonl", _jsonl([_ev("u1"), _ev("u2", ts="1995-06-01T10:00:00Z"), _ev("u3")]))
    assert parsed.good["user_id"].to_list() == ["u1", "u3"]
    [(line, field, reason)] = _bad(parsed)
    assert (line, field) == (2, "ts")
    assert "before the first daily partition 1997-09-01" in reason and PARTITIONS_START_ENV in reason
    assert parsed.bad["day"].to_list() == [None]  # no partition: filed under day=unknown


def test_partitions_start_is_configurable(tmp_path, monkeypatch):
    monkeypatch.setenv(PARTITIONS_START_ENV, "1990-01-01")
    assert partitions_start() == date(1990, 1, 1)
    parsed = _parse(tmp_path, "e.jsonl", _jsonl([_ev("u1"), _ev("u2", ts="1995-06-01T10:00:00Z")]))
    assert parsed.good["user_id"].to_list() == ["u1", "u2"]
    monkeypatch.setenv(PARTITIONS_START_ENV, "not-a-day")
    from recsys_assets.lib.errors import RecsysError

    with pytest.raises(RecsysError, match=PARTITIONS_START_ENV):
        partitions_start()


def test_the_dagster_partitions_start_where_ingest_stops_accepting():
    from recsys_assets.defs.partitions import daily_partitions

    first = daily_partitions.get_first_partition_key()
    assert first == partitions_start().isoformat() == IngestConfig().min_ts.date().isoformat()


# --- (2) + (4) image_vector --------------------------------------------------------------------


@pytest.mark.parametrize(
    "value,words",
    [
        ("[1, 2", "not valid JSON"),
        (["a", "b", "c", "d"], "flat list of numbers"),
        ({"x": 1}, "must be a JSON list"),
        (3, "must be a JSON list"),
        ([[1, 2], [3, 4]], "flat list of numbers"),
        ([1, "NaN", 0, 0], "flat list of numbers"),
        ([1, True, 0, 0], "flat list of numbers"),
        ([0.1, 0.2, 0.3], "has length 3; the catalogue's vectors have length 4"),
    ],
)
def test_malformed_or_wrong_length_image_vector_quarantines_its_row(tmp_path, value, words):
    items = _items()
    items[3]["image_vector"] = value
    lake = _lake_with(tmp_path, "items", {"items.jsonl": _jsonl(items)})
    built = build_items_counted(lake, EMPTY_FIRST_DAYS, IngestConfig())
    assert built.bad.select("source_file", "line", "field").rows() == [("items.jsonl", 4, "image_vector")]
    assert words in built.bad["reason"][0]
    frame = built.frame
    assert frame["item_id"].to_list() == ["i00", "i01", "i02", "i04", "i05"]  # the other rows publish
    assert built.reconciles and built.rows_read == 6
    # What ingest accepts, the embedding stage accepts (it refuses mixed lengths).
    assert image_vectors(frame).shape == (5, 4)


def test_nan_literal_and_huge_values_are_refused():
    assert parse_vector("[NaN, 1]")[1] and parse_vector("[1e39, 1]")[1]
    assert parse_vector("[]") == (None, None) and parse_vector(None) == (None, None)
    assert parse_vector("[1, 2.5]") == ([1.0, 2.5], None)


def test_vector_dim_is_the_most_common_length_or_configured(tmp_path):
    assert vector_dim([4, 4, 3, 4, 3]) == 4
    assert vector_dim([3, 4]) == 3  # a tie: the smaller
    assert vector_dim([3, 4, 4], configured=3) == 3
    items = _items(4)
    items[0]["image_vector"] = [1.0, 2.0]
    lake = _lake_with(tmp_path, "items", {"items.jsonl": _jsonl(items)})
    built = build_items_counted(lake, EMPTY_FIRST_DAYS, IngestConfig(image_vector_dim=2))
    assert built.bad["line"].to_list() == [2, 3, 4] and built.frame["item_id"].to_list() == ["i00"]


def test_csv_items_image_vector_as_json_text(tmp_path):
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["item_id", "title", "image_vector"])
    w.writerow(["i1", "ok", "[1, 2]"])
    w.writerow(["i2", "bad", "[1, 2"])
    w.writerow(["i3", "none", ""])
    lake = _lake_with(tmp_path, "items", {"items.csv": buf.getvalue().encode()})
    built = build_items_counted(lake, EMPTY_FIRST_DAYS, IngestConfig())
    assert built.bad.select("line", "field").rows() == [(3, "image_vector")]
    assert built.frame.sort("item_id")["image_vector"].to_list() == [[1.0, 2.0], None]


# --- (3) ids that collide after whitespace normalisation -------------------------------------


def test_ids_are_stripped_before_later_rows_replace_earlier_ones(tmp_path):
    items = _items(6)
    items.append({**items[5], "item_id": " i05 ", "title": "Item 5, padded id"})
    lake = _lake_with(tmp_path, "items", {"items.jsonl": _jsonl(items)})
    built = build_items_counted(lake, EMPTY_FIRST_DAYS, IngestConfig())
    assert built.frame["item_id"].to_list() == [f"i{i:02d}" for i in range(6)]
    assert built.frame.filter(pl.col("item_id") == "i05")["title"].item() == "Item 5, padded id"  # the later row wins
    assert built.superseded == 1 and built.bad.height == 0 and built.reconciles
    assert validate_items(built.frame).success


def test_user_ids_are_stripped_before_dedupe(tmp_path):
    data = _jsonl([{"user_id": "u1", "profile": "a"}, {"user_id": " u1", "profile": "b"}, {"user_id": "  ", "profile": "c"}])
    lake = _lake_with(tmp_path, "users", {"users.jsonl": data})
    users, bad = build_users(lake, pl.DataFrame(schema={"user_id": pl.String, "first_day": pl.Date}), IngestConfig())
    assert users.select("user_id", "profile").rows() == [("u1", "b")]
    assert bad.select("line", "field").rows() == [(3, "user_id")]


# --- (6) real CSV parsing --------------------------------------------------------------------


def test_csv_quoted_newline_is_one_event(tmp_path):
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["user_id", "item_id", "event_type", "ts", "note"])
    w.writerow(["u1", "i1", "view", "2024-03-02T10:00:00Z", "ok"])
    w.writerow(["u2", "i2", "view", "2024-03-02T10:00:00Z", "first line\nsecond line, with a comma"])
    w.writerow(["u3", "i3", "click", "2024-03-02T11:00:00Z", "ok"])
    parsed = _parse(tmp_path, "e.csv", buf.getvalue().encode())
    assert parsed.bad.height == 0
    assert parsed.good.select("user_id", "line").rows() == [("u1", 2), ("u2", 3), ("u3", 5)]  # lines are physical lines


def test_items_csv_with_multiline_description_keeps_the_item(tmp_path):
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["item_id", "title", "description"])
    w.writerow(["i1", "One", 'A description\nover two lines, "quoted"'])
    w.writerow(["i2", "Two", "short"])
    lake = _lake_with(tmp_path, "items", {"items.csv": buf.getvalue().encode()})
    built = build_items_counted(lake, EMPTY_FIRST_DAYS, IngestConfig())
    assert built.bad.height == 0
    assert built.frame.select("item_id", "description").rows() == [("i1", 'A description\nover two lines, "quoted"'), ("i2", "short")]


@pytest.mark.parametrize("newline", ["\r", "\r\n", "\n"])
@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
def test_csv_line_ends_and_bom(tmp_path, newline, bom):
    text = newline.join(["user_id,item_id,event_type,ts", "u1,i1,view,2024-03-02T10:00:00Z", "u2,i2,view,2024-03-02T10:00:00Z", ""])
    parsed = _parse(tmp_path, "e.csv", bom + text.encode())
    assert parsed.bad.height == 0
    assert parsed.good.select("user_id", "line").rows() == [("u1", 2), ("u2", 3)]


def test_jsonl_bom_keeps_the_first_row(tmp_path):
    parsed = _parse(tmp_path, "e.jsonl", b"\xef\xbb\xbf" + _jsonl([_ev("u1"), _ev("u2")]))
    assert parsed.bad.height == 0 and parsed.good["user_id"].to_list() == ["u1", "u2"]


def test_jsonl_with_cr_line_ends(tmp_path):
    data = (json.dumps(_ev("u1")) + "\r" + json.dumps(_ev("u2")) + "\r").encode()
    assert _parse(tmp_path, "e.jsonl", data).good["user_id"].to_list() == ["u1", "u2"]


def test_unterminated_quote_does_not_swallow_the_rest_of_the_file(tmp_path):
    rows = ["user_id,item_id,event_type,ts"] + [f"u{i},i{i},view,2024-03-02T10:00:0{i}Z" for i in range(6)]
    rows[2] = 'u1,"i1,view,2024-03-02T10:00:01Z'
    parsed = _parse(tmp_path, "e.csv", ("\n".join(rows) + "\n").encode())
    assert [r[0] for r in _bad(parsed)] == [3]
    assert "malformed CSV" in _bad(parsed)[0][2]
    assert parsed.good["user_id"].to_list() == ["u0", "u2", "u3", "u4", "u5"]


def test_non_utf8_inside_a_multiline_csv_record(tmp_path):
    data = b'user_id,item_id,event_type,ts,note\nu1,i1,view,2024-03-02T10:00:00Z,"a\n\xff"\nu2,i2,view,2024-03-02T10:00:00Z,x\n'
    parsed = _parse(tmp_path, "e.csv", data)
    [(line, field, reason)] = _bad(parsed)
    assert (line, field) == (2, "(row)") and "UTF-8" in reason
    assert parsed.good["user_id"].to_list() == ["u2"]


# --- compressed, unsupported, symlinks -----------------------------------------------------------


def test_gzip_landing_file_is_read(tmp_path):
    parsed = _parse(tmp_path, "e.jsonl.gz", gzip.compress(_jsonl([_ev("u1"), _ev("u2")]), mtime=0))
    assert parsed.good["user_id"].to_list() == ["u1", "u2"]
    assert parsed.good["source_file"].unique().to_list() == ["e.jsonl.gz"]


def test_truncated_gzip_is_a_whole_file_quarantine_row(tmp_path):
    data = gzip.compress(_jsonl([_ev("u1")] * 50), mtime=0)
    parsed = _parse(tmp_path, "e.csv.gz", data[: len(data) // 2])
    assert _bad(parsed)[0][:2] == (0, "(file)") and "corrupt or truncated" in _bad(parsed)[0][2]


def test_refused_entries_are_counted_and_never_opened(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.jsonl"
    secret.write_text(json.dumps(_ev("SECRET")) + "\n")
    lake = _lake_with(tmp_path, "events", {"a.jsonl": _jsonl([_ev("u1")]), "b.zip": b"PK", "c.xlsx": b"x", ".hidden.jsonl": b"x"})
    events_dir = tmp_path / "lake" / "landing" / "events"
    os.symlink(secret, events_dir / "secret.jsonl")
    os.symlink(tmp_path / "nowhere.jsonl", events_dir / "gone.jsonl")
    inside = tmp_path / "lake" / "shared.jsonl"
    inside.write_bytes(_jsonl([_ev("u9")]))
    os.symlink(inside, events_dir / "inside.jsonl")
    entries = {e.name: e.problem for e in list_landing(lake.landing_dir("events"))}
    assert set(entries) == {"a.jsonl", "b.zip", "c.xlsx", "secret.jsonl", "gone.jsonl", "inside.jsonl"}
    assert entries["a.jsonl"] is None and entries["inside.jsonl"] is None  # a link inside the lake is fine
    assert "outside the lake" in entries["secret.jsonl"]
    assert "broken symbolic link" in entries["gone.jsonl"]
    assert "not read" in entries["b.zip"] and "unsupported file type" in entries["c.xlsx"]

    summary = stage_landing_events(lake, IngestConfig(), now=NOW)
    assert sorted(summary.refused) == ["b.zip", "c.xlsx", "gone.jsonl", "secret.jsonl"]
    unknown = unknown_day_quarantine(lake)
    assert sorted(unknown.filter(pl.col("field") == "(file)")["source_file"].to_list()) == sorted(summary.refused)
    everything = pl.concat([unknown.select("raw", "reason")]).to_pandas().to_string()
    assert "SECRET" not in everything  # the escaping link's content was never copied into the lake
    staged = summary.manifest
    assert int(staged["rows_read"].sum()) == 2 + 4  # two readable rows + one row per refused entry


# --- wrong-typed ids and year ------------------------------------------------------------------


@pytest.mark.parametrize(
    "value,words",
    [(True, "got boolean true"), ({"a": 1}, 'got object {"a": 1}'), (12.0, "got number 12.0"), ([1], "got array")],
)
def test_wrong_typed_ids_are_quarantined(tmp_path, value, words):
    parsed = _parse(tmp_path, "e.jsonl", _jsonl([_ev("u1"), _ev(value), _ev(12)]))
    [(line, field, reason)] = _bad(parsed)
    assert (line, field) == (2, "user_id") and words in reason
    assert parsed.good["user_id"].to_list() == ["u1", "12"]  # an integer id is fine


def test_wrong_typed_event_type_and_boolean_value(tmp_path):
    parsed = _parse(tmp_path, "e.jsonl", _jsonl([_ev(etype=["view"]), _ev(value=True), _ev("ok")]))
    assert [(r[0], r[1]) for r in _bad(parsed)] == [(1, "event_type"), (2, "value")]


def test_float_id_column_in_parquet_is_quarantined(tmp_path):
    frame = pl.DataFrame({"user_id": [1.0, 2.0], "item_id": ["i1", "i2"], "event_type": ["view", "view"], "ts": ["2024-03-02T10:00:00Z"] * 2})
    buf = io.BytesIO()
    frame.write_parquet(buf)
    parsed = _parse(tmp_path, "e.parquet", buf.getvalue())
    assert parsed.good.height == 0
    assert {r[1] for r in _bad(parsed)} == {"user_id"} and "ids must be strings or integers" in _bad(parsed)[0][2]


@pytest.mark.parametrize("year,ok", [("abc", False), ("1995.5", False), ("1995", True), ("1995.0", True), (1995, True), (None, True)])
def test_item_year(tmp_path, year, ok):
    items = [{"item_id": "i1", "title": "t", "year": year}, {"item_id": "i2", "title": "u", "year": 2001}]
    lake = _lake_with(tmp_path, "items", {"items.jsonl": _jsonl(items)})
    built = build_items_counted(lake, EMPTY_FIRST_DAYS, IngestConfig())
    if ok:
        assert built.bad.height == 0
        assert built.frame.filter(pl.col("item_id") == "i1")["year"].item() == (None if year is None else 1995)
    else:
        assert built.bad.select("line", "field").rows() == [(1, "year")] and "not an integer" in built.bad["reason"][0]
        assert built.frame["item_id"].to_list() == ["i2"]


# --- (5) names that become paths -----------------------------------------------------------------

HOSTILE_NAMES = ["/some/dir/model", "../../etc/passwd", "..", ".", "a/b\\c", "nul\x00byte", "x" * 300, "", "~", "C:\\models\\m", "ünïcode model"]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_stay_inside_the_lake(tmp_path, name):
    lake = Lake.at(tmp_path / "lake")
    d = date(2024, 3, 2)
    arm = f"ranker_{name}"
    paths = [
        lake.embeddings_dir(name),
        lake.embeddings_file(d, name),
        lake.c2cf_dir(d, "temporal", "eval", name),
        lake.profiles_file(d, "temporal", "eval", name),
        lake.ranker_night_file(d, "temporal", arm, d),
        lake.ranker_model_dir(d, "temporal", arm),
    ]
    for p in paths:
        assert lake.contains(p), p
        assert "/" not in safe_name(name) and "\x00" not in safe_name(name) and ".." not in safe_name(name)
    assert 0 < len(safe_name(name)) <= 80


def test_safe_names_keep_usual_names_and_are_unique():
    for usual in ["minilm-l6", "tfidf", "ranker_minilm-l6", "ranker_no_text+slots5", "mpnet-base"]:
        assert safe_name(usual) == usual
    names = HOSTILE_NAMES + ["/some/dir/model/", "some-dir-model", "/some/dir/modeL"]
    assert len({safe_name(n) for n in names}) == len(names)


def test_encoder_given_as_a_local_path_writes_inside_the_lake(tmp_path):
    """The real feature code with a local 'model path': the vector file lands in the lake."""
    import numpy as np

    from recsys_assets.lib.features import nightly as fn
    from recsys_assets.lib.features.embeddings import EmbeddingResult

    lake = Lake.at(tmp_path / "lake")
    name = str(tmp_path / "outside" / "model")
    result = EmbeddingResult(item_ids=["i1"], vectors=np.ones((1, 3), np.float32), stats={})
    cfg = fn.FeatureConfig(encoders=(name,))
    fn.save_item_embeddings(lake, date(2024, 3, 2), name, result, cfg)
    assert not (tmp_path / "outside").exists()
    assert fn.encoders_with_embeddings(lake, date(2024, 3, 2), cfg) == [name]
    ids, vectors, _meta = fn.load_item_embeddings(lake, date(2024, 3, 2), name)
    assert ids == ["i1"] and vectors.shape == (1, 3)


# --- (5b) reconciliation against what the lake holds -----------------------------------------------


def _publish_all(lake: Lake) -> list[date]:
    summary = stage_landing_events(lake, IngestConfig(), now=NOW)
    days = summary.days
    for part in build_day_partitions(lake, [d for d in days]):
        publish_day(lake, part)
    return days


def test_rows_removed_from_landing_are_reported_and_prunable(tmp_path):
    rows = [_ev(f"u{i}", ts=f"2024-03-0{1 + i % 3}T10:00:00Z") for i in range(9)]
    lake = _lake_with(tmp_path, "events", {"e.jsonl": _jsonl(rows)})
    _publish_all(lake)
    assert lake.count_events(lake.event_days()) == 9
    # The landing file is edited: the rows of 2024-03-03 are gone.
    (tmp_path / "lake" / "landing" / "events" / "e.jsonl").write_bytes(_jsonl([r for r in rows if not r["ts"].startswith("2024-03-03")]))
    summary = stage_landing_events(lake, IngestConfig(), now=NOW)
    assert summary.shrunk and "fewer rows (9 -> 6)" in summary.landing_changes()[0]
    days = summary.days
    for part in build_day_partitions(lake, days):
        publish_day(lake, part)
    stale = stale_event_days(lake, days)
    assert stale == [date(2024, 3, 3)] and lake.count_events(stale) == 3
    assert unpublish_days(lake, stale) == 3
    assert lake.event_days() == [date(2024, 3, 1), date(2024, 3, 2)] and lake.count_events(lake.event_days()) == 6
    # A removed file is reported too.
    (tmp_path / "lake" / "landing" / "events" / "e.jsonl").unlink()
    assert stage_landing_events(lake, IngestConfig(), now=NOW).removed == ["e.jsonl"]


# --- (4) errors that name the file and the row ----------------------------------------------------


def test_failed_expectation_names_the_landing_row(tmp_path):
    lake = _lake_with(tmp_path, "events", {"e.jsonl": _jsonl([_ev("u1", "i1"), _ev("u2", "i_missing")])})
    _publish_all(lake)
    [part] = build_day_partitions(lake, [date(2024, 3, 2)])
    outcome = validate_events(part.events, part.day, pl.Series(["i1"]), IngestConfig())
    assert not outcome.success
    text = outcome.summary(part.sources)
    assert "_in_catalog" in text and "e.jsonl:2" in text


# --- analysts' read-only connections during a write -----------------------------------------------


def test_read_only_helper_waits_for_a_writer_that_holds_the_file(tmp_path):
    from recsys_assets.lib.evaluation.warehouse import Warehouse

    path = tmp_path / "w.duckdb"
    duckdb.connect(str(path)).execute("CREATE TABLE t AS SELECT 1 AS x").close()
    with duckdb_lock_held(path):
        with pytest.raises(duckdb.IOException, match="lock"):
            duckdb.connect(str(path), read_only=True)  # what a bare reader gets while the demo writes
        con = Warehouse(path, lock_timeout_s=60).read_only_connect()  # retries until the writer lets go
        assert con.execute("SELECT x FROM t").fetchall() == [(1,)]
        con.close()
