"""Item and user catalogs: landing snapshots + ids seen in events, with first-seen day and text hash."""

from __future__ import annotations

import hashlib
import json

import polars as pl

from recsys_assets.lib.ingest.config import IngestConfig
from recsys_assets.lib.ingest.landing import BAD_SCHEMA, landing_event_files, parse_ts, read_raw_records
from recsys_assets.lib.ingest.schema import ITEM_SCHEMA, LANDING_ITEM_FIELDS, LANDING_USER_FIELDS, USER_SCHEMA, UTC_TS
from recsys_assets.lib.lake import Lake

ITEM_RAW_FIELDS = (*LANDING_ITEM_FIELDS, "image_vector")


def _categories(text: str | None) -> list[str]:
    """A JSON list, or a ``|``-separated string."""
    if text is None or text.strip() == "":
        return []
    t = text.strip()
    if t.startswith("["):
        try:
            return [str(c).strip() for c in json.loads(t) if str(c).strip()]
        except json.JSONDecodeError:
            pass
    return [c.strip() for c in t.split("|") if c.strip()]


def _vector(text: str | None) -> list[float] | None:
    if text is None or text.strip() == "":
        return None
    vals = json.loads(text)
    return [float(v) for v in vals]


def text_hash_expr() -> pl.Expr:
    return pl.concat_str(
        [
            pl.col("title").fill_null(""),
            pl.col("description").fill_null(""),
            pl.col("categories").list.join("|"),
            pl.col("year").cast(pl.String).fill_null(""),
            pl.col("attributes").fill_null(""),
        ],
        separator="\x1f",
    ).map_elements(lambda s: hashlib.sha256(s.encode()).hexdigest()[:16], return_dtype=pl.String)


def _read_landing(lake: Lake, kind: str, fields: tuple[str, ...], cfg: IngestConfig) -> tuple[pl.DataFrame, pl.DataFrame]:
    """All landing files of ``kind`` as string records (later files win per id) + whole-file failures."""
    frames, bad = [], []
    for order, path in enumerate(landing_event_files(lake.landing_dir(kind))):
        data = path.read_bytes()
        if not data.strip():
            bad.append({"source_file": path.name, "line": 0, "field": "(file)", "reason": "empty file", "raw": None, "day": None})
            continue
        try:
            raw = read_raw_records(path, data, cfg, fields)
        except ValueError as exc:
            bad.append({"source_file": path.name, "line": 0, "field": "(file)", "reason": str(exc), "raw": None, "day": None})
            continue
        frames.append(raw.with_columns(_order=pl.lit(order)))
    records = pl.concat(frames, how="vertical") if frames else None
    return records, pl.DataFrame(bad, schema=BAD_SCHEMA)


def build_items(lake: Lake, events_first_day: pl.DataFrame, cfg: IngestConfig) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Items catalog and quarantined item rows.

    ``events_first_day``: (item_id, first_day) from the staged events. Items that
    appear in events but in no catalog file are kept with empty text (never dropped).
    first_seen_day = the earlier of created_at's day and the first event's day.
    """
    records, bad = _read_landing(lake, "items", ITEM_RAW_FIELDS, cfg)
    if records is None:
        items = pl.DataFrame(schema={k: v for k, v in ITEM_SCHEMA.items() if k not in ("first_seen_day", "text_hash")})
    else:
        rec = records.with_columns(
            _created=parse_ts(pl.col("created_at")),
            _year=pl.col("year").str.strip_chars().cast(pl.Int32, strict=False),
        )
        row_bad = rec.filter(pl.col("err_reason").is_not_null() | pl.col("item_id").is_null() | (pl.col("created_at").is_not_null() & pl.col("_created").is_null()))
        bad = pl.concat(
            [
                bad,
                row_bad.select(
                    pl.col("source_file"),
                    pl.col("line"),
                    pl.coalesce(pl.col("err_field"), pl.when(pl.col("item_id").is_null()).then(pl.lit("item_id")).otherwise(pl.lit("created_at"))).alias("field"),
                    pl.coalesce(
                        pl.col("err_reason"),
                        pl.when(pl.col("item_id").is_null()).then(pl.lit("missing item_id")).otherwise(pl.format("unparseable created_at '{}'", pl.col("created_at"))),
                    ).alias("reason"),
                    pl.col("raw"),
                    pl.lit(None, pl.Date).alias("day"),
                ),
            ]
        )
        ok = rec.filter(~pl.struct(["source_file", "line"]).is_in(row_bad.select(pl.struct(["source_file", "line"])).to_series().implode()))
        # Later snapshot files (by name) win for the same item id.
        ok = ok.sort("_order", "line").unique("item_id", keep="last", maintain_order=True)
        items = ok.select(
            pl.col("item_id").str.strip_chars(),
            pl.col("title"),
            pl.col("description"),
            pl.col("categories").map_elements(_categories, return_dtype=pl.List(pl.String)),
            pl.col("_year").alias("year"),
            pl.col("_created").cast(UTC_TS).alias("created_at"),
            pl.col("attributes"),
            pl.col("image_vector").map_elements(_vector, return_dtype=pl.List(pl.Float32)),
        )
    ev = events_first_day.select(pl.col("item_id"), pl.col("first_day"))
    items = items.join(ev, on="item_id", how="full", coalesce=True)
    items = items.with_columns(
        categories=pl.col("categories").fill_null(pl.lit([], pl.List(pl.String))),
        first_seen_day=pl.min_horizontal(pl.col("created_at").dt.date(), pl.col("first_day")),
    ).drop("first_day")
    items = items.with_columns(text_hash=text_hash_expr()).select(list(ITEM_SCHEMA)).cast(ITEM_SCHEMA).sort("item_id")
    return items, bad.sort("source_file", "line")


def build_users(lake: Lake, events_first_day: pl.DataFrame, cfg: IngestConfig) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Users catalog (profile text optional) and quarantined user rows."""
    records, bad = _read_landing(lake, "users", LANDING_USER_FIELDS, cfg)
    if records is None:
        users = pl.DataFrame(schema={"user_id": pl.String, "profile": pl.String})
    else:
        row_bad = records.filter(pl.col("err_reason").is_not_null() | pl.col("user_id").is_null())
        bad = pl.concat(
            [
                bad,
                row_bad.select(
                    "source_file",
                    "line",
                    pl.coalesce(pl.col("err_field"), pl.lit("user_id")).alias("field"),
                    pl.coalesce(pl.col("err_reason"), pl.lit("missing user_id")).alias("reason"),
                    "raw",
                    pl.lit(None, pl.Date).alias("day"),
                ),
            ]
        )
        users = (
            records.filter(pl.col("err_reason").is_null() & pl.col("user_id").is_not_null())
            .sort("_order", "line")
            .unique("user_id", keep="last", maintain_order=True)
            .select(pl.col("user_id").str.strip_chars(), "profile")
        )
    users = users.join(events_first_day.select("user_id", pl.col("first_day").alias("first_seen_day")), on="user_id", how="full", coalesce=True)
    return users.select(list(USER_SCHEMA)).cast(USER_SCHEMA).sort("user_id"), bad.sort("source_file", "line")


def first_days(staged_good: pl.DataFrame, key: str) -> pl.DataFrame:
    """(key, first_day) over staged events."""
    return staged_good.group_by(key).agg(pl.col("ts").min().dt.date().alias("first_day"))


def publish_catalog(lake: Lake, kind: str, frame: pl.DataFrame, bad: pl.DataFrame) -> None:
    """Write the ``items`` or ``users`` catalog and its quarantine atomically."""
    from recsys_assets.lib.lake import write_parquet_atomic

    write_parquet_atomic(frame, lake.catalog(kind))
    write_parquet_atomic(bad.drop("day"), lake.path("quarantine", kind, "part-0.parquet"))


def read_catalog(lake: Lake, kind: str) -> pl.DataFrame:
    from recsys_assets.lib.errors import DatasetUnavailableError
    from recsys_assets.lib.lake import read_parquet

    path = lake.catalog(kind)
    if not path.exists():
        raise DatasetUnavailableError(f"no {kind} catalog at {path}: materialize the '{kind}' asset first (recsys-assets ingest)")
    return read_parquet(path)
