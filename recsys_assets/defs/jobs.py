"""Asset jobs: ingest (catalogs + daily events) and the nightly whole-graph job."""

import dagster as dg

from recsys_assets.defs.partitions import daily_partitions

catalog_job = dg.define_asset_job(
    "catalog_job",
    selection=dg.AssetSelection.assets("staged_events", "items", "users"),
    description="Parse new landing files and rebuild the item/user catalogs.",
)

events_job = dg.define_asset_job(
    "events_job",
    selection=dg.AssetSelection.assets("events"),
    partitions_def=daily_partitions,
    description="Publish daily event partitions (one run may cover a whole range).",
)
