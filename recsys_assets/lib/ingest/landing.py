"""Parse landing event files (JSONL, CSV, Parquet) into normalized rows and quarantined rows.

Every raw row ends in exactly one place: the normalized frame, or the
quarantine frame with its source file, line (1-based, header = line 1 for
CSV), the offending field and a reason. Nothing valid is dropped because a
neighbour was bad.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import hashlib
import io
import json
import lzma
import os
import re
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable, Iterator

import polars as pl
import pyarrow.parquet as pq
from upath import UPath

from recsys_assets.lib.ingest.config import PARTITIONS_START_ENV, IngestConfig
from recsys_assets.lib.schema import EVENT_SCHEMA, UTC_TS
from recsys_assets.lib.lake import is_local

RAW_FIELDS = ("user_id", "item_id", "event_type", "ts", "value")
FORMATS = (".jsonl", ".json", ".ndjson", ".csv", ".parquet")
"""Landing file formats; each may also be compressed (``COMPRESSIONS``)."""
COMPRESSIONS = {".gz": gzip.decompress, ".bz2": bz2.decompress, ".xz": lzma.decompress}
"""Compressed landing files (``events.jsonl.gz``) are decompressed and read like the plain format."""
DECOMPRESSING_READERS = {".gz": lambda fh: gzip.GzipFile(fileobj=fh), ".bz2": bz2.BZ2File, ".xz": lzma.LZMAFile}
"""The same decompressions as streams (a text landing file is read a block at a time)."""
TEXT_FORMATS = (".jsonl", ".json", ".ndjson", ".csv")
DECOMPRESS_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError)

ID_FIELDS = ("user_id", "item_id")
"""Fields holding ids: a JSON string or integer; anything else (true, 12.0, {...}) is quarantined."""
SCALAR_FIELDS = {"event_type": (str,), "ts": (str, int, float), "value": (str, int, float), "year": (str, int, float)}
"""JSON types accepted per field (bool never); other fields take any JSON value as text."""

STAGED_SCHEMA: dict[str, pl.DataType] = {
    **EVENT_SCHEMA,
    "source_file": pl.String(),
    "line": pl.Int64(),
}
BAD_SCHEMA: dict[str, pl.DataType] = {
    "source_file": pl.String(),
    "line": pl.Int64(),
    "field": pl.String(),
    "reason": pl.String(),
    "raw": pl.String(),
    "day": pl.Date(),
}


@dataclass
class ParsedFile:
    """One landing file split into good (normalized) and bad (quarantined) rows."""

    source_file: str
    good: pl.DataFrame
    bad: pl.DataFrame

    @property
    def rows_read(self) -> int:
        return self.good.height + self.bad.height


@dataclass(frozen=True)
class LandingFile:
    """One entry of a landing folder: a file to read, or one refused with a reason."""

    path: UPath
    """Where the entry is (a symlink is listed under its own name)."""
    problem: str | None = None
    """Why the file is not read (broken or escaping symlink, unsupported type); None = readable."""

    @property
    def name(self) -> str:
        return self.path.name


def _raw_frame(rows: list[tuple], source: str, fields: tuple[str, ...] = RAW_FIELDS) -> pl.DataFrame:
    """rows: (line, raw, error_field, error_reason, *fields) -> a frame of strings."""
    cols = ["line", "raw", "err_field", "err_reason", *fields]
    data = {c: [r[i] for r in rows] for i, c in enumerate(cols)}
    schema = {c: (pl.Int64() if c == "line" else pl.String()) for c in cols}
    return pl.DataFrame(data, schema=schema).with_columns(source_file=pl.lit(source))


def _json_type(value) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), type(value).__name__)


def _as_text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return repr(value)
    return str(value)


def _typed_text(name: str, value) -> tuple[str | None, str | None]:
    """A JSON value -> (text, None), or (None, reason) when its type is wrong for the field."""
    if value is None:
        return None, None
    if name in ID_FIELDS:
        if isinstance(value, str):
            return value, None
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value), None
        return None, f"{name} must be a string or an integer, got {_json_type(value)} {_short(json.dumps(value))}"
    allowed = SCALAR_FIELDS.get(name)
    if allowed is not None and (isinstance(value, bool) or not isinstance(value, allowed)):
        wanted = " or ".join(dict.fromkeys(_json_type(t()) for t in allowed))
        return None, f"{name} must be a {wanted}, got {_json_type(value)} {_short(json.dumps(value))}"
    return _as_text(value), None


def _short(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def _decode(data: bytes) -> str:
    """UTF-8 text of a whole file, BOM dropped; undecodable bytes kept as surrogates (found per row later)."""
    text = data.decode("utf-8", "surrogateescape")
    return text[1:] if text.startswith("\ufeff") else text


def _utf8_problem(text: str) -> str | None:
    """None if ``text`` decoded cleanly, else the reason naming the first bad byte."""
    if not _SURROGATE.search(text):
        return None
    try:
        text.encode("utf-8", "surrogateescape").decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not valid UTF-8 ({exc.reason} at byte {exc.start})"
    return "not valid UTF-8"


def _printable(text: str) -> str:
    """``text`` with undecodable bytes shown as U+FFFD (Parquet strings must be valid UTF-8)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace") if _SURROGATE.search(text) else text


_SURROGATE = re.compile("[\udc80-\udcff]")


def _physical_lines(text: str) -> list[str]:
    """Lines split at LF, CRLF or a lone CR (old Mac files), line ends kept (CSV needs them)."""
    return io.StringIO(text, newline="").readlines()


def _jsonl_rows(data: bytes, cfg: IngestConfig, fields: tuple[str, ...] = RAW_FIELDS) -> list[tuple]:
    return list(_jsonl_row_iter(_physical_lines(_decode(data)), cfg, fields))


def _jsonl_row_iter(lines: Iterable[str], cfg: IngestConfig, fields: tuple[str, ...] = RAW_FIELDS) -> Iterator[tuple]:
    """(line, raw, err_field, err_reason, *fields) per non-blank JSONL line (physical lines, ends kept)."""
    nones = (None,) * len(fields)
    for n, line in enumerate(lines, start=1):
        text = line.rstrip("\r\n")
        if not text.strip():
            continue
        problem = _utf8_problem(text)
        if problem:
            yield (n, _printable(text), "(row)", problem, *nones)
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            yield (n, text, "(row)", f"malformed JSON: {exc.msg} at column {exc.colno}", *nones)
            continue
        except RecursionError:
            yield (n, _short(text, 200), "(row)", "malformed JSON: nested too deeply", *nones)
            continue
        if not isinstance(obj, dict):
            yield (n, text, "(row)", f"expected a JSON object, got {_json_type(obj)}", *nones)
            continue
        obj = {cfg.canonical(k): v for k, v in obj.items()}
        values, err = [], None
        for f in fields:
            value, why = _typed_text(f, obj.get(f))
            if why and err is None:
                err = (f, why)
            values.append(value)
        yield (n, text, *(err or (None, None)), *values)


class _Lines:
    """Physical lines of a stream read on demand; the ones before a record's start are let go."""

    def __init__(self, lines: Iterable[str]) -> None:
        self._it, self._buf, self._base = iter(lines), [], 0  # _buf[0] is line number _base (0-based)

    def get(self, i: int) -> str | None:
        """Line ``i`` (0-based), None past the end."""
        while i - self._base >= len(self._buf):
            nxt = next(self._it, None)
            if nxt is None:
                return None
            self._buf.append(nxt)
        return self._buf[i - self._base]

    def text(self, start: int, end: int) -> str:
        return "".join(self._buf[start - self._base : end - self._base])

    def forget_before(self, i: int) -> None:
        del self._buf[: i - self._base]
        self._base = i


class _Cursor:
    """An iterator over physical lines whose position can be read and reset (CSV resync)."""

    def __init__(self, lines: _Lines, pos: int = 0) -> None:
        self.lines, self.pos = lines, pos

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = self.lines.get(self.pos)
        if line is None:
            raise StopIteration
        self.pos += 1
        return line


def _csv_records(physical_lines: Iterable[str]):
    """(first line number, record text, values or None, error) per CSV record, with real CSV rules.

    Quoted fields may hold delimiters and newlines. A record that is broken (a
    CSV error, e.g. an unterminated quote) and spans several physical lines is
    reported on its first line only and parsing resumes on the next physical
    line, so one stray quote cannot swallow the rest of the file. Lines are read
    as the records need them (a stream is never held whole).
    """
    lines = _Lines(physical_lines)
    cur = _Cursor(lines)
    reader = csv.reader(cur, strict=True)
    while lines.get(cur.pos) is not None:
        start = cur.pos
        lines.forget_before(start)
        if not lines.get(start).strip():
            cur.pos += 1
            continue
        try:
            values = next(reader)
            error = None
        except StopIteration:
            return
        except csv.Error as exc:
            values, error = None, f"malformed CSV: {exc}"
        end = max(cur.pos, start + 1)
        if error and end - start > 1:
            cur.pos = start + 1
            reader = csv.reader(cur, strict=True)
            yield start + 1, lines.get(start).rstrip("\r\n"), None, error
            continue
        if error:
            reader = csv.reader(cur, strict=True)
        yield start + 1, lines.text(start, end).rstrip("\r\n"), values, error


def _csv_rows(data: bytes, cfg: IngestConfig, fields: tuple[str, ...] = RAW_FIELDS) -> list[tuple]:
    return list(_csv_row_iter(_physical_lines(_decode(data)), cfg, fields))


def _csv_row_iter(lines: Iterable[str], cfg: IngestConfig, fields: tuple[str, ...] = RAW_FIELDS) -> Iterator[tuple]:
    """(line, raw, err_field, err_reason, *fields) per CSV record after the header (the first readable record)."""
    records = _csv_records(lines)
    header = None
    for _n, raw, values, error in records:
        if error or values is None:
            continue
        header = [cfg.canonical(h.strip()) for h in values]
        break
    if header is None:
        return
    nones = (None,) * len(fields)
    for n, raw, values, error in records:
        problem = _utf8_problem(raw)
        if problem:
            yield (n, _printable(raw), "(row)", problem, *nones)
            continue
        if error:
            yield (n, raw, "(row)", error, *nones)
            continue
        if len(values) != len(header):
            yield (n, raw, "(row)", f"expected {len(header)} fields, got {len(values)}", *nones)
            continue
        rec = dict(zip(header, values))
        yield (n, raw, None, None, *((rec.get(f) if rec.get(f) != "" else None) for f in fields))


def _as_json_text(value) -> str | None:
    if value is None:
        return None
    return json.dumps(value.tolist() if hasattr(value, "tolist") else value, default=str)


def _parquet_frame(data: bytes, source: str, cfg: IngestConfig, fields: tuple[str, ...] = RAW_FIELDS) -> pl.DataFrame:
    return _arrow_frame(pq.read_table(io.BytesIO(data)), source, cfg, fields)


def _arrow_frame(table, source: str, cfg: IngestConfig, fields: tuple[str, ...] = RAW_FIELDS, first_line: int = 1) -> pl.DataFrame:
    """Rows of a Parquet file (an arrow table or record batch; the first is line ``first_line``) as a raw string frame."""
    df = pl.from_arrow(table)
    df = df.rename({c: cfg.canonical(c) for c in df.columns})
    exprs = []
    type_errors = []
    for f in fields:
        if f not in df.columns:
            exprs.append(pl.lit(None, pl.String()).alias(f))
            continue
        dtype = df.schema[f]
        if f in ID_FIELDS and not (dtype == pl.String or dtype.is_integer() or isinstance(dtype, (pl.Categorical, pl.Enum))):
            type_errors.append((f, f"column {f} has type {dtype}: ids must be strings or integers"))
        if isinstance(dtype, pl.Datetime):
            col = pl.col(f)
            if dtype.time_zone is None:
                col = col.dt.replace_time_zone("UTC")
            exprs.append(col.dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00").alias(f))
        elif dtype.is_nested():
            exprs.append(pl.col(f).map_elements(_as_json_text, return_dtype=pl.String, skip_nulls=True).alias(f))
        else:
            exprs.append(pl.col(f).cast(pl.String()).alias(f))
    err_field, err_reason = type_errors[0] if type_errors else (None, None)
    out = df.select(exprs).with_row_index("line", offset=first_line).with_columns(
        pl.col("line").cast(pl.Int64()),
        raw=pl.lit(None, pl.String()),
        err_field=pl.lit(err_field, pl.String()),
        err_reason=pl.lit(err_reason, pl.String()),
        source_file=pl.lit(source),
    )
    return out


def parse_ts(col: pl.Expr) -> pl.Expr:
    """Epoch seconds (int or float) or ISO-8601 with an explicit offset (``Z`` allowed)."""
    s = col.str.strip_chars()
    is_epoch = s.str.contains(r"^-?\d+(\.\d+)?$")
    epoch = (s.cast(pl.Float64, strict=False) * 1_000_000).round().cast(pl.Int64, strict=False).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    iso_text = s.str.replace(r"Z$", "+00:00").str.replace(r"^(\d{4}-\d\d-\d\d) ", "${1}T")
    iso = pl.coalesce(
        iso_text.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%:z", strict=False, time_unit="us"),
        iso_text.str.to_datetime("%Y-%m-%dT%H:%M:%S%:z", strict=False, time_unit="us"),
        iso_text.str.to_datetime("%Y-%m-%dT%H:%M%:z", strict=False, time_unit="us"),
    ).dt.convert_time_zone("UTC")
    return pl.when(is_epoch).then(epoch).otherwise(iso)


def _event_id(frame: pl.DataFrame) -> pl.Series:
    """Stable hash of the normalized row: re-delivered copies of an event collide on purpose."""
    keys = frame.select(
        pl.concat_str(
            [
                pl.col("user_id"),
                pl.col("item_id"),
                pl.col("event_type").cast(pl.String),
                pl.col("ts").dt.epoch("us").cast(pl.String),
                pl.col("value").cast(pl.String),
            ],
            separator="\x1f",
        )
    ).to_series()
    return pl.Series("event_id", [hashlib.sha1(k.encode()).hexdigest()[:20] for k in keys], dtype=pl.String)


def validate_raw(raw: pl.DataFrame, cfg: IngestConfig, now: datetime | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Vectorized field checks on a raw string frame -> (good normalized rows, bad rows)."""
    now = now or datetime.now(timezone.utc)
    max_ts = now + timedelta(days=cfg.max_future_days)
    etype_map = pl.DataFrame(
        {"_et_raw": list(cfg.event_type_map), "_et": list(cfg.event_type_map.values())},
        schema={"_et_raw": pl.String, "_et": pl.String},
    )
    df = raw.with_columns(_et_raw=pl.col("event_type").str.strip_chars().str.to_lowercase()).join(
        etype_map, on="_et_raw", how="left", maintain_order="left"
    )
    df = df.with_columns(
        _ts=parse_ts(pl.col("ts")),
        _value=pl.col("value").str.strip_chars().cast(pl.Float64, strict=False),
    )
    lo, hi = cfg.rating_range
    checks: list[tuple[str, pl.Expr, pl.Expr]] = [
        ("user_id", pl.col("user_id").is_null() | (pl.col("user_id").str.strip_chars() == ""), pl.lit("missing user_id")),
        ("item_id", pl.col("item_id").is_null() | (pl.col("item_id").str.strip_chars() == ""), pl.lit("missing item_id")),
        ("event_type", pl.col("event_type").is_null(), pl.lit("missing event_type")),
        ("event_type", pl.col("_et").is_null(), pl.format("unknown event_type '{}'", pl.col("event_type"))),
        ("ts", pl.col("ts").is_null(), pl.lit("missing ts")),
        ("ts", pl.col("_ts").is_null(), pl.format("unparseable timestamp '{}' (want ISO-8601 with offset or epoch seconds)", pl.col("ts"))),
        (
            "ts",
            pl.col("_ts") < cfg.min_ts,
            pl.format(
                "timestamp {} out of range: before the first daily partition {} (set {} to an earlier day to keep it)",
                pl.col("ts"),
                pl.lit(cfg.min_ts.date().isoformat()),
                pl.lit(PARTITIONS_START_ENV),
            ),
        ),
        ("ts", pl.col("_ts") > max_ts, pl.format("timestamp {} out of range: more than {} day(s) after the ingest time", pl.col("ts"), pl.lit(cfg.max_future_days))),
        ("value", pl.col("value").is_not_null() & pl.col("_value").is_null(), pl.format("value '{}' is not a number", pl.col("value"))),
        ("value", pl.col("_value").is_nan() | pl.col("_value").is_infinite(), pl.lit("value is not finite")),
        ("value", (pl.col("_et") == "rating") & pl.col("_value").is_null(), pl.lit("rating event without value")),
        ("value", (pl.col("_et") == "rating") & ((pl.col("_value") < lo) | (pl.col("_value") > hi)), pl.format("rating {} outside [{}, {}]", pl.col("value"), pl.lit(lo), pl.lit(hi))),
        ("value", (pl.col("_et") != "rating") & ((pl.col("_value") < 0) | (pl.col("_value") > cfg.max_value)), pl.format("value {} out of range", pl.col("value"))),
    ]
    # The FIRST failing check names the field and reason of a bad row.
    chain_f = None
    chain_r = None
    for name, bad, why in checks:
        cond = bad.fill_null(False)
        if chain_f is None:
            chain_f = pl.when(cond).then(pl.lit(name))
            chain_r = pl.when(cond).then(why)
        else:
            chain_f = chain_f.when(cond).then(pl.lit(name))
            chain_r = chain_r.when(cond).then(why)
    df = df.with_columns(
        err_field=pl.coalesce(pl.col("err_field"), chain_f.otherwise(None)),
        err_reason=pl.coalesce(pl.col("err_reason"), chain_r.otherwise(None)),
    )
    bad = df.filter(pl.col("err_reason").is_not_null())
    good = df.filter(pl.col("err_reason").is_null())

    bad_out = bad.select(
        pl.col("source_file"),
        pl.col("line"),
        pl.col("err_field").alias("field"),
        pl.col("err_reason").alias("reason"),
        pl.coalesce(
            pl.col("raw"),
            pl.concat_str([pl.col(f).fill_null("") for f in RAW_FIELDS], separator=","),
        ).alias("raw"),
        # A bad row is filed under its day when its timestamp is readable, else under day=unknown.
        pl.when((pl.col("_ts") >= cfg.min_ts) & (pl.col("_ts") <= max_ts)).then(pl.col("_ts").dt.date()).otherwise(None).alias("day"),
    ).cast(BAD_SCHEMA)

    good_norm = good.select(
        pl.col("user_id").str.strip_chars(),
        pl.col("item_id").str.strip_chars(),
        pl.col("_et").cast(EVENT_SCHEMA["event_type"]).alias("event_type"),
        pl.col("_value").fill_null(1.0).cast(pl.Float32).alias("value"),
        pl.col("_ts").cast(UTC_TS).alias("ts"),
        pl.col("source_file"),
        pl.col("line"),
    )
    good_norm = good_norm.with_columns(_event_id(good_norm)).select(list(STAGED_SCHEMA))
    return good_norm, bad_out


def _whole_file_bad(source: str, reason: str) -> pl.DataFrame:
    return pl.DataFrame(
        {"source_file": [source], "line": [0], "field": ["(file)"], "reason": [reason], "raw": [None], "day": [None]},
        schema=BAD_SCHEMA,
    )


def split_suffix(name: str) -> tuple[str, str | None]:
    """``events.jsonl.gz`` -> (``.jsonl``, ``.gz``); ``events.csv`` -> (``.csv``, None)."""
    base, last = os.path.splitext(name.lower())
    if last in COMPRESSIONS:
        return os.path.splitext(base)[1], last
    return last, None


def file_problem(name: str) -> str | None:
    """Why a landing file of this name is not read (None if its format is supported)."""
    fmt, comp = split_suffix(name)
    if fmt in FORMATS:
        return None
    if name.lower().endswith((".zip", ".zst", ".zstd", ".tar", ".tgz", ".7z", ".rar", ".lz4")):
        return f"compressed as '{os.path.splitext(name)[1]}', which is not read: decompress it, or recompress as .gz ({', '.join(COMPRESSIONS)} are read)"
    shown = f"{fmt}{comp or ''}" or "(none)"
    return f"unsupported file type '{shown}' (use {', '.join(FORMATS)}, optionally compressed {', '.join(COMPRESSIONS)})"


def landing_bytes(path: UPath) -> bytes:
    """The content of a landing file, decompressed when its name ends in .gz/.bz2/.xz.

    Raises ValueError when the compressed stream is corrupt or truncated.
    """
    data = path.read_bytes()
    _fmt, comp = split_suffix(path.name)
    if comp is None:
        return data
    try:
        return COMPRESSIONS[comp](data)
    except DECOMPRESS_ERRORS as exc:
        raise ValueError(_corrupt(comp, exc)) from exc


def _corrupt(comp: str, exc: Exception) -> str:
    return f"unreadable {comp} file (corrupt or truncated): {exc}"


def read_raw_records(path: UPath, data: bytes, cfg: IngestConfig, fields: tuple[str, ...]) -> pl.DataFrame:
    """Any supported landing file -> a frame of strings (line, raw, err_field, err_reason, *fields).

    ``data`` is the decompressed content. Raises ValueError for unsupported or
    unreadable files (the caller quarantines the whole file).
    """
    problem = file_problem(path.name)
    if problem:
        raise ValueError(problem)
    suffix, _comp = split_suffix(path.name)
    if suffix == ".parquet":
        try:
            return _parquet_frame(data, path.name, cfg, fields)
        except Exception as exc:  # pyarrow raises many types for truncated/corrupt files
            raise ValueError(f"unreadable Parquet file: {exc}") from exc
    if suffix == ".csv":
        return _raw_frame(_csv_rows(data, cfg, fields), path.name, fields)
    return _raw_frame(_jsonl_rows(data, cfg, fields), path.name, fields)


def parse_event_file(path: UPath, cfg: IngestConfig, now: datetime | None = None) -> ParsedFile:
    """Parse one landing events file; never raises for bad content, only for unreadable storage."""
    source = path.name
    empty_good = pl.DataFrame(schema=STAGED_SCHEMA)
    try:
        data = landing_bytes(path)
    except ValueError as exc:
        return ParsedFile(source, empty_good, _whole_file_bad(source, str(exc)))
    if not data.strip():
        return ParsedFile(source, empty_good, _whole_file_bad(source, "empty file"))
    try:
        raw = read_raw_records(path, data, cfg, RAW_FIELDS)
    except ValueError as exc:
        return ParsedFile(source, empty_good, _whole_file_bad(source, str(exc)))
    if raw.height == 0:
        return ParsedFile(source, empty_good, _whole_file_bad(source, "no data rows"))
    good, bad = validate_raw(raw, cfg, now)
    return ParsedFile(source, good, bad)


CHUNK_ROWS = 500_000
"""Rows of a Parquet landing file parsed, validated and staged at a time (bounds staging memory)."""
TEXT_CHUNK_ROWS = 200_000
"""Rows of a JSONL/CSV landing file per chunk: parsed rows are Python tuples (with the raw line), larger than Arrow rows."""
STREAM_BLOCK = 1 << 20
"""Bytes read from a (decompressed) text landing file at a time."""


class _BlankWatch(io.RawIOBase):
    """A readable byte stream that notes whether anything but ASCII whitespace went through it."""

    def __init__(self, raw) -> None:
        self.raw, self.nonblank = raw, False

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self.raw.read(len(b))
        b[: len(data)] = data
        if not self.nonblank and data.strip():
            self.nonblank = True
        return len(data)


def _stream_lines(raw) -> Iterator[str]:
    """Physical lines of a UTF-8 byte stream, as ``_physical_lines(_decode(all bytes))`` gives them."""
    text = io.TextIOWrapper(io.BufferedReader(raw, STREAM_BLOCK), encoding="utf-8", errors="surrogateescape", newline="")
    first = True
    for line in text:
        if first:
            first = False
            line = line[1:] if line.startswith("\ufeff") else line
        yield line


def _compressed_problem(path: UPath, comp: str) -> str | None:
    """Why a compressed landing file cannot be read to its end (None: it can); streams it once."""
    try:
        with path.open("rb") as fh, DECOMPRESSING_READERS[comp](fh) as z:
            while z.read(STREAM_BLOCK):
                pass
    except DECOMPRESS_ERRORS as exc:
        return _corrupt(comp, exc)
    return None


def _batches(rows: Iterator[tuple], n: int) -> Iterator[list[tuple]]:
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) >= n:
            yield batch
            batch = []
    if batch:
        yield batch


def _iter_text_file(path: UPath, cfg: IngestConfig, now: datetime | None, chunk_rows: int) -> Iterator[ParsedFile]:
    """A JSONL/CSV landing file (optionally compressed) streamed ``chunk_rows`` rows at a time.

    A compressed file is first read through once: a corrupt or truncated one is quarantined
    whole, as :func:`parse_event_file` does, rather than after its good first half published.
    """
    source = path.name
    suffix, comp = split_suffix(source)
    empty_good = pl.DataFrame(schema=STAGED_SCHEMA)
    problem = _compressed_problem(path, comp) if comp else None
    if problem:
        yield ParsedFile(source, empty_good, _whole_file_bad(source, problem))
        return
    n_rows = 0
    with path.open("rb") as fh:
        watch = _BlankWatch(DECOMPRESSING_READERS[comp](fh) if comp else fh)
        row_iter = _csv_row_iter if suffix == ".csv" else _jsonl_row_iter
        for batch in _batches(row_iter(_stream_lines(watch), cfg, RAW_FIELDS), chunk_rows):
            n_rows += len(batch)
            yield ParsedFile(source, *validate_raw(_raw_frame(batch, source), cfg, now))
    if not watch.nonblank:
        yield ParsedFile(source, empty_good, _whole_file_bad(source, "empty file"))
    elif n_rows == 0:
        yield ParsedFile(source, empty_good, _whole_file_bad(source, "no data rows"))


def iter_event_file(path: UPath, cfg: IngestConfig, now: datetime | None = None, chunk_rows: int | None = None) -> Iterator[ParsedFile]:
    """Parse one landing events file in chunks: what :func:`parse_event_file` returns, split by rows.

    An uncompressed Parquet file is read ``chunk_rows`` (default ``CHUNK_ROWS``) rows at a time,
    a JSONL/CSV file (plain or compressed) is streamed ``chunk_rows`` (default
    ``TEXT_CHUNK_ROWS``) rows at a time: memory grows with the chunk, not with the file. Line
    numbers continue across chunks, so every row is named exactly as a whole-file parse names
    it. Other files (compressed Parquet, unreadable, empty) are parsed whole by
    :func:`parse_event_file` and yielded as one chunk.
    """
    suffix, comp = split_suffix(path.name)
    if suffix in TEXT_FORMATS:
        yield from _iter_text_file(path, cfg, now, chunk_rows or TEXT_CHUNK_ROWS)
        return
    chunk_rows = chunk_rows or CHUNK_ROWS
    pf = None
    if suffix == ".parquet" and comp is None:
        try:
            fh = path.open("rb")
            pf = pq.ParquetFile(fh)
            if pf.metadata.num_rows == 0:
                pf = None
        except Exception:  # unreadable: the whole-file parse names the error
            pf = None
    if pf is None:
        yield parse_event_file(path, cfg, now)
        return
    line = 1
    try:
        for batch in pf.iter_batches(batch_size=chunk_rows):
            raw = _arrow_frame(batch, path.name, cfg, RAW_FIELDS, first_line=line)
            line += batch.num_rows
            yield ParsedFile(path.name, *validate_raw(raw, cfg, now))
    except (OSError, ValueError) as exc:  # a corrupt row group after good ones: the rest of the file is quarantined
        bad = _whole_file_bad(path.name, f"unreadable Parquet file from row {line}: {exc}").with_columns(pl.lit(line, pl.Int64).alias("line"))
        yield ParsedFile(path.name, pl.DataFrame(schema=STAGED_SCHEMA), bad)
    finally:
        fh.close()


def refused_file(entry: LandingFile) -> ParsedFile:
    """A landing entry that is not read (broken/escaping symlink, unsupported type) as one quarantined row."""
    return ParsedFile(entry.name, pl.DataFrame(schema=STAGED_SCHEMA), _whole_file_bad(entry.name, entry.problem or "not read"))


def file_fingerprint(path: UPath) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def entry_fingerprint(entry: LandingFile) -> str:
    """Content hash of a readable file; hash of the refusal reason otherwise (no bytes are read)."""
    if entry.problem:
        return "refused-" + hashlib.sha256(entry.problem.encode()).hexdigest()[:8]
    return file_fingerprint(entry.path)


def list_landing(landing_dir: UPath, boundary: UPath | None = None) -> list[LandingFile]:
    """Every visible entry of a landing folder, sorted by name, each readable or refused with a reason.

    Hidden files (``.name``: temporary uploads) and sub-folders are skipped. A
    symlink whose target is missing, or (local lakes) resolves outside
    ``boundary`` (default: the lake root, two levels above ``landing/<kind>``),
    is refused and never opened; so is a file of an unsupported type.
    Refused entries are reported (quarantined as whole files), never silently dropped.
    """
    if not landing_dir.exists():
        return []
    boundary = boundary if boundary is not None else landing_dir.parent.parent
    local = is_local(landing_dir)
    root = os.path.realpath(boundary.path) if local else None
    out = []
    for p in sorted(landing_dir.iterdir(), key=lambda q: q.name):
        if p.name.startswith("."):
            continue
        if local and os.path.islink(p.path):
            target = os.path.realpath(p.path)
            if not os.path.exists(target):
                out.append(LandingFile(p, f"broken symbolic link to {os.readlink(p.path)}: nothing to read"))
                continue
            if not (target == root or target.startswith(root.rstrip(os.sep) + os.sep)):
                out.append(LandingFile(p, f"symbolic link to {target}, outside the lake {root}: refused (copy the file into the landing folder)"))
                continue
        if p.is_dir():
            continue
        out.append(LandingFile(p, file_problem(p.name)))
    return out


def landing_event_files(landing_dir: UPath) -> list[UPath]:
    """The readable files of a landing folder (see :func:`list_landing` for the refused ones)."""
    return [f.path for f in list_landing(landing_dir) if f.problem is None]
