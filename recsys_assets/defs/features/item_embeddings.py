"""Item text embeddings per encoder for snapshot D (incremental: cached by text hash)."""

import dagster as dg

from recsys_assets.defs.features.common import catalogs, partition_day
from recsys_assets.defs.partitions import daily_partitions
from recsys_assets.defs.resources import LakeResource, ModelsResource
from recsys_assets.lib.errors import ModelUnavailableError
from recsys_assets.lib.features.nightly import compute_item_embeddings, save_item_embeddings
from recsys_assets.lib.study.cost import record_cold_encode


@dg.asset(group_name="features", kinds={"pytorch", "numpy"}, partitions_def=daily_partitions, deps=["items", "embedding_student", "collaborative_student"])
def item_embeddings(context: dg.AssetExecutionContext, lake: LakeResource, models: ModelsResource) -> dg.MaterializeResult:
    """Vectors of every item available on D for each configured encoder; only new or changed texts are encoded."""
    the_lake, cfg, day = lake.lake(), models.feature_config(), partition_day(context)
    items, _ = catalogs(the_lake)
    metadata, missing = {}, []
    for name in cfg.encoders:
        try:
            result = compute_item_embeddings(the_lake, items, day, name, cfg)
        except ModelUnavailableError as exc:
            # One missing optional model degrades its arms only; the others still publish.
            context.log.warning(f"encoder {name} unavailable: {exc}")
            missing.append(name)
            continue
        written = save_item_embeddings(the_lake, day, name, result, cfg)
        # A first night's cold encode of the whole catalogue is the study's cost measurement (encoder_study reads it).
        if record_cold_encode(the_lake, day, name, result, cfg) is not None:
            context.log.info(f"{name}: this cold encode of the catalogue is stored as the encoder's measured cost")
        s = result.stats
        kept = "" if written else " (same vectors as the file already there: kept as is)"
        context.log.info(f"{name}: {s['texts_encoded']} encoded, {s['cache_hits']} cache hits, {s['texts_per_s']:.0f} texts/s{kept}")
        for key in ("texts_total", "texts_encoded", "cache_hits", "texts_per_s", "dim"):
            metadata[f"{name}/{key}"] = float(s[key]) if key == "texts_per_s" else int(s[key])
        metadata[f"{name}/fingerprint"] = str(s["fingerprint"])
        if s.get("items_without_vector"):  # item-vector: items with no image_vector got zero vectors
            context.log.warning(f"{name}: {s['items_without_vector']} of {s['texts_total']} items have no image_vector (zero vectors)")
            metadata[f"{name}/items_without_vector"] = int(s["items_without_vector"])
    metadata["unavailable_encoders"] = ", ".join(missing) or "none"
    metadata["config_hash"] = cfg.config_hash()
    return dg.MaterializeResult(metadata=metadata)
