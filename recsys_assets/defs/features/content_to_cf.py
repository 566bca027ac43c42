"""Text embedding -> ALS item factors, fitted on warm items, per encoder/protocol/stage."""

import dagster as dg

from recsys_assets.defs.features.als_model import als_model
from recsys_assets.defs.features.common import day_snapshot, partition_day
from recsys_assets.defs.features.item_embeddings import item_embeddings
from recsys_assets.defs.partitions import daily_partitions
from recsys_assets.defs.resources import LakeResource, ModelsResource
from recsys_assets.lib.artifacts import recorded_provenance
from recsys_assets.lib.features.als import ALSModel
from recsys_assets.lib.features.content_to_cf import ContentToCFError
from recsys_assets.lib.features.nightly import encoders_with_embeddings, fit_view_c2cf, load_item_embeddings


@dg.asset(group_name="features", kinds={"scikitlearn"}, partitions_def=daily_partitions, deps=[item_embeddings, als_model])
def content_to_cf(context: dg.AssetExecutionContext, lake: LakeResource, models: ModelsResource) -> dg.MaterializeResult:
    """Gives brand-new items pseudo ALS factors from their text; held-out R^2/cosine vs a mean-vector baseline in metadata."""
    the_lake, cfg, day = lake.lake(), models.feature_config(), partition_day(context)
    views = day_snapshot(the_lake, day, cfg).views()
    metadata = {"config_hash": cfg.config_hash()}
    for name in encoders_with_embeddings(the_lake, day, cfg):
        item_ids, vectors, _ = load_item_embeddings(the_lake, day, name)
        for (protocol, stage), view in views.items():
            als = ALSModel.load(the_lake.als_dir(day, protocol, stage))
            try:
                model = fit_view_c2cf(view, item_ids, vectors, als, cfg)
            except ContentToCFError as exc:
                # Too few warm items: new items get no pseudo factors (the ranker sees NaN), logged.
                context.log.warning(f"{name}/{protocol}/{stage}: no content_to_cf: {exc}")
                metadata[f"{name}/{protocol}/{stage}/skipped"] = str(exc)
                continue
            with recorded_provenance(view.provenance()):
                model.save(the_lake.c2cf_dir(day, protocol, stage, name))
            if stage == "serve":
                for key in ("r2", "mean_cosine", "baseline_r2", "baseline_mean_cosine", "n_warm", "n_holdout"):
                    if key in model.metrics:
                        metadata[f"{name}/{protocol}/{key}"] = float(model.metrics[key])
    return dg.MaterializeResult(metadata=metadata)
