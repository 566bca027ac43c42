"""What every per-day asset shares: its day, the lake, configs, and the dependency on events."""

from __future__ import annotations

from datetime import date

import dagster as dg

from recsys_assets.lib.day import DaySnapshot
from recsys_assets.lib.features.nightly import FeatureConfig
from recsys_assets.lib.ingest.catalog import read_catalog
from recsys_assets.lib.lake import Lake

# Snapshot D uses every event before D: lineage points at the previous day's events
# (the newest input); the asset reads all published days before D.
PREVIOUS_DAY = dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1)


def events_before_day_dep() -> dg.AssetDep:
    return dg.AssetDep("events", partition_mapping=PREVIOUS_DAY)


def partition_day(context: dg.AssetExecutionContext) -> date:
    return date.fromisoformat(context.partition_key)


def catalogs(lake):
    return read_catalog(lake, "items"), read_catalog(lake, "users")


def day_snapshot(lake: Lake, day: date, cfg: FeatureConfig) -> DaySnapshot:
    """Day D's inputs (events before D, day D, views): read once per run process, shared by every asset."""
    return DaySnapshot.of(lake, day, read_catalog(lake, "items"), cfg)
