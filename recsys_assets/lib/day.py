"""One day's work: the inputs of snapshot D, read once per process and shared by every stage.

A nightly run materializes about a dozen assets of day D in one process (the in-process
executor of ``day_job`` / ``nightly_job``). Each of them needs the protocol views of the events
before D, and used to read every event before D and rebuild the views itself (seven reads a
night). :meth:`DaySnapshot.of` reads them once per process per (lake, day, events fingerprint,
catalogue, protocol config): a republished day (late data) or a rebuilt catalogue changes the
key, so a stale snapshot is never served. Assets, tests and benchmarks all go through it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import date, timedelta

import polars as pl

from recsys_assets.lib.confighash import config_hash
from recsys_assets.lib.features.nightly import STAGES, FeatureConfig
from recsys_assets.lib.lake import Lake
from recsys_assets.lib.snapshot import SnapshotView, build_view, frame_hash

CACHE_SIZE = 2
"""Snapshots kept per process: today's, plus one (a backfill moving to the next day, or a stage
that looks at the previous night). Each holds the events before D and its views in memory."""

_CACHE: OrderedDict[tuple, "DaySnapshot"] = OrderedDict()
_LOCK = threading.Lock()


@dataclass(eq=False)
class DaySnapshot:
    """Everything of day D that every stage reads: events before D, day D's events, the views, the configs."""

    lake: Lake
    """Where the artifacts of the day live (``lake.snapshot_dir(...)``)."""
    day: date
    """The evaluated day D: models see events with ts < D; day D is the truth."""
    config: FeatureConfig
    """Feature, protocol and interaction settings of the night."""
    items: pl.DataFrame
    """The item catalogue (every item, with ``first_seen_day``)."""
    fingerprint: str
    """Events fingerprint of the published partitions up to and including D (see Lake.events_fingerprint)."""
    _events_before: pl.DataFrame | None = field(default=None, repr=False)
    _events_of_day: pl.DataFrame | None = field(default=None, repr=False)
    _views: dict[tuple[str, str], SnapshotView] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    reads: int = 0
    """How many times this snapshot read events from the lake (1 for events before D, +1 for day D)."""

    @classmethod
    def of(cls, lake: Lake, day: date, items: pl.DataFrame, config: FeatureConfig) -> "DaySnapshot":
        """The snapshot of ``day``: the cached one when nothing it depends on changed, else a fresh one."""
        fingerprint = lake.events_fingerprint(before=day + timedelta(days=1))
        key = (str(lake.root), day, fingerprint, frame_hash(items), config_hash(config.protocol), config_hash(config.interactions))
        with _LOCK:
            snap = _CACHE.get(key)
            if snap is not None:
                _CACHE.move_to_end(key)
                # Configs that do not change the views (encoders, ALS...) may differ between callers.
                return snap if snap.config == config else _with_config(snap, config)
            snap = cls(lake=lake, day=day, config=config, items=items, fingerprint=fingerprint)
            _CACHE[key] = snap
            while len(_CACHE) > CACHE_SIZE:
                _CACHE.popitem(last=False)
            return snap

    @property
    def events_before(self) -> pl.DataFrame:
        """Every published event with ts < D (read on first use)."""
        with self._lock:
            if self._events_before is None:
                self._events_before = self.lake.read_events(before=self.day)
                self.reads += 1
            return self._events_before

    @property
    def events_of_day(self) -> pl.DataFrame:
        """Day D's events: the served users and the truth, never a model input."""
        with self._lock:
            if self._events_of_day is None:
                self._events_of_day = self.lake.read_events(days=[self.day])
                self.reads += 1
            return self._events_of_day

    def view(self, protocol: str, stage: str) -> SnapshotView:
        """The (protocol, stage) view; ``serve`` sees events before D, ``train`` before D - w."""
        key = (protocol, stage)
        if key not in self._views:
            built = build_view(self.events_before, self.items, self.day, protocol, stage, self.config.protocol)
            with self._lock:
                self._views.setdefault(key, built)
        return self._views[key]

    def views(self, stage: str | None = None) -> dict[tuple[str, str], SnapshotView]:
        """Every configured view (of one stage when given), protocol by protocol."""
        return {
            (p, s): self.view(p, s)
            for p in self.config.protocol.protocols
            for s in STAGES
            if stage is None or s == stage
        }


def _with_config(snap: DaySnapshot, config: FeatureConfig) -> DaySnapshot:
    """The same events and views under another (view-neutral) feature config."""
    other = DaySnapshot(lake=snap.lake, day=snap.day, config=config, items=snap.items, fingerprint=snap.fingerprint)
    other._events_before, other._events_of_day, other._views = snap._events_before, snap._events_of_day, snap._views
    return other


def clear_cache() -> None:
    """Forget every cached snapshot (tests; a long-lived process that wants its memory back)."""
    with _LOCK:
        _CACHE.clear()
