"""Per-user metrics of every arm on day D (truth = day D), per protocol, segment and scope."""

import dagster as dg
import polars as pl

from recsys_assets.defs.features.common import day_snapshot, partition_day
from recsys_assets.defs.partitions import daily_partitions
from recsys_assets.defs.ranking.recommendations import recommendations
from recsys_assets.defs.reports.common import encoder_metas, fingerprints, report_config_hash
from recsys_assets.defs.resources import LakeResource, ModelsResource
from recsys_assets.lib.errors import LeakageError
from recsys_assets.lib.evaluation.daily import evaluate_protocol_pairs
from recsys_assets.lib.evaluation.evaluate import PER_USER_SCHEMA, FrameSpill, arm_metrics_table
from recsys_assets.lib.evaluation.reporting import day_arm_metrics, encoder_cost_rows, open_warehouse, save_eval
from recsys_assets.lib.features.nightly import STAGES, view_artifact_metas
from recsys_assets.lib.markdown import frame_to_markdown
from recsys_assets.lib.snapshot import ViewKey, audit_provenance


@dg.asset(
    group_name="reports",
    kinds={"polars", "duckdb"},
    partitions_def=daily_partitions,
    deps=[recommendations, "events"],
    pool="duckdb_writer",
    check_specs=[dg.AssetCheckSpec("leakage_audit", asset="cold_start_eval", blocking=True)],
)
def cold_start_eval(context: dg.AssetExecutionContext, lake: LakeResource, models: ModelsResource):
    """Answers: how well does each arm recommend on day D, for new, cold and warm users and items?

    Recall/NDCG/HitRate/MRR@K over the full catalogue and among cold items only, per protocol, segment and scope
    (reports.arm_metrics), and what each encoder cost that night (reports.encoder_cost). The evaluated users are
    scored ``block_users`` at a time (the candidate pool is read per block); the outputs do not depend on it.
    """
    the_lake, cfg, day = lake.lake(), models.feature_config(), partition_day(context)
    snap = day_snapshot(the_lake, day, cfg)
    day_events = snap.events_of_day
    per_user: dict[str, FrameSpill] = {}
    metrics: dict[str, pl.DataFrame] = {}
    stats, pairs, n_users, problems = [], [], {}, []
    # Every model of the snapshot says what it was fitted on; the audit reads that, not the code (and needs
    # the views' keys only: the train views' events are never built here).
    for protocol in cfg.protocol.protocols:
        for stage in STAGES:
            problems += audit_provenance(ViewKey.of(day, protocol, stage, cfg.protocol), view_artifact_metas(the_lake, day, protocol, stage))
    try:
        for (protocol, _), view in snap.views("serve").items():
            pu, st, pp, n = evaluate_protocol_pairs(the_lake, view, day_events, cfg, block_users=models.thread_block_users(), threads=models.block_threads)  # audits the view first
            metrics[protocol] = arm_metrics_table(pu)
            per_user[protocol] = FrameSpill(PER_USER_SCHEMA)
            per_user[protocol].add([pu])  # compressed until written: one protocol's rows in memory at a time
            stats.append(st)
            pairs.append(pp)
            n_users[protocol] = n
            del pu
    except LeakageError as err:
        problems.append(str(err))
    # The check reports what the audit found; only then does a failed audit stop the asset.
    yield dg.AssetCheckResult(
        check_name="leakage_audit", passed=not problems,
        metadata={"checked": "inputs < D, holdout hidden, segments from snapshot, every model's recorded data cutoff", "problems": "; ".join(problems) or "none"},
    )
    if problems:
        raise LeakageError("cold_start_eval leakage audit failed: " + "; ".join(problems))
    chash = report_config_hash(the_lake, day, cfg, models)
    # One protocol's rows decompressed at a time, in key order (save_eval writes them as they come).
    save_eval(the_lake, day, (per_user.pop(p).collect() for p in sorted(per_user)), pl.concat(stats), pl.concat(pairs), config_hash=chash)
    metas = encoder_metas(the_lake, day, cfg)
    # Cells never span protocols: the per-protocol tables in protocol order are the one table of all rows.
    table = day_arm_metrics(pl.concat([metrics[p] for p in sorted(metrics)]), day, chash, fingerprints(metas))
    wh = open_warehouse(the_lake)
    wh.replace_partition("arm_metrics", table, {"day": day})
    cost = encoder_cost_rows(day, metas)
    if cost.height:
        wh.replace_partition("encoder_cost", cost, {"day": day})
    headline = table.filter((pl.col("segment_kind") == "all") & (pl.col("metric") == "recall") & (pl.col("k") == 20))
    metadata = {f"{p}/n_users": n for p, n in n_users.items()}
    for row in headline.iter_rows(named=True):
        metadata[f"{row['protocol']}/{row['scope']}/{row['arm']}/recall@20"] = float(row["value"])
    metadata["recall@20 (all users)"] = dg.MetadataValue.md(frame_to_markdown(headline.select("protocol", "scope", "arm", "value", "n_users")))
    yield dg.MaterializeResult(metadata=metadata)
