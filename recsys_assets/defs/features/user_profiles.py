"""User interest vectors in each encoder's space (history EMA; profile text for users with no events)."""

import dagster as dg
import numpy as np

from recsys_assets.defs.features.common import catalogs, day_snapshot, events_before_day_dep, partition_day
from recsys_assets.defs.features.item_embeddings import item_embeddings
from recsys_assets.defs.partitions import daily_partitions
from recsys_assets.defs.resources import LakeResource, ModelsResource
from recsys_assets.lib.artifacts import recorded_provenance
from recsys_assets.lib.features.nightly import (
    available_items,
    build_view_profiles,
    encoders_with_embeddings,
    load_item_embeddings,
    write_npz,
)


@dg.asset(group_name="features", kinds={"numpy"}, partitions_def=daily_partitions, deps=[item_embeddings, events_before_day_dep(), "users"])
def user_profiles(context: dg.AssetExecutionContext, lake: LakeResource, models: ModelsResource) -> dg.MaterializeResult:
    """u <- u + alpha * (e_item - u) over each user's history in time order, per encoder/protocol/stage."""
    the_lake, cfg, day = lake.lake(), models.feature_config(), partition_day(context)
    items, users = catalogs(the_lake)
    views = day_snapshot(the_lake, day, cfg).views()
    metadata = {"config_hash": cfg.config_hash()}
    text_memo: dict = {}  # profile texts encoded once per encoder for the four views
    for name in encoders_with_embeddings(the_lake, day, cfg):
        item_ids, vectors, meta = load_item_embeddings(the_lake, day, name)
        for (protocol, stage), view in views.items():
            uids, mat, stats = build_view_profiles(
                view, item_ids, vectors, users, name, cfg, the_lake, available_items(items, day), text_memo
            )
            stats.update(config_hash=cfg.config_hash(), encoder_fingerprint=meta.get("fingerprint"))
            with recorded_provenance(view.provenance()):
                write_npz(the_lake.profiles_file(day, protocol, stage, name), meta=stats, user_ids=np.asarray(uids, dtype=str), vectors=mat)
            if stage == "serve":
                metadata[f"{name}/{protocol}/users"] = len(uids)
                metadata[f"{name}/{protocol}/profile_text_users"] = int(stats.get("profile_text_users", 0))
                # Encoders without a text model (metadata, item-vector) give profile-text users no vector.
                metadata[f"{name}/{protocol}/profile_text_skipped"] = int(stats.get("profile_text_skipped", 0))
    return dg.MaterializeResult(metadata=metadata)
