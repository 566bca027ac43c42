"""Candidate pools of the users served on day D, every source tagged on the row."""

import dagster as dg

from recsys_assets.defs.features.common import day_snapshot, partition_day
from recsys_assets.defs.partitions import daily_partitions
from recsys_assets.defs.resources import LakeResource, ModelsResource
from recsys_assets.lib.lake import write_parquet_atomic
from recsys_assets.lib.ranking.nightly import candidate_pool, load_snapshot_features, ranking_config, served_users


@dg.asset(
    group_name="ranking",
    kinds={"polars"},
    partitions_def=daily_partitions,
    deps=["als_model", "content_to_cf", "user_profiles", "events"],
)
def candidates(context: dg.AssetExecutionContext, lake: LakeResource, models: ModelsResource) -> dg.MaterializeResult:
    """ALS top-N, content kNN per encoder, content->CF for new items, recent popularity and newest items; seen items excluded.

    Served users are the users active on D (their ids only: no day-D interaction is a model input).
    """
    the_lake, cfg, day = lake.lake(), models.feature_config(), partition_day(context)
    rcfg = ranking_config(the_lake, day, cfg, models.new_item_slots, models.max_train_users)
    snap = day_snapshot(the_lake, day, cfg)
    users = served_users(snap.events_of_day)
    metadata = {"served_users": len(users), "encoders": ", ".join(rcfg.encoders)}
    for (protocol, _), view in snap.views("serve").items():
        feats = load_snapshot_features(the_lake, view, list(rcfg.encoders), cfg)
        pool = candidate_pool(feats, users, rcfg)
        write_parquet_atomic(pool, the_lake.recs_dir(day, protocol).joinpath("candidates.parquet"))
        metadata[f"{protocol}/pairs"] = pool.height
        metadata[f"{protocol}/per_user"] = round(pool.height / max(1, len(users)), 1)
        for col in (c for c in pool.columns if c.startswith("source_")):
            metadata[f"{protocol}/{col}"] = int(pool[col].sum())
    return dg.MaterializeResult(metadata=metadata)
