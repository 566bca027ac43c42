"""Parse landing event files (JSONL, CSV, Parquet) into normalized rows and quarantined rows.

Every raw row ends in exactly one place: the normalized frame, or the
quarantine frame with its source file, line (1-based, header = line 1 for
CSV), the offending field and a reason. Nothing valid is dropped because a
neighbour was bad.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import polars as pl
import pyarrow.parquet as pq
from upath import UPath

from recsys_assets.lib.ingest.config import IngestConfig
from recsys_assets.lib.ingest.schema import EVENT_SCHEMA, UTC_TS

RAW_FIELDS = ("user_id", "item_id", "event_type", "ts", "value")
SUPPORTED_SUFFIXES = (".jsonl", ".json", ".ndjson", ".csv", ".parquet")

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


def _raw_frame(rows: list[tuple], source: str, fields: tuple[str, ...] = RAW_FIELDS) -> pl.DataFrame:
    """rows: (line, raw, error_field, error_reason, *fields) -> a frame of strings."""
    cols = ["line", "raw", "err_field", "err_reason", *fields]
    data = {c: [r[i] for r in rows] for i, c in enumerate(cols)}
    schema = {c: (pl.Int64() if c == "line" else pl.String()) for c in cols}
    return pl.DataFrame(data, schema=schema).with_columns(source_file=pl.lit(source))


def _as_text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return repr(value)
    return str(value)


def _decoded_lines(lines: list[bytes], first_line: int, nones: tuple, rows: list):
    """(line number, text) of each non-blank line; a non-UTF-8 line becomes a bad row in ``rows``."""
    for n, raw_line in enumerate(lines, start=first_line):
        raw_line = raw_line.rstrip(b"\r")
        if not raw_line.strip():
            continue
        try:
            yield n, raw_line.decode("utf-8")
        except UnicodeDecodeError as exc:
            rows.append((n, raw_line.decode("utf-8", "replace"), "(row)", f"not valid UTF-8 ({exc.reason} at byte {exc.start})", *nones))


def _jsonl_rows(data: bytes, cfg: IngestConfig, fields: tuple[str, ...] = RAW_FIELDS) -> list[tuple]:
    rows = []
    nones = (None,) * len(fields)
    for n, text in _decoded_lines(data.split(b"\n"), 1, nones, rows):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            rows.append((n, text, "(row)", f"malformed JSON: {exc.msg} at column {exc.colno}", *nones))
            continue
        if not isinstance(obj, dict):
            rows.append((n, text, "(row)", f"expected a JSON object, got {type(obj).__name__}", *nones))
            continue
        obj = {cfg.canonical(k): v for k, v in obj.items()}
        rows.append((n, text, None, None, *(_as_text(obj.get(f)) for f in fields)))
    return rows


def _csv_rows(data: bytes, cfg: IngestConfig, fields: tuple[str, ...] = RAW_FIELDS) -> list[tuple]:
    lines = data.split(b"\n")
    if not lines or not lines[0].strip():
        return []
    header = next(csv.reader([lines[0].decode("utf-8", "replace").strip("\r\ufeff")]))
    header = [cfg.canonical(h.strip()) for h in header]
    rows = []
    nones = (None,) * len(fields)
    for n, text in _decoded_lines(lines[1:], 2, nones, rows):
        try:
            values = next(csv.reader([text], strict=True))
        except csv.Error as exc:
            rows.append((n, text, "(row)", f"malformed CSV: {exc}", *nones))
            continue
        if len(values) != len(header):
            rows.append((n, text, "(row)", f"expected {len(header)} fields, got {len(values)}", *nones))
            continue
        rec = dict(zip(header, values))
        rows.append((n, text, None, None, *((rec.get(f) if rec.get(f) != "" else None) for f in fields)))
    return rows


def _parquet_frame(data: bytes, source: str, cfg: IngestConfig, fields: tuple[str, ...] = RAW_FIELDS) -> pl.DataFrame:
    table = pq.read_table(io.BytesIO(data))
    df = pl.from_arrow(table)
    df = df.rename({c: cfg.canonical(c) for c in df.columns})
    exprs = []
    for f in fields:
        if f not in df.columns:
            exprs.append(pl.lit(None, pl.String()).alias(f))
        elif df.schema[f] == pl.Datetime or isinstance(df.schema[f], pl.Datetime):
            col = pl.col(f)
            if df.schema[f].time_zone is None:
                col = col.dt.replace_time_zone("UTC")
            exprs.append(col.dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00").alias(f))
        else:
            exprs.append(pl.col(f).cast(pl.String()).alias(f))
    out = df.select(exprs).with_row_index("line", offset=1).with_columns(
        pl.col("line").cast(pl.Int64()),
        raw=pl.lit(None, pl.String()),
        err_field=pl.lit(None, pl.String()),
        err_reason=pl.lit(None, pl.String()),
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
        ("ts", (pl.col("_ts") < cfg.min_ts) | (pl.col("_ts") > max_ts), pl.format("timestamp {} out of range", pl.col("ts"))),
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


def read_raw_records(path: UPath, data: bytes, cfg: IngestConfig, fields: tuple[str, ...]) -> pl.DataFrame:
    """Any supported landing file -> a frame of strings (line, raw, err_field, err_reason, *fields).

    Raises ValueError for unsupported or unreadable files (the caller quarantines the whole file).
    """
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            return _parquet_frame(data, path.name, cfg, fields)
        except Exception as exc:  # pyarrow raises many types for truncated/corrupt files
            raise ValueError(f"unreadable Parquet file: {exc}") from exc
    if suffix == ".csv":
        return _raw_frame(_csv_rows(data, cfg, fields), path.name, fields)
    if suffix in (".jsonl", ".json", ".ndjson"):
        return _raw_frame(_jsonl_rows(data, cfg, fields), path.name, fields)
    raise ValueError(f"unsupported file type '{suffix}' (use .jsonl, .csv or .parquet)")


def parse_event_file(path: UPath, cfg: IngestConfig, now: datetime | None = None) -> ParsedFile:
    """Parse one landing events file; never raises for bad content, only for unreadable storage."""
    source = path.name
    data = path.read_bytes()
    empty_good = pl.DataFrame(schema=STAGED_SCHEMA)
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


def file_fingerprint(path: UPath) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def landing_event_files(landing_dir: UPath) -> list[UPath]:
    if not landing_dir.exists():
        return []
    return sorted(
        (p for p in landing_dir.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in SUPPORTED_SUFFIXES),
        key=lambda p: p.name,
    )
