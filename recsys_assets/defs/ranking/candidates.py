"""Candidate pools of the users served on day D, every source tagged on the row."""

import dagster as dg

from recsys_assets.defs.features.common import day_snapshot, partition_day
from recsys_assets.defs.partitions import daily_partitions
from recsys_assets.defs.resources import LakeResource, ModelsResource
from recsys_assets.lib.ranking.nightly import load_snapshot_features, ranking_config, served_users, write_candidate_pool


@dg.asset(
    group_name="ranking",
    kinds={"polars"},
    partitions_def=daily_partitions,
    deps=["als_model", "content_to_cf", "user_profiles", "events"],
)
def candidates(context: dg.AssetExecutionContext, lake: LakeResource, models: ModelsResource) -> dg.MaterializeResult:
    """ALS top-N, content kNN per encoder, content->CF for new items, recent popularity and newest items; seen items excluded.

    Written ``block_users`` users at a time (``write_candidate_pool``): memory grows with a block, not with the day.

    Served users are the users active on D (their ids only: no day-D interaction is a model input).
    """
    the_lake, cfg, day = lake.lake(), models.feature_config(), partition_day(context)
    rcfg = ranking_config(the_lake, day, cfg, **models.ranking_settings())
    snap = day_snapshot(the_lake, day, cfg)
    users = served_users(snap.events_of_day)
    metadata = {"served_users": len(users), "encoders": ", ".join(rcfg.encoders)}
    for (protocol, _), view in snap.views("serve").items():
        feats = load_snapshot_features(the_lake, view, list(rcfg.encoders), cfg)
        counts = write_candidate_pool(feats, users, rcfg, the_lake.recs_dir(day, protocol).joinpath("candidates.parquet"), models.thread_block_users(), models.block_threads)
        metadata[f"{protocol}/pairs"] = counts["pairs"]
        metadata[f"{protocol}/per_user"] = round(counts["pairs"] / max(1, len(users)), 1)
        metadata.update({f"{protocol}/{col}": n for col, n in counts.items() if col.startswith("source_")})
        del feats  # released before the next protocol's features load (two would be held at once)
    return dg.MaterializeResult(metadata=metadata)
