"""Fuzz test of the landing parser (hypothesis, bounded): every generated row is accounted for.

Hypothesis writes landing files (JSONL or CSV, optionally gzip-compressed, with a
BOM, with LF/CRLF/CR line ends) whose rows are valid events, events with hostile
field values (quotes, commas, newlines, NUL, very long text, wrong JSON types,
odd timestamps) or garbage lines. Each file goes through the real staging and
publishing code into a fresh lake, and the test asserts

* rows read = the number of rows the generator wrote (nothing lost or invented),
* rows read = published + quarantined + duplicates dropped (per day and unknown day),
* nothing was written outside the lake.

Bounded: ``max_examples`` examples (``RECSYS_FUZZ_EXAMPLES``, default 120), no deadline;
derandomized (the same examples every run) unless ``RECSYS_FUZZ_RANDOM=1``.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsys_assets.lib.ingest.config import IngestConfig
from recsys_assets.lib.ingest.events import (
    build_day_partitions,
    publish_day,
    publish_unknown_day_quarantine,
    stage_landing_events,
)
from recsys_assets.lib.lake import Lake, read_parquet, safe_name

NOW = datetime(2024, 6, 1, tzinfo=timezone.utc)
FIELDS = ["user_id", "item_id", "event_type", "ts", "value"]
MAX_EXAMPLES = int(os.environ.get("RECSYS_FUZZ_EXAMPLES", "120"))
# Same examples on every run (CI stays deterministic); RECSYS_FUZZ_RANDOM=1 explores new ones.
DERANDOMIZE = os.environ.get("RECSYS_FUZZ_RANDOM", "") != "1"
EXAMPLES_RUN = {"n": 0}

hostile_text = st.lists(
    st.sampled_from(list("ab1 ,;\"'\\\t\n\r\x00\ufeff\u2028é/.") + ["..", "\\u0000", "{}", "[]", "null", "NaN", "x" * 2000]),
    max_size=8,
).map("".join)
good_ts = st.sampled_from(["2024-03-01T10:00:00Z", "2024-03-02T23:59:59+02:00", "1709287200", "2024-03-03 08:00:00+00:00"])
odd_ts = st.one_of(
    st.sampled_from(["9999-12-31T23:59:59Z", "1969-12-31T23:59:59Z", "2016-12-31T23:59:60Z", "1709287200000", "", "  ", "2024-02-30T00:00:00Z"]),
    hostile_text,
)
json_value = st.one_of(st.none(), st.booleans(), st.integers(-(10**20), 10**20), st.floats(allow_nan=True), hostile_text, st.lists(st.integers(), max_size=2), st.dictionaries(st.sampled_from(["a"]), st.integers(), max_size=1))
event_type = st.sampled_from(["view", "click", "cart", "purchase", "rating", "buy", "VIEW", " click ", "teleport"])


@st.composite
def event(draw) -> dict:
    """A valid event, possibly with one or more fields replaced by something hostile."""
    row = {
        "user_id": draw(st.one_of(st.sampled_from(["u1", "u2", " u3 ", "7"]), hostile_text)),
        "item_id": draw(st.one_of(st.sampled_from(["i1", "i2", "i3"]), hostile_text)),
        "event_type": draw(event_type),
        "ts": draw(st.one_of(good_ts, good_ts, odd_ts)),
    }
    if draw(st.booleans()):
        row["value"] = draw(st.one_of(st.sampled_from([1, 3.5, 5, "4", -1, 11]), hostile_text))
    if draw(st.integers(0, 4)) == 0:  # wrong JSON types (JSONL only: CSV cells are text)
        row[draw(st.sampled_from(FIELDS))] = draw(json_value)
    if draw(st.integers(0, 8)) == 0:
        row.pop(draw(st.sampled_from(FIELDS)), None)
    return row


garbage_line = st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=40).map(lambda s: "#" + s)


@st.composite
def landing_file(draw) -> tuple[str, bytes, int]:
    """(file name, bytes, number of rows written) of one JSONL or CSV landing file."""
    kind = draw(st.sampled_from(["jsonl", "csv"]))
    n_rows = draw(st.integers(1, 25))
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    if kind == "jsonl":
        lines = [draw(st.one_of(event().map(json.dumps), event().map(json.dumps), garbage_line)) for _ in range(n_rows)]
        if draw(st.booleans()):
            lines.insert(draw(st.integers(0, len(lines))), "")  # a blank line is not a row
        text = newline.join(lines) + draw(st.sampled_from(["", newline]))
    else:
        buf = io.StringIO()
        # QUOTE_ALL whenever the line end is not CRLF: csv.writer leaves a bare CR unquoted otherwise.
        quoting = csv.QUOTE_MINIMAL if newline == "\r\n" else csv.QUOTE_ALL
        writer = csv.writer(buf, lineterminator=newline, quoting=quoting)
        writer.writerow(FIELDS)
        for _ in range(n_rows):
            row = draw(event())
            writer.writerow(["" if row.get(f) is None else str(row.get(f)) for f in FIELDS])
        text = buf.getvalue()
    data = text.encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        data = b"\xef\xbb\xbf" + data
    if draw(st.integers(0, 5)) == 0:
        # one raw non-UTF-8 byte inside a row (CSV: in the last row) -> that row is quarantined, not lost
        cut = data.rfind(b"u", 0, len(data))
        if cut > 0:
            data = data[:cut] + b"\xff" + data[cut:]
    name = f"fuzz.{kind}"
    if draw(st.booleans()):
        data, name = gzip.compress(data, mtime=0), name + ".gz"
    return name, data, n_rows


def _files_under(folder: Path) -> set[str]:
    return {str(p) for p in folder.rglob("*")}


@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=DERANDOMIZE, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(landing_file())
def test_every_row_read_is_published_quarantined_or_a_duplicate(spec):
    EXAMPLES_RUN["n"] += 1
    name, data, n_rows = spec
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "outside").mkdir()
        lake = Lake.at(tmp / "lake")
        (tmp / "lake" / "landing" / "events").mkdir(parents=True)
        (tmp / "lake" / "landing" / "events" / name).write_bytes(data)
        before = _files_under(tmp) - _files_under(tmp / "lake")

        summary = stage_landing_events(lake, IngestConfig(), now=NOW)
        manifest = summary.manifest
        rows_read = int(manifest["rows_read"].sum())
        parts = build_day_partitions(lake, summary.days)
        for part in parts:
            publish_day(lake, part)
        unknown = publish_unknown_day_quarantine(lake)

        # Rows read = rows written by the generator.
        assert rows_read == n_rows
        published = sum(p.events.height for p in parts)
        quarantined = sum(p.quarantine.height for p in parts) + unknown
        duplicates = sum(p.duplicates_dropped for p in parts)
        assert rows_read == published + quarantined + duplicates
        assert all(p.reconciles for p in parts)
        # What was published is what the lake holds, and every quarantined row names file, line, reason.
        assert lake.count_events(lake.event_days()) == published
        q = read_parquet(lake.quarantine_day("unknown"))
        assert q.filter(pl.col("reason").is_null() | pl.col("source_file").is_null() | pl.col("line").is_null()).height == 0
        # Nothing outside the lake.
        assert _files_under(tmp) - _files_under(tmp / "lake") == before


@settings(max_examples=MAX_EXAMPLES * 2, deadline=None, derandomize=DERANDOMIZE, database=None)
@given(st.text(max_size=120), st.text(max_size=120))
def test_safe_name_stays_inside_and_is_unique(a, b):
    lake = Lake.at("/tmp/recsys-fuzz-lake-never-written")
    for name in (a, b):
        s = safe_name(name)
        assert 0 < len(s) <= 80 and "/" not in s and "\x00" not in s and s not in (".", "..")
        assert lake.contains(lake.path("models", f"{s}.npz")) and lake.contains(lake.embeddings_dir(name))
    if a != b:
        assert safe_name(a) != safe_name(b)


def test_fuzz_ran_the_bounded_number_of_examples():
    """Runs after the fuzz test in file order: it really exercised examples (reported by -s)."""
    if EXAMPLES_RUN["n"]:
        print(f"\nlanding fuzz examples run: {EXAMPLES_RUN['n']} (max_examples={MAX_EXAMPLES})")
        assert EXAMPLES_RUN["n"] >= min(MAX_EXAMPLES, 20)
