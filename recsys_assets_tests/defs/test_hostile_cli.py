"""The hostile corpus through ``recsys-assets``: one bad thing never stops the night.

Each ingest case is ~200 valid events plus one bad thing, run through the real
CLI (Dagster runs in-process); the test checks the exit code, the reconciliation
line and what the lake holds. Argument mistakes are one-line errors with exit 2.
"""

from __future__ import annotations

import json
import os
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest

from recsys_assets.lib.lake import LAKE_ENV_VAR, Lake, read_parquet

DAYS = [date(2024, 3, 1) + timedelta(days=i) for i in range(4)]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch):
    monkeypatch.delenv(LAKE_ENV_VAR, raising=False)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)


def _events(n: int = 200) -> list[dict]:
    return [
        {"user_id": f"u{i % 20}", "item_id": f"i{i % 25:02d}", "event_type": "view", "ts": f"{DAYS[i % len(DAYS)]}T{i % 24:02d}:{i % 60:02d}:00Z"}
        for i in range(n)
    ]


def _items() -> list[dict]:
    return [{"item_id": f"i{i:02d}", "title": f"Item {i}", "year": 1990 + i, "image_vector": [0.1 * (i + 1), 0.2, 0.3, 0.4]} for i in range(25)]


def _write(root: Path, events: list[dict], items: list[dict]) -> None:
    for kind, rows in (("events", events), ("items", items)):
        folder = root / "landing" / kind
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{kind}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _ingest(root: Path, capsys, *extra: str) -> tuple[int, str, str]:
    from recsys_assets.cli import main

    rc = main(["ingest", "--source", "landing", "--lake", str(root), *extra])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _line(out: str, prefix: str = "reconciliation:") -> str:
    return next(ln for ln in out.splitlines() if ln.startswith(prefix))


def test_old_event_and_bad_vector_and_padded_id_do_not_stop_the_night(tmp_path, capsys):
    """Cases (1), (2), (3) of the issue in one landing: before, each one alone made ingest exit 2."""
    events = _events() + [{"user_id": "u1", "item_id": "i01", "event_type": "view", "ts": "1995-06-01T10:00:00Z"}]
    items = _items()
    items[3]["image_vector"] = "[1, 2"
    items[4]["image_vector"] = [0.1, 0.2, 0.3]  # wrong length
    items.append({**items[5], "item_id": " i05", "title": "padded"})
    _write(tmp_path / "lake", events, items)
    rc, out, err = _ingest(tmp_path / "lake", capsys)
    assert rc == 0, out + err
    line = _line(out)
    assert "rows read 201 = written 200 + quarantined 1 + duplicates dropped 0 [OK]" in line
    assert "lake holds 200 events on 4 days [OK]" in line
    assert "items: landing rows read 26 = catalogued 23 + quarantined 2 + superseded 1 [OK]; catalogue 25 items" in out
    lake = Lake.at(tmp_path / "lake")
    assert lake.event_days() == DAYS
    bad_items = read_parquet(lake.path("quarantine", "items", "part-0.parquet"))
    assert bad_items.select("line", "field").rows() == [(4, "image_vector"), (5, "image_vector")]
    unknown = read_parquet(lake.quarantine_day("unknown"))
    assert unknown.select("source_file", "line", "field").rows() == [("events.jsonl", 201, "ts")]


def test_rows_removed_from_landing_are_not_reported_ok(tmp_path, capsys):
    root = tmp_path / "lake"
    _write(root, _events(), _items())
    assert _ingest(root, capsys)[0] == 0
    kept = [e for e in _events() if not e["ts"].startswith(str(DAYS[-1]))]
    (root / "landing" / "events" / "events.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    rc, out, _err = _ingest(root, capsys)
    assert rc == 1
    line = _line(out)
    assert "[STALE]" in line and f"50 of them on 1 day(s) no landing row covers ({DAYS[-1]}..{DAYS[-1]})" in line
    assert "events.jsonl changed and has fewer rows (200 -> 150)" in out and "--prune" in out
    rc, out, _err = _ingest(root, capsys, "--prune")
    assert rc == 0 and "lake holds 150 events on 3 days [OK]" in _line(out)
    assert Lake.at(root).event_days() == DAYS[:-1]


def test_symlink_out_of_the_lake_and_gz_and_unsupported(tmp_path, capsys):
    import gzip

    root = tmp_path / "lake"
    _write(root, _events(), _items())
    secret = tmp_path / "secret.jsonl"
    secret.write_text('{"user_id": "SECRET", "item_id": "i01", "event_type": "view", "ts": "2024-03-01T00:00:00Z"}\n')
    os.symlink(secret, root / "landing" / "events" / "secret.jsonl")
    more = [{"user_id": "g", "item_id": "i02", "event_type": "click", "ts": f"{DAYS[1]}T05:00:0{k}Z"} for k in range(5)]
    (root / "landing" / "events" / "more.jsonl.gz").write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in more).encode(), mtime=0))
    (root / "landing" / "events" / "notes.txt").write_text("hello")
    rc, out, err = _ingest(root, capsys)
    assert rc == 0, out + err
    assert "rows read 207 = written 205 + quarantined 2 + duplicates dropped 0 [OK]" in _line(out)
    assert "2 landing entr(y/ies) not read" in out
    lake = Lake.at(root)
    assert lake.read_events().filter(pl.col("user_id") == "SECRET").height == 0
    unknown = read_parquet(lake.quarantine_day("unknown"))
    assert sorted(unknown["source_file"].to_list()) == ["notes.txt", "secret.jsonl"]
    assert "outside the lake" in unknown.filter(pl.col("source_file") == "secret.jsonl")["reason"].item()


@pytest.mark.parametrize(
    "argv,words",
    [
        (["demo", "--days", "0"], "--days must be at least 1, got 0"),
        (["demo", "--days", "-3"], "--days must be at least 1, got -3"),
        (["demo", "--end", "notadate"], "is not a day"),
        (["demo", "--end", "2999-01-01"], "is in the future"),
        (["demo", "--days", "abc"], "invalid int value"),
        (["demo", "--rollup-days", "0"], "--rollup-days must be at least 1"),
        (["ingest", "--source", "synthetic", "--text-signal", "2"], "--text-signal must be in [0, 1]"),
        (["ingest", "--source", "nope"], "invalid choice"),
        (["demo", "--min-history-days", "-1"], "--min-history-days must be at least 0"),
    ],
)
def test_argument_mistakes_are_one_line_errors_with_exit_2(tmp_path, capsys, argv, words):
    from recsys_assets.cli import main

    try:
        rc = main([*argv, "--lake", str(tmp_path / "lake")])
    except SystemExit as exc:  # argparse's own errors (types, choices)
        rc = exc.code
    captured = capsys.readouterr()
    assert rc == 2
    lines = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], captured.err
    assert "Traceback" not in captured.err + captured.out
    assert not (tmp_path / "lake").exists()  # nothing ran


def test_end_today_is_accepted_by_validation():
    import argparse

    from recsys_assets.cli import validate_args

    today = datetime.now(timezone.utc).date()
    args = argparse.Namespace(end=f" {today.isoformat()} ", days=3)
    assert validate_args(args) is None and args.end == today.isoformat()


def test_sql_command_waits_for_a_writer_and_errors_in_one_line(tmp_path, capsys):
    """`recsys-assets sql` is the analysts' read-only reader: it retries while a run holds the file."""
    import duckdb

    from recsys_assets.cli import main
    from recsys_assets_tests.duckdb_lock import duckdb_lock_held

    lake = tmp_path / "lake"
    lake.mkdir()
    db = lake / "warehouse.duckdb"
    duckdb.connect(str(db)).execute("CREATE TABLE t AS SELECT 42 AS answer").close()
    with duckdb_lock_held(db):
        rc = main(["sql", "SELECT answer FROM t", "--csv", "--lake", str(lake)])
    out = capsys.readouterr()
    assert rc == 0 and out.out.splitlines() == ["answer", "42"], out
    rc = main(["sql", "SELECT * FROM missing_table", "--lake", str(lake)])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "missing_table" in err


def test_a_failed_catalog_check_names_the_expectation_and_the_ids(tmp_path, capsys, monkeypatch):
    """Before: the CLI said only `items: items_expectations`. Now the one error line carries the check's summary."""
    from recsys_assets.defs.ingest import catalogs
    from recsys_assets.lib.ingest.validation import validate_items

    # A catalogue bug that slips a duplicate id past ingest: the blocking check must stop it, loudly.
    monkeypatch.setattr(catalogs, "validate_items", lambda frame: validate_items(pl.concat([frame, frame.head(1)])))
    _write(tmp_path / "lake", _events(), _items())
    rc, out, err = _ingest(tmp_path / "lake", capsys)
    assert rc == 2
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    assert "items.items_expectations failed" in lines[0] and "expect_column_values_to_be_unique(item_id)" in lines[0] and "i00" in lines[0]
    assert "Traceback" not in err


def test_demo_end_outside_the_data_is_a_one_line_error():
    from recsys_assets.cli_ingest import check_demo_window
    from recsys_assets.lib.errors import RecsysError

    days = [date(2024, 3, 1) + timedelta(days=i) for i in range(10)]
    check_demo_window(days, date(2024, 3, 5), date(2024, 3, 10))  # inside, with history before: fine
    for start, end in [(date(2019, 12, 31), date(2020, 1, 1)), (date(2024, 3, 1), date(2024, 3, 2)), (date(2024, 3, 9), date(2024, 3, 11))]:
        with pytest.raises(RecsysError, match="published events cover 2024-03-01..2024-03-10"):
            check_demo_window(days, start, end)
