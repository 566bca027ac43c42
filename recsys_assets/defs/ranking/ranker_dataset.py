"""Ranker training frames of day D: the serve-like examples of the last k nights (snapshots before D only)."""

import dagster as dg

from recsys_assets.defs.features.common import partition_day
from recsys_assets.defs.partitions import daily_partitions
from recsys_assets.defs.ranking.ranker_examples import ranker_examples
from recsys_assets.defs.resources import LakeResource, ModelsResource
from recsys_assets.lib.errors import LeakageError
from recsys_assets.lib.ranking.config import RankingConfig
from recsys_assets.lib.ranking.nightly import build_ranker_datasets, ranking_config

# Partitions D - 55 .. D of ranker_examples (RankingConfig.max_train_nights): the window reads the last
# train_nights of them, earlier ones only while it holds fewer than min_train_queries labelled queries (a small
# world); at the start of a lake the missing ones are skipped (and listed in the metadata).
TRAINING_WINDOW_NIGHTS = dg.TimeWindowPartitionMapping(
    start_offset=-(RankingConfig().max_train_nights - 1), end_offset=0, allow_nonexistent_upstream_partitions=True
)


@dg.asset(
    group_name="ranking",
    kinds={"polars"},
    partitions_def=daily_partitions,
    deps=[dg.AssetDep(ranker_examples, partition_mapping=TRAINING_WINDOW_NIGHTS)],
    check_specs=[dg.AssetCheckSpec("examples_before_day", asset="ranker_dataset", blocking=True)],
)
def ranker_dataset(context: dg.AssetExecutionContext, lake: LakeResource, models: ModelsResource):
    """Per protocol and ranker arm: the rows its sources proposed on each night of its training window, its features, labels.

    One file per night; a night the day before already made from the same examples is linked from there."""
    the_lake, cfg, day = lake.lake(), models.feature_config(), partition_day(context)
    rcfg = ranking_config(the_lake, day, cfg, **models.ranking_settings())
    metadata = {"train_nights": rcfg.train_nights, "min_train_queries": rcfg.min_train_queries, "max_train_nights": rcfg.max_train_nights}
    # Every (protocol, arm) file is independent: models.block_threads of them are written side by side.
    stats, problems = build_ranker_datasets(the_lake, day, cfg.protocol.protocols, rcfg, models.block_threads)
    for protocol, arms in stats.items():
        for arm, st in arms.items():
            for key in ("nights", "queries", "nights_reused", "first_snapshot", "last_snapshot", "n_users", "n_rows", "n_positive_rows", "missing_partitions"):
                metadata[f"{protocol}/{arm}/{key}"] = st[key]
    yield dg.MaterializeResult(metadata=metadata)
    yield dg.AssetCheckResult(check_name="examples_before_day", passed=not problems, metadata={"problems": "; ".join(problems) or "none"})
    if problems:
        raise LeakageError("ranker_dataset leakage audit failed: " + "; ".join(problems))
