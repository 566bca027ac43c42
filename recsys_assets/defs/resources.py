"""Resources: where the lake is and how the pipeline is configured (swapped per environment)."""

from __future__ import annotations

import dagster as dg

from recsys_assets.lib.ingest.config import IngestConfig
from recsys_assets.lib.lake import Lake, lake_root_from_env


class LakeResource(dg.ConfigurableResource):
    """The data lake root: a local folder or any fsspec URL (s3://, gs://, memory://)."""

    root: str = ""
    """Lake root; empty means ``$RECSYS_LAKE`` or ``./data_lake``."""

    def lake(self) -> Lake:
        return Lake.at(self.root or lake_root_from_env())


class IngestResource(dg.ConfigurableResource):
    """How landing rows map onto the normalized schema."""

    field_map: dict[str, str] = {}
    """Landing field name -> normalized name (e.g. ``{"uid": "user_id"}``)."""

    extra_event_types: dict[str, str] = {}
    """Extra raw event type -> normalized type mappings, added to the defaults."""

    def config(self) -> IngestConfig:
        base = IngestConfig()
        return IngestConfig(field_map=dict(self.field_map), event_type_map={**base.event_type_map, **self.extra_event_types})


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"lake": LakeResource(), "ingest": IngestResource()})
