"""Top-K per served user per arm for day D (and each arm's top-K among new items only)."""

import dagster as dg

from recsys_assets.defs.features.common import day_snapshot, partition_day
from recsys_assets.defs.partitions import daily_partitions
from recsys_assets.defs.ranking.candidates import candidates
from recsys_assets.defs.ranking.rankers import rankers
from recsys_assets.defs.resources import LakeResource, ModelsResource
from recsys_assets.lib.ranking.nightly import day_truth, load_rankers, load_snapshot_features, ranking_config, serve_day, served_users


@dg.asset(group_name="ranking", kinds={"polars"}, partitions_def=daily_partitions, deps=[rankers, candidates])
def recommendations(context: dg.AssetExecutionContext, lake: LakeResource, models: ModelsResource) -> dg.MaterializeResult:
    """Every arm serves every active user of D (no one silently dropped: fallbacks are counted)."""
    the_lake, cfg, day = lake.lake(), models.feature_config(), partition_day(context)
    rcfg = ranking_config(the_lake, day, cfg, **models.ranking_settings())
    snap = day_snapshot(the_lake, day, cfg)
    day_events = snap.events_of_day
    users = served_users(day_events)
    metadata = {"served_users": len(users)}
    for (protocol, _), view in snap.views("serve").items():
        feats = load_snapshot_features(the_lake, view, list(rcfg.encoders), cfg)
        stats = serve_day(the_lake, feats, users, day_truth(day_events, view, cfg), load_rankers(the_lake, day, protocol, rcfg), rcfg, models.block_threads, models.thread_block_users())
        for arm, st in stats.items():
            for key in ("fallback_users", "padded_users", "short_users"):
                if key in st:
                    metadata[f"{protocol}/{arm}/{key}"] = int(st[key])
        del feats, stats  # released before the next protocol's features load (two would be held at once)
    return dg.MaterializeResult(metadata=metadata)
