"""Landing files -> staged (parsed once per file content) -> daily event partitions.

Staging caches each landing file's parse under ``cache/staged/<content hash>/``
so a nightly run parses only files it has not seen; the daily ``events``
partition then selects, deduplicates and sorts the rows of its day.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Iterator

import polars as pl

from recsys_assets.lib.confighash import config_hash
from recsys_assets.lib.ingest.config import IngestConfig
from recsys_assets.lib.ingest.landing import (
    BAD_SCHEMA,
    STAGED_SCHEMA,
    entry_fingerprint,
    iter_event_file,
    list_landing,
    refused_file,
)
from recsys_assets.lib.schema import EVENT_SCHEMA
from recsys_assets.lib.lake import Lake, read_parquet, write_parquet_atomic

MANIFEST_SCHEMA = {
    "source_file": pl.String(),
    "fingerprint": pl.String(),
    "rows_read": pl.Int64(),
    "rows_good": pl.Int64(),
    "rows_bad": pl.Int64(),
    "first_day": pl.Date(),
    "last_day": pl.Date(),
}


@dataclass
class StagingSummary:
    """What staging did: per-file counts, which days the files touch, and how the landing changed."""

    manifest: pl.DataFrame
    parsed_now: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    """Landing entries not read (broken or escaping symlinks, unsupported types), each quarantined as a whole file."""
    removed: list[str] = field(default_factory=list)
    """Files staged by an earlier run that are gone now (the landing is meant to be append-only)."""
    shrunk: list[str] = field(default_factory=list)
    """Files whose new content has fewer rows than the staged one (rows removed from a landing file)."""

    @property
    def days(self) -> list[date]:
        """Every day that any landing file has rows for (good or quarantined)."""
        return sorted({d for ds in self.manifest["days"].to_list() for d in (ds or [])})

    def landing_changes(self) -> list[str]:
        """One line per departure from the append-only landing contract (empty when none)."""
        out = [f"landing file {name} was removed (its rows are no longer in the landing)" for name in self.removed]
        out += [f"landing file {text}" for text in self.shrunk]
        return out


def _staged_dir(lake: Lake, fingerprint: str):
    return lake.staged_dir(fingerprint)


INDEX_SCHEMA = {"day": pl.Date(), "part": pl.Int64(), "rows": pl.Int64()}
"""``index.parquet`` of a staged file: one row per (day, chunk) part of its good rows; written last (= complete)."""
FIRST_SEEN = {"item_id": "first_seen_items.parquet", "user_id": "first_seen_users.parquet"}
"""Per staged file: (id, ts) of the first valid event of every item / user (what the catalogs need)."""


def _good_part(target, day: date, part: int):
    return target.joinpath("good", f"day={day.isoformat()}", f"part-{part:05d}.parquet")


def _first_seen(frames: list[pl.DataFrame], key: str) -> pl.DataFrame:
    if not frames:
        return pl.DataFrame(schema={key: pl.String(), "ts": STAGED_SCHEMA["ts"]})
    return pl.concat(frames).group_by(key).agg(pl.col("ts").min()).sort(key)


def _stage_file(lake: Lake, entry, target, cfg: IngestConfig, now: datetime | None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Parse one landing file chunk by chunk into ``target``: good rows by day, bad rows, first-seen ids, index.

    Memory is bounded by a chunk (``landing.CHUNK_ROWS`` rows of a Parquet file,
    ``landing.TEXT_CHUNK_ROWS`` of a JSONL/CSV file): each chunk's good rows are written at once
    as ``good/day=D/part-<chunk>.parquet``.
    Returns (index, bad).
    """
    chunks = [refused_file(entry)] if entry.problem else iter_event_file(entry.path, cfg, now)
    index, bads = [], []
    seen: dict[str, list[pl.DataFrame]] = {k: [] for k in FIRST_SEEN}
    for n, parsed in enumerate(chunks):
        bads.append(parsed.bad)
        good = parsed.good
        if good.height == 0:
            continue
        for (day,), rows in good.with_columns(_day=pl.col("ts").dt.date()).partition_by("_day", as_dict=True, maintain_order=True).items():
            write_parquet_atomic(rows.drop("_day"), _good_part(target, day, n))
            index.append({"day": day, "part": n, "rows": rows.height})
        for key in FIRST_SEEN:
            # reduce as we go: the running frame holds each id once
            seen[key] = [_first_seen([*seen[key], good.select(key, "ts")], key)]
    bad = pl.concat(bads) if bads else pl.DataFrame(schema=BAD_SCHEMA)
    index_frame = pl.DataFrame(index, schema=INDEX_SCHEMA).sort("day", "part")
    write_parquet_atomic(bad, target.joinpath("bad.parquet"))
    for key, name in FIRST_SEEN.items():
        write_parquet_atomic(_first_seen(seen[key], key), target.joinpath(name))
    write_parquet_atomic(index_frame, target.joinpath("index.parquet"))
    return index_frame, bad


def stage_landing_events(lake: Lake, cfg: IngestConfig, now: datetime | None = None, log=None) -> StagingSummary:
    """Parse every landing events file not yet staged (by content+config hash); write the manifest.

    A file is staged chunk by chunk (:func:`_stage_file`), so memory grows with a chunk, not
    with the file or the history. Refused entries (broken or escaping symlinks, unsupported
    types) are staged as one quarantined whole-file row each; compressed files are read. The
    new manifest is compared with the previous one: removed files and files that lost rows are
    reported (the landing contract is append-only).
    """
    cfg_key = config_hash(cfg)
    previous = read_manifest(lake)
    rows = []
    parsed_now, reused, refused = [], [], []
    for entry in list_landing(lake.landing_dir("events")):
        path = entry.path
        fp = f"{entry_fingerprint(entry)}-{cfg_key}"
        target = _staged_dir(lake, fp)
        index_path = target.joinpath("index.parquet")
        if entry.problem:
            if log:
                log(f"landing entry {entry.name} not read: {entry.problem}")
            refused.append(entry.name)
        if index_path.exists():
            index, bad = read_parquet(index_path), read_parquet(target.joinpath("bad.parquet"))
            reused.append(path.name)
        else:
            if log and not entry.problem:
                log(f"parsing landing file {path.name}")
            index, bad = _stage_file(lake, entry, target, cfg, now)
            parsed_now.append(path.name)
        days = index.get_column("day").to_list()
        days += bad.select(pl.col("day").drop_nulls().unique()).to_series().to_list()
        days = sorted(set(days))
        n_good = int(index.get_column("rows").sum() or 0)
        rows.append(
            {
                "source_file": path.name,
                "fingerprint": fp,
                "rows_read": n_good + bad.height,
                "rows_good": n_good,
                "rows_bad": bad.height,
                "first_day": days[0] if days else None,
                "last_day": days[-1] if days else None,
                "days": days,
            }
        )
    manifest = pl.DataFrame(rows, schema={**MANIFEST_SCHEMA, "days": pl.List(pl.Date())})
    write_parquet_atomic(manifest, lake.staged_manifest)
    now_rows = {r["source_file"]: r for r in rows}
    removed, shrunk = [], []
    for old in previous.iter_rows(named=True):
        new = now_rows.get(old["source_file"])
        if new is None:
            removed.append(old["source_file"])
        elif new["fingerprint"] != old["fingerprint"] and new["rows_read"] < old["rows_read"]:
            shrunk.append(f"{old['source_file']} changed and has fewer rows ({old['rows_read']:,} -> {new['rows_read']:,}): rows were removed")
    return StagingSummary(manifest=manifest, parsed_now=parsed_now, reused=reused, refused=refused, removed=removed, shrunk=shrunk)


def read_manifest(lake: Lake) -> pl.DataFrame:
    path = lake.staged_manifest
    if not path.exists():
        return pl.DataFrame(schema={**MANIFEST_SCHEMA, "days": pl.List(pl.Date())})
    return read_parquet(path)


@dataclass
class DayPartition:
    """One day's published events and quarantined rows, with the reconciliation counts."""

    day: date
    events: pl.DataFrame
    quarantine: pl.DataFrame
    rows_read: int
    duplicates_dropped: int
    sources: pl.DataFrame | None = None
    """(source_file, line) of each published event, row-aligned with ``events`` (names the landing row of a failed check)."""

    @property
    def reconciles(self) -> bool:
        return self.rows_read == self.events.height + self.quarantine.height + self.duplicates_dropped


DAY_BATCH_ROWS = 500_000
"""Staged rows per batch of days built, validated and published together (a larger day is a batch alone)."""


def _staged_parts(lake: Lake, wanted: set[date]) -> tuple[dict[date, list], dict[date, int], pl.DataFrame]:
    """For the ``wanted`` days: good part files (in manifest order), staged good rows per day, bad rows."""
    parts: dict[date, list] = {}
    rows: dict[date, int] = {}
    bads = []
    for row in read_manifest(lake).iter_rows(named=True):
        if not wanted.intersection(row["days"] or []):
            continue
        staged = _staged_dir(lake, row["fingerprint"])
        index = read_parquet(staged.joinpath("index.parquet")).filter(pl.col("day").is_in(list(wanted)))
        for day, part, n in index.iter_rows():
            parts.setdefault(day, []).append(_good_part(staged, day, part))
            rows[day] = rows.get(day, 0) + n
        bads.append(read_parquet(staged.joinpath("bad.parquet")).filter(pl.col("day").is_in(list(wanted))))
    bad = pl.concat(bads) if bads else pl.DataFrame(schema=BAD_SCHEMA)
    return parts, rows, bad


def _day_partition(day: date, good: pl.DataFrame, bad: pl.DataFrame) -> DayPartition:
    kept = good.sort("source_file", "line").unique("event_id", keep="first", maintain_order=True).sort("ts", "event_id")
    events = kept.select(list(EVENT_SCHEMA))
    return DayPartition(
        day=day,
        events=events,
        quarantine=bad.sort("source_file", "line").drop("day"),
        rows_read=good.height + bad.height,
        duplicates_dropped=good.height - events.height,
        sources=kept.select("source_file", "line"),
    )


def iter_day_partitions(lake: Lake, days: list[date], max_rows: int = DAY_BATCH_ROWS) -> Iterator[list[DayPartition]]:
    """The partitions of ``days`` (sorted) in batches of consecutive days of at most ``max_rows`` staged rows.

    Each day reads only its own staged part files, so memory grows with a batch (at least one
    day), never with the history; the rows of a day are selected, deduplicated and sorted
    exactly as one whole read would.
    """
    wanted = sorted(set(days))
    parts, rows, bad = _staged_parts(lake, set(wanted))
    bad_by_day = {k[0]: v for k, v in bad.partition_by("day", as_dict=True).items()} if bad.height else {}
    batch, batch_rows = [], 0
    for day in wanted:
        n = rows.get(day, 0)
        if batch and batch_rows + n > max_rows:
            yield batch
            batch, batch_rows = [], 0
        files = parts.get(day, [])
        good = pl.concat([read_parquet(p) for p in files]) if files else pl.DataFrame(schema=STAGED_SCHEMA)
        batch.append(_day_partition(day, good, bad_by_day.get(day, pl.DataFrame(schema=BAD_SCHEMA))))
        batch_rows += n
    if batch:
        yield batch


def build_day_partitions(lake: Lake, days: list[date]) -> list[DayPartition]:
    """Every partition of ``days`` at once (small ranges, tests); the events asset streams :func:`iter_day_partitions`."""
    return [p for batch in iter_day_partitions(lake, days) for p in batch]


def publish_day(lake: Lake, part: DayPartition) -> None:
    """Write the day's events and quarantine atomically (same input -> same bytes)."""
    write_parquet_atomic(part.events, lake.events_day(part.day))
    q_path = lake.quarantine_day(part.day)
    if part.quarantine.height:
        write_parquet_atomic(part.quarantine, q_path)
    elif q_path.exists():
        q_path.unlink()


def stale_event_days(lake: Lake, landing_days: list[date]) -> list[date]:
    """Published event days outside the landing's range: no landing row backs them any more.

    An ingest republishes every day from the landing's first to its last day
    (a day whose rows were all removed becomes an empty partition), so only
    days outside that range can hold rows the landing no longer has.
    """
    published = lake.event_days()
    if not landing_days:
        return published
    first, last = min(landing_days), max(landing_days)
    return [d for d in published if d < first or d > last]


def unpublish_days(lake: Lake, days: list[date]) -> int:
    """Remove the events and quarantine partitions of ``days``; returns the event rows removed."""
    removed = lake.count_events(days)
    for d in days:
        for path in (lake.events_day(d), lake.quarantine_day(d)):
            if path.exists():
                path.unlink()
    return removed


def unknown_day_quarantine(lake: Lake) -> pl.DataFrame:
    """Bad rows whose day could not be read (bad timestamp, malformed line, unreadable file)."""
    manifest = read_manifest(lake)
    frames = [
        read_parquet(_staged_dir(lake, fp).joinpath("bad.parquet")).filter(pl.col("day").is_null())
        for fp in manifest["fingerprint"].to_list()
    ]
    if not frames:
        return pl.DataFrame(schema=BAD_SCHEMA).drop("day")
    return pl.concat(frames).drop("day").sort("source_file", "line")


def publish_unknown_day_quarantine(lake: Lake) -> int:
    bad = unknown_day_quarantine(lake)
    write_parquet_atomic(bad, lake.quarantine_day("unknown"))
    return bad.height


def staged_first_days(lake: Lake, key: str) -> pl.DataFrame:
    """(key, first_day): the day of the first valid staged event of every item (``item_id``) or user (``user_id``)."""
    frames = [read_parquet(_staged_dir(lake, fp).joinpath(FIRST_SEEN[key])) for fp in read_manifest(lake)["fingerprint"].to_list()]
    return _first_seen(frames, key).select(key, pl.col("ts").dt.date().alias("first_day"))
