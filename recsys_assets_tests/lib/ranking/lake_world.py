"""A ranking-test world run the way production runs it: landed, ingested, features materialized, loaded back.

The world's frames (events, items with their given vectors as ``image_vector``, users with profile
text) are written as landing files into a lake in a temporary folder; ``catalog_job``'s assets and one
``events`` run ingest them; the feature assets (or ``warmup_job``) of the wanted partitions are
materialized with Dagster; the ranking stage's inputs are then built by its own loader
(``ranking.nightly.load_snapshot_features`` on a ``DaySnapshot`` view), as the ``candidates`` and
``ranker_*`` assets build them. Given vectors reach the ranking stage through the ``item-vector``
encoder (the catalogue's precomputed vector alone).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date

import dagster as dg
import polars as pl

from recsys_assets.defs.resources import IngestResource, LakeResource, ModelsResource
from recsys_assets.lib.day import DaySnapshot
from recsys_assets.lib.features.nightly import FeatureConfig
from recsys_assets.lib.ingest.catalog import read_catalog
from recsys_assets.lib.lake import Lake, write_bytes_atomic
from recsys_assets.lib.ranking.inputs import SnapshotFeatures
from recsys_assets.lib.ranking.nightly import load_snapshot_features
from recsys_assets_tests.defs.tiny_world import INGEST, all_assets

FEATURE_ASSETS = ("item_embeddings", "als_model", "content_to_cf", "user_profiles")


@dataclass
class LakeWorld:
    """A world's lake and the configuration its assets ran with."""

    lake: Lake
    models: ModelsResource
    """The ``models`` resource of every run (encoders, protocols, label window, ALS size)."""

    @property
    def resources(self) -> dict:
        return {"lake": LakeResource(root=str(self.lake.root.path)), "ingest": IngestResource(), "models": self.models}

    @property
    def config(self) -> FeatureConfig:
        return self.models.feature_config()

    @property
    def items(self) -> pl.DataFrame:
        """The ingested catalogue (what the assets read)."""
        return read_catalog(self.lake, "items")

    def snapshot(self, day: date) -> DaySnapshot:
        return DaySnapshot.of(self.lake, day, self.items, self.config)

    def features(self, day: date, stage: str, protocol: str = "temporal") -> SnapshotFeatures:
        """The ranking inputs of one view, from the feature assets' artifacts (the ranking assets' own loader)."""
        view = self.snapshot(day).view(protocol, stage)
        return load_snapshot_features(self.lake, view, list(self.config.encoders), self.config)

    def materialize(self, day: date, assets: tuple[str, ...] = FEATURE_ASSETS) -> None:
        """The given assets of partition ``day`` (default: the feature stage)."""
        _ok(dg.materialize(all_assets(), selection=dg.AssetSelection.assets(*assets), resources=self.resources, partition_key=day.isoformat()))

    def warmup(self, day: date) -> None:
        """``warmup_job`` of partition ``day``: its features and serve-like ranker examples."""
        from recsys_assets.definitions import defs

        _ok(defs.resolve_job_def("warmup_job").execute_in_process(partition_key=day.isoformat(), resources=self.resources, raise_on_error=False))


def _ok(result: dg.ExecuteInProcessResult) -> None:
    failed = [e.step_key for e in result.all_events if e.is_step_failure]
    assert result.success, f"run failed in {failed}"


def land_and_ingest(
    root, events: pl.DataFrame, items: pl.DataFrame, vectors: tuple[list[str], object], users: pl.DataFrame | None, models: ModelsResource
) -> LakeWorld:
    """Write the world as landing files (events parquet, items/users JSONL), ingest them as production does."""
    lake = Lake.at(root)
    ev = events.select(
        "user_id", "item_id", pl.col("event_type").cast(pl.String), pl.col("value"),
        pl.col("ts").dt.epoch("s").alias("ts"),
    )
    buf = io.BytesIO()
    ev.write_parquet(buf)
    write_bytes_atomic(lake.landing_dir("events").joinpath("world.parquet"), buf.getvalue())
    ids, mat = vectors
    vec = pl.DataFrame({"item_id": list(ids), "image_vector": pl.Series([list(map(float, r)) for r in mat], dtype=pl.List(pl.Float64))})
    fields = [c for c in ("item_id", "title", "categories") if c in items.columns]
    landing_items = items.select(*fields, pl.col("created_at").dt.strftime("%Y-%m-%dT%H:%M:%SZ")).join(
        vec, on="item_id", how="left"
    )
    write_bytes_atomic(lake.landing_dir("items").joinpath("world.items.jsonl"), landing_items.write_ndjson().encode())
    if users is not None:
        write_bytes_atomic(lake.landing_dir("users").joinpath("world.users.jsonl"), users.write_ndjson().encode())
    world = LakeWorld(lake, models)
    _ok(dg.materialize(all_assets(), selection=dg.AssetSelection.assets(*INGEST), resources=world.resources))
    first, last = events["ts"].min().date(), events["ts"].max().date()
    tags = {"dagster/asset_partition_range_start": first.isoformat(), "dagster/asset_partition_range_end": last.isoformat()}
    _ok(dg.materialize(all_assets(), selection=dg.AssetSelection.assets("events"), resources=world.resources, tags=tags))
    return world
