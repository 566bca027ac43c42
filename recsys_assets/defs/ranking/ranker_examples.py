"""Serve-like ranker examples of one night: the train-stage snapshot (D - w, w = 1) and the next day's positives."""

import dagster as dg

from recsys_assets.defs.features.common import day_snapshot, events_before_day_dep, partition_day
from recsys_assets.defs.partitions import daily_partitions
from recsys_assets.defs.resources import LakeResource, ModelsResource
from recsys_assets.lib.errors import LeakageError
from recsys_assets.lib.ranking.nightly import build_night_examples, ranking_config
from recsys_assets.lib.snapshot import audit_leakage, day_start


@dg.asset(
    group_name="ranking",
    kinds={"polars"},
    partitions_def=daily_partitions,
    deps=["als_model", "content_to_cf", "user_profiles", events_before_day_dep()],
    check_specs=[dg.AssetCheckSpec("label_window_before_day", asset="ranker_examples", blocking=True)],
)
def ranker_examples(context: dg.AssetExecutionContext, lake: LakeResource, models: ModelsResource):
    """Per protocol: candidates of every ranker arm for the users with a positive on day D - w, all arms' features, labels.

    The candidates of the sources made from the same inputs and settings as on night D - w are read from the pool
    ``candidates`` stored then for its served users (the labelled users were served that day); the others (TF-IDF's:
    refitted every night) are generated here.
    Rows are kept for the users with a positive among their candidates (the others' queries carry no
    ranking signal and no fit reads them; they are counted in ``users_without_positive_candidates``,
    their pairs in ``n_candidate_rows``). Written ``block_users`` labelled users at a time: memory grows
    with a block, not with the night.
    """
    the_lake, cfg, day = lake.lake(), models.feature_config(), partition_day(context)
    rcfg = ranking_config(the_lake, day, cfg, **models.ranking_settings())
    snap = day_snapshot(the_lake, day, cfg)
    metadata, problems = {"label_window_days": cfg.protocol.label_window_days}, []
    for (protocol, _), view in snap.views("train").items():
        st = build_night_examples(the_lake, view, snap.events_before, cfg, rcfg, models.thread_block_users(), models.block_threads)
        problems += audit_leakage(view)
        # A timestamp compared with a timestamp (None: no positives that day).
        if st["label_events_max_ts"] is not None and st["label_events_max_ts"] >= day_start(day):
            problems.append(f"{protocol}: label events reach {st['label_events_max_ts']}")
        for key in ("snapshot", "n_users", "users_without_positive_candidates", "n_candidate_rows", "n_rows", "n_positive_rows", "candidate_recall"):
            metadata[f"{protocol}/{key}"] = st[key]
        # night D - w's stored pool, for the sources made from the same inputs (``nightly.earlier_candidate_pool``)
        metadata[f"{protocol}/candidates_from"] = st.get("candidates_from") or "generated"
        metadata[f"{protocol}/candidate_sources_read"] = ", ".join(st.get("candidate_sources_read", ())) or "none"
    yield dg.MaterializeResult(metadata=metadata)
    yield dg.AssetCheckResult(check_name="label_window_before_day", passed=not problems, metadata={"problems": "; ".join(problems) or "none"})
    if problems:
        raise LeakageError("ranker_examples leakage audit failed: " + "; ".join(problems))
