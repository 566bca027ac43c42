"""Asset jobs: catalogs, daily events (range-capable) and the nightly whole-graph job."""

import dagster as dg

from recsys_assets.defs.executor import step_process_executor
from recsys_assets.defs.partitions import daily_partitions

INGEST_ASSETS = ("staged_events", "items", "users")
DAY_GROUPS = ("features", "ranking", "reports")

catalog_job = dg.define_asset_job(
    "catalog_job",
    selection=dg.AssetSelection.assets(*INGEST_ASSETS),
    description="Parse new landing files and rebuild the item/user catalogs.",
)

events_job = dg.define_asset_job(
    "events_job",
    selection=dg.AssetSelection.assets("events"),
    partitions_def=daily_partitions,
    description="Publish daily event partitions (one run may cover a whole range).",
)

nightly_job = dg.define_asset_job(
    "nightly_job",
    # Everything of day D: new landing files, catalogs, D's events, snapshot-D features,
    # rankers, recommendations and the lift reports (analyst views are unpartitioned).
    selection=dg.AssetSelection.groups("ingest", *DAY_GROUPS),
    partitions_def=daily_partitions,
    tags={"recsys/heavy": "true"},
    # One process per step, independent steps side by side, a thread budget per step (defs/executor.py);
    # execute_in_process (tests, CLI) still runs every step in one process. Swap for k8s_job_executor on a cluster.
    executor_def=step_process_executor,
    description="The whole graph for one day: ingest, features, ranking, evaluation, reports.",
)

day_job = dg.define_asset_job(
    "day_job",
    # Features -> reports for day D when events are already published (demo, backfills).
    selection=dg.AssetSelection.groups(*DAY_GROUPS),
    partitions_def=daily_partitions,
    tags={"recsys/heavy": "true"},
    executor_def=step_process_executor,
    description="Features, ranking and reports of day D from already published events.",
)

warmup_job = dg.define_asset_job(
    "warmup_job",
    # The nights before an evaluated window: their features and serve-like ranker examples, which
    # the rankers of the window's first days train on (RankingConfig.train_nights), no evaluation.
    selection=dg.AssetSelection.assets(
        "embedding_student", "collaborative_student", "item_embeddings", "als_model", "content_to_cf", "user_profiles", "ranker_examples"
    ),
    partitions_def=daily_partitions,
    tags={"recsys/heavy": "true"},
    executor_def=step_process_executor,
    description="Features and ranker examples of a night before an evaluated window (demo, backfills).",
)
