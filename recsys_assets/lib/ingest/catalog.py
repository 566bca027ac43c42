"""Item and user catalogs: landing snapshots + ids seen in events, with first-seen day and text hash."""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from dataclasses import dataclass

import polars as pl

from recsys_assets.lib.ingest.config import IngestConfig
from recsys_assets.lib.ingest.landing import BAD_SCHEMA, landing_bytes, list_landing, parse_ts, read_raw_records
from recsys_assets.lib.schema import ITEM_SCHEMA, LANDING_ITEM_FIELDS, LANDING_USER_FIELDS, USER_SCHEMA, UTC_TS
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
    """A checked image vector (see :func:`parse_vector`); only called on rows that passed the check."""
    vec, _why = parse_vector(text)
    return vec


def parse_vector(text: str | None) -> tuple[list[float] | None, str | None]:
    """``image_vector`` text -> (floats, None), or (None, reason) when it is not a flat list of finite numbers.

    Null, empty text and ``[]`` mean "no vector" (None, None).
    """
    if text is None or text.strip() == "":
        return None, None
    try:
        vals = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        return None, f"image_vector is not valid JSON ({getattr(exc, 'msg', 'nested too deeply')}): want a list of numbers"
    if not isinstance(vals, list):
        return None, f"image_vector must be a JSON list of numbers, got {type(vals).__name__}"
    if not vals:
        return None, None
    for i, v in enumerate(vals):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return None, f"image_vector[{i}] is {json.dumps(v)[:40]}: want a flat list of numbers"
        if not math.isfinite(v) or abs(v) > 3.4e38:
            return None, f"image_vector[{i}] is {v}: want finite float32 numbers"
    return [float(v) for v in vals], None


def _year_problem(text: str | None) -> str | None:
    """None for a missing or integral year (``1995``, ``1995.0``), else the reason."""
    if text is None or text.strip() == "":
        return None
    try:
        y = float(text.strip())
    except ValueError:
        return f"year '{text[:40]}' is not an integer"
    if not math.isfinite(y) or not y.is_integer() or not (-(2**31) < y < 2**31):
        return f"year '{text[:40]}' is not an integer"
    return None


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


def _read_landing(lake: Lake, kind: str, fields: tuple[str, ...], cfg: IngestConfig) -> tuple[pl.DataFrame | None, pl.DataFrame]:
    """All landing files of ``kind`` as string records (later files win per id) + whole-file failures."""
    frames, bad = [], []
    for order, entry in enumerate(list_landing(lake.landing_dir(kind))):
        path = entry.path
        if entry.problem:
            bad.append({"source_file": path.name, "line": 0, "field": "(file)", "reason": entry.problem, "raw": None, "day": None})
            continue
        try:
            data = landing_bytes(path)
            if not data.strip():
                raise ValueError("empty file")
            raw = read_raw_records(path, data, cfg, fields)
        except ValueError as exc:
            bad.append({"source_file": path.name, "line": 0, "field": "(file)", "reason": str(exc), "raw": None, "day": None})
            continue
        frames.append(raw.with_columns(_order=pl.lit(order)))
    records = pl.concat(frames, how="vertical") if frames else None
    return records, pl.DataFrame(bad, schema=BAD_SCHEMA)


def _row_checks(rec: pl.DataFrame, checks: list[tuple[str, pl.Expr, pl.Expr]]) -> pl.DataFrame:
    """Adds err_field/err_reason from the FIRST failing check (earlier parse errors win)."""
    f_chain = r_chain = None
    for name, cond, why in checks:
        cond = cond.fill_null(False)
        f_chain = (pl.when(cond) if f_chain is None else f_chain.when(cond)).then(pl.lit(name))
        r_chain = (pl.when(cond) if r_chain is None else r_chain.when(cond)).then(why)
    return rec.with_columns(
        err_field=pl.coalesce(pl.col("err_field"), f_chain.otherwise(None)),
        err_reason=pl.coalesce(pl.col("err_reason"), r_chain.otherwise(None)),
    )


def _bad_rows(rec: pl.DataFrame) -> pl.DataFrame:
    return rec.filter(pl.col("err_reason").is_not_null()).select(
        pl.col("source_file"),
        pl.col("line"),
        pl.col("err_field").alias("field"),
        pl.col("err_reason").alias("reason"),
        pl.col("raw"),
        pl.lit(None, pl.Date).alias("day"),
    )


def vector_dim(lengths: list[int], configured: int = 0) -> int | None:
    """The image_vector length of the catalogue: ``configured`` if > 0, else the most common length (ties: the smaller)."""
    if configured > 0:
        return configured
    counts = Counter(n for n in lengths if n)
    if not counts:
        return None
    return min(counts, key=lambda n: (-counts[n], n))


@dataclass
class CatalogBuild:
    """A catalog frame, its quarantined rows and how many landing rows later rows replaced."""

    frame: pl.DataFrame
    bad: pl.DataFrame
    rows_read: int = 0
    """Landing rows read (a refused or unreadable file counts as one row)."""
    superseded: int = 0
    """Valid rows replaced by a later row of the same (whitespace-stripped) id."""
    from_landing: int = 0
    """Catalogue rows that come from a landing row (the rest were only seen in events)."""

    @property
    def reconciles(self) -> bool:
        return self.rows_read == self.from_landing + self.bad.height + self.superseded


def build_items(lake: Lake, events_first_day: pl.DataFrame, cfg: IngestConfig) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Item catalog and quarantined item rows (see :func:`build_items_counted`)."""
    built = build_items_counted(lake, events_first_day, cfg)
    return built.frame, built.bad


def build_items_counted(lake: Lake, events_first_day: pl.DataFrame, cfg: IngestConfig) -> CatalogBuild:
    """Items catalog, quarantined item rows, and the row counts that reconcile them.

    ``events_first_day``: (item_id, first_day) from the staged events. Items that
    appear in events but in no catalog file are kept with empty text (never dropped).
    first_seen_day = the earlier of created_at's day and the first event's day.
    Ids are whitespace-stripped BEFORE later rows replace earlier ones, so `` i05``
    and ``i05`` are one item. A bad value (id, created_at, year, image_vector, or
    an image_vector whose length differs from the catalogue's) quarantines its row
    with file, line, field and reason; every other row publishes.
    """
    records, bad = _read_landing(lake, "items", ITEM_RAW_FIELDS, cfg)
    rows_read = bad.height
    superseded = from_landing = 0
    if records is None:
        items = pl.DataFrame(schema={k: v for k, v in ITEM_SCHEMA.items() if k not in ("first_seen_day", "text_hash")})
    else:
        rows_read += records.height
        rec = records.with_columns(
            pl.col("item_id").str.strip_chars(),
            _created=parse_ts(pl.col("created_at")),
            _year_problem=pl.col("year").map_elements(_year_problem, return_dtype=pl.String, skip_nulls=True),
            _vec_problem=pl.col("image_vector").map_elements(lambda t: parse_vector(t)[1], return_dtype=pl.String, skip_nulls=True),
            _vec_len=pl.col("image_vector").map_elements(lambda t: len(parse_vector(t)[0] or []), return_dtype=pl.Int64, skip_nulls=True),
        )
        dim = vector_dim(rec.filter(pl.col("err_reason").is_null() & pl.col("_vec_problem").is_null())["_vec_len"].drop_nulls().to_list(), cfg.image_vector_dim)
        rec = _row_checks(
            rec,
            [
                ("item_id", pl.col("item_id").is_null() | (pl.col("item_id") == ""), pl.lit("missing item_id")),
                ("created_at", pl.col("created_at").is_not_null() & pl.col("_created").is_null(), pl.format("unparseable created_at '{}'", pl.col("created_at"))),
                ("year", pl.col("_year_problem").is_not_null(), pl.col("_year_problem")),
                ("image_vector", pl.col("_vec_problem").is_not_null(), pl.col("_vec_problem")),
                (
                    "image_vector",
                    (pl.col("_vec_len") > 0) & (pl.col("_vec_len") != (dim or 0)),
                    pl.format(
                        "image_vector has length {}; the catalogue's vectors have length {} ({})",
                        pl.col("_vec_len"),
                        pl.lit(dim),
                        pl.lit("IngestConfig.image_vector_dim" if cfg.image_vector_dim else "the most common length"),
                    ),
                ),
            ],
        )
        bad = pl.concat([bad, _bad_rows(rec)])
        ok = rec.filter(pl.col("err_reason").is_null())
        # Later snapshot files (by name), then later lines, win for the same (normalized) item id.
        deduped = ok.sort("_order", "line").unique("item_id", keep="last", maintain_order=True)
        superseded = ok.height - deduped.height
        from_landing = deduped.height
        items = deduped.select(
            pl.col("item_id"),
            pl.col("title"),
            pl.col("description"),
            pl.col("categories").map_elements(_categories, return_dtype=pl.List(pl.String)),
            pl.col("year").str.strip_chars().cast(pl.Float64, strict=False).cast(pl.Int32, strict=False).alias("year"),
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
    return CatalogBuild(items, bad.sort("source_file", "line"), rows_read, superseded, from_landing)


def build_users(lake: Lake, events_first_day: pl.DataFrame, cfg: IngestConfig) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Users catalog (profile text optional) and quarantined user rows (ids stripped before dedupe)."""
    records, bad = _read_landing(lake, "users", LANDING_USER_FIELDS, cfg)
    if records is None:
        users = pl.DataFrame(schema={"user_id": pl.String, "profile": pl.String})
    else:
        rec = _row_checks(
            records.with_columns(pl.col("user_id").str.strip_chars()),
            [("user_id", pl.col("user_id").is_null() | (pl.col("user_id") == ""), pl.lit("missing user_id"))],
        )
        bad = pl.concat([bad, _bad_rows(rec)])
        users = (
            rec.filter(pl.col("err_reason").is_null())
            .sort("_order", "line")
            .unique("user_id", keep="last", maintain_order=True)
            .select("user_id", "profile")
        )
    users = users.join(events_first_day.select("user_id", pl.col("first_day").alias("first_seen_day")), on="user_id", how="full", coalesce=True)
    return users.select(list(USER_SCHEMA)).cast(USER_SCHEMA).sort("user_id"), bad.sort("source_file", "line")


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
