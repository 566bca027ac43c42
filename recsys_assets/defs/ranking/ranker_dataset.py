"""Ranker training frames: features at D - w, labels from the window [D - w, D) (never day D)."""

import dagster as dg

from recsys_assets.defs.features.common import day_snapshot, events_before_day_dep, partition_day
from recsys_assets.defs.partitions import daily_partitions
from recsys_assets.defs.resources import LakeResource, ModelsResource
from recsys_assets.lib.errors import LeakageError
from recsys_assets.lib.ranking.nightly import build_ranker_datasets, ranking_config
from recsys_assets.lib.snapshot import audit_leakage, day_start


@dg.asset(
    group_name="ranking",
    kinds={"polars"},
    partitions_def=daily_partitions,
    deps=["als_model", "content_to_cf", "user_profiles", events_before_day_dep()],
    check_specs=[dg.AssetCheckSpec("label_window_before_day", asset="ranker_dataset", blocking=True)],
)
def ranker_dataset(context: dg.AssetExecutionContext, lake: LakeResource, models: ModelsResource):
    """Per protocol and ranker arm: candidates of label-window users, features from models fit before D - w, labels."""
    the_lake, cfg, day = lake.lake(), models.feature_config(), partition_day(context)
    rcfg = ranking_config(the_lake, day, cfg, models.new_item_slots, models.max_train_users)
    snap = day_snapshot(the_lake, day, cfg)
    events = snap.events_before
    metadata, problems = {"label_window_days": cfg.protocol.label_window_days}, []
    for (protocol, _), view in snap.views("train").items():
        stats = build_ranker_datasets(the_lake, view, events, cfg, rcfg)
        problems += audit_leakage(view)
        for arm, st in stats.items():
            # A timestamp compared with a timestamp (None: no label events in the window).
            if st["label_events_max_ts"] is not None and st["label_events_max_ts"] >= day_start(day):
                problems.append(f"{protocol}/{arm}: label events reach {st['label_events_max_ts']}")
            for key in ("n_users", "n_rows", "n_positive_rows", "candidate_recall"):
                metadata[f"{protocol}/{arm}/{key}"] = st[key]
    yield dg.MaterializeResult(metadata=metadata)
    yield dg.AssetCheckResult(check_name="label_window_before_day", passed=not problems, metadata={"problems": "; ".join(problems) or "none"})
    if problems:
        raise LeakageError("ranker_dataset leakage audit failed: " + "; ".join(problems))
