"""LightGBM lambdarank rankers, one per arm and protocol, early-stopped on a validation slice."""

import dagster as dg

from recsys_assets.defs.features.common import partition_day
from recsys_assets.defs.partitions import daily_partitions
from recsys_assets.defs.ranking.ranker_dataset import ranker_dataset
from recsys_assets.defs.resources import LakeResource, ModelsResource
from recsys_assets.lib.markdown import frame_to_markdown
from recsys_assets.lib.ranking.arm_spec import NO_TEXT
from recsys_assets.lib.ranking.nightly import ranking_config, train_rankers


@dg.asset(group_name="ranking", kinds={"lightgbm"}, partitions_def=daily_partitions, deps=[ranker_dataset])
def rankers(context: dg.AssetExecutionContext, lake: LakeResource, models: ModelsResource) -> dg.MaterializeResult:
    """ranker_no_text and ranker_<encoder> per protocol; global feature importance in metadata."""
    the_lake, cfg, day = lake.lake(), models.feature_config(), partition_day(context)
    rcfg = ranking_config(the_lake, day, cfg, **models.ranking_settings())
    metadata = {"config_hash": rcfg.config_hash()}
    # One single-threaded fit per protocol and arm, models.block_threads of them side by side.
    for protocol, arms in train_rankers(the_lake, day, cfg.protocol.protocols, rcfg, models.block_threads).items():
        for arm, model in arms.items():
            metadata[f"{protocol}/{arm}/best_iteration"] = int(model.best_iteration)
            if arm == NO_TEXT:
                # The prior every arm of the protocol boosts from (chosen on ranker_no_text's frame when left to the data).
                metadata[f"{protocol}/prior_profile_new"] = float(model.meta["prior"].get("profile_new", 0.0))
                if "prior_choice" in model.meta:
                    metadata[f"{protocol}/prior_choice"] = model.meta["prior_choice"]
            if protocol == cfg.protocol.protocols[0]:
                imp = model.feature_importance().sort("gain", descending=True).head(12)
                metadata[f"{arm}/importance"] = dg.MetadataValue.md(frame_to_markdown(imp))
    return dg.MaterializeResult(metadata=metadata)
