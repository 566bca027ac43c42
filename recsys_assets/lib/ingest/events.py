"""Landing files -> staged (parsed once per file content) -> daily event partitions.

Staging caches each landing file's parse under ``cache/staged/<content hash>/``
so a nightly run parses only files it has not seen; the daily ``events``
partition then selects, deduplicates and sorts the rows of its day.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

import polars as pl

from recsys_assets.lib.confighash import config_hash
from recsys_assets.lib.ingest.config import IngestConfig
from recsys_assets.lib.ingest.landing import (
    BAD_SCHEMA,
    STAGED_SCHEMA,
    entry_fingerprint,
    list_landing,
    parse_event_file,
    refused_file,
)
from recsys_assets.lib.ingest.schema import EVENT_SCHEMA
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
    return lake.path("cache", "staged", fingerprint)


def stage_landing_events(lake: Lake, cfg: IngestConfig, now: datetime | None = None, log=None) -> StagingSummary:
    """Parse every landing events file not yet staged (by content+config hash); write the manifest.

    Refused entries (broken or escaping symlinks, unsupported types) are staged
    as one quarantined whole-file row each; compressed files are read. The new
    manifest is compared with the previous one: removed files and files that
    lost rows are reported (the landing contract is append-only).
    """
    cfg_key = config_hash(cfg)
    previous = read_manifest(lake)
    rows = []
    parsed_now, reused, refused = [], [], []
    for entry in list_landing(lake.landing_dir("events")):
        path = entry.path
        fp = f"{entry_fingerprint(entry)}-{cfg_key}"
        target = _staged_dir(lake, fp)
        good_path, bad_path = target.joinpath("good.parquet"), target.joinpath("bad.parquet")
        if entry.problem:
            if log:
                log(f"landing entry {entry.name} not read: {entry.problem}")
            refused.append(entry.name)
        if good_path.exists() and bad_path.exists():
            good, bad = read_parquet(good_path), read_parquet(bad_path)
            reused.append(path.name)
        else:
            if log and not entry.problem:
                log(f"parsing landing file {path.name}")
            parsed = refused_file(entry) if entry.problem else parse_event_file(path, cfg, now)
            good, bad = parsed.good, parsed.bad
            # bad first: a staged dir counts as complete only once good.parquet exists.
            write_parquet_atomic(bad, bad_path)
            write_parquet_atomic(good, good_path)
            parsed_now.append(path.name)
        days = good.select(pl.col("ts").dt.date().unique()).to_series().to_list()
        days += bad.select(pl.col("day").drop_nulls().unique()).to_series().to_list()
        days = sorted(set(days))
        rows.append(
            {
                "source_file": path.name,
                "fingerprint": fp,
                "rows_read": good.height + bad.height,
                "rows_good": good.height,
                "rows_bad": bad.height,
                "first_day": days[0] if days else None,
                "last_day": days[-1] if days else None,
                "days": days,
            }
        )
    manifest = pl.DataFrame(rows, schema={**MANIFEST_SCHEMA, "days": pl.List(pl.Date())})
    write_parquet_atomic(manifest, lake.path("cache", "staged", "manifest.parquet"))
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
    path = lake.path("cache", "staged", "manifest.parquet")
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


def build_day_partitions(lake: Lake, days: list[date]) -> list[DayPartition]:
    """Select, deduplicate and sort the staged rows of each requested day (files read once)."""
    manifest = read_manifest(lake)
    wanted = set(days)
    goods, bads = [], []
    for row in manifest.iter_rows(named=True):
        if not wanted.intersection(row["days"] or []):
            continue
        staged = _staged_dir(lake, row["fingerprint"])
        goods.append(read_parquet(staged.joinpath("good.parquet")).filter(pl.col("ts").dt.date().is_in(list(wanted))))
        bads.append(read_parquet(staged.joinpath("bad.parquet")).filter(pl.col("day").is_in(list(wanted))))
    good = pl.concat(goods) if goods else pl.DataFrame(schema=STAGED_SCHEMA)
    bad = pl.concat(bads) if bads else pl.DataFrame(schema=BAD_SCHEMA)
    good = good.with_columns(_day=pl.col("ts").dt.date())
    out = []
    by_day_good = {k[0]: v for k, v in good.partition_by("_day", as_dict=True).items()} if good.height else {}
    by_day_bad = {k[0]: v for k, v in bad.partition_by("day", as_dict=True).items()} if bad.height else {}
    for day in sorted(wanted):
        g = by_day_good.get(day, pl.DataFrame(schema={**STAGED_SCHEMA, "_day": pl.Date()}))
        b = by_day_bad.get(day, pl.DataFrame(schema=BAD_SCHEMA))
        kept = g.sort("source_file", "line").unique("event_id", keep="first", maintain_order=True).sort("ts", "event_id")
        events = kept.select(list(EVENT_SCHEMA))
        quarantine = b.sort("source_file", "line").drop("day")
        out.append(
            DayPartition(
                day=day,
                events=events,
                quarantine=quarantine,
                rows_read=g.height + b.height,
                duplicates_dropped=g.height - events.height,
                sources=kept.select("source_file", "line"),
            )
        )
    return out


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


def read_staged_good(lake: Lake) -> pl.DataFrame:
    """All staged (valid, not yet deduplicated) event rows of the current landing files."""
    frames = [read_parquet(_staged_dir(lake, fp).joinpath("good.parquet")) for fp in read_manifest(lake)["fingerprint"].to_list()]
    return pl.concat(frames) if frames else pl.DataFrame(schema=STAGED_SCHEMA)
