"""Implicit ALS factors for each protocol and stage of snapshot D."""

import dagster as dg

from recsys_assets.defs.features.common import day_snapshot, events_before_day_dep, partition_day
from recsys_assets.defs.partitions import daily_partitions
from recsys_assets.defs.resources import LakeResource, ModelsResource
from recsys_assets.lib.artifacts import recorded_provenance
from recsys_assets.lib.features.nightly import view_als


@dg.asset(group_name="features", kinds={"implicit", "numpy"}, partitions_def=daily_partitions, deps=[events_before_day_dep(), "items"])
def als_model(context: dg.AssetExecutionContext, lake: LakeResource, models: ModelsResource) -> dg.MaterializeResult:
    """ALS on events before D (serve) and before D - w (ranker training), per protocol; few-event users folded in.

    The training view's model is night D - w's serve model when that night fitted it on the same events and
    settings (``nightly.earlier_serve_als``: same bytes, half the work); otherwise it is fitted here.
    """
    the_lake, cfg, day = lake.lake(), models.feature_config(), partition_day(context)
    metadata = {"config_hash": cfg.config_hash()}
    for (protocol, stage), view in day_snapshot(the_lake, day, cfg).views().items():
        model, stats = view_als(the_lake, view, cfg)
        with recorded_provenance(view.provenance()):
            model.save(the_lake.als_dir(day, protocol, stage))
        for key, value in stats.items():
            if value is not None:
                metadata[f"{protocol}/{stage}/{key}"] = value
    return dg.MaterializeResult(metadata=metadata)
