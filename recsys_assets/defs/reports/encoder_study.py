"""The study (docs/study.md): cost and lift of every configured encoder, the fusion ablation, new users' profile text."""

import dagster as dg

from recsys_assets.defs.features.common import catalogs, day_snapshot, partition_day
from recsys_assets.defs.partitions import daily_partitions
from recsys_assets.defs.reports.cold_start_eval import cold_start_eval
from recsys_assets.defs.reports.common import report_config_hash
from recsys_assets.defs.resources import LakeResource, ModelsResource
from recsys_assets.lib.evaluation.reporting import open_warehouse
from recsys_assets.lib.markdown import frame_to_markdown
from recsys_assets.lib.study.run import study_tables


@dg.asset(group_name="reports", kinds={"duckdb"}, partitions_def=daily_partitions, deps=[cold_start_eval], pool="duckdb_writer")
def encoder_study(context: dg.AssetExecutionContext, lake: LakeResource, models: ModelsResource) -> dg.MaterializeResult:
    """Answers: which encoder lifts cold start most for its cost, which item inputs carry the lift, and do new users'
    profile texts beat the same attributes as plain categories?

    Over the window ending D (rollup_days): reports.encoder_study (per encoder: parameters, dimension, texts/s and
    seconds for the catalogue on this machine, bytes of vectors, lifts vs no text / TF-IDF with CIs, Pareto front),
    pooled over the days evaluated under D's configuration only (as lift_rollup pools them),
    reports.fusion_ablation and reports.new_user_text. Only the configured encoders are measured.
    """
    the_lake, cfg, day = lake.lake(), models.feature_config(), partition_day(context)
    _, users = catalogs(the_lake)
    tables = study_tables(day_snapshot(the_lake, day, cfg), users, models.rollup_days, report_config_hash(the_lake, day, cfg, models))
    for d, why in tables.excluded.items():
        context.log.warning(f"encoder_study {day}: day {d} left out of the pool: {why}")
    wh = open_warehouse(the_lake)
    for name, frame in (("encoder_study", tables.encoder_study), ("fusion_ablation", tables.fusion_ablation), ("new_user_text", tables.new_user_text)):
        wh.replace_partition(name, frame, {"window_end": day})
    shown = tables.encoder_study.select("protocol", "cell", "encoder", "params", "texts_per_s", "lift_vs_no_text", "ci_low_vs_no_text", "ci_high_vs_no_text", "pareto")
    metadata = {
        "days_pooled": len(tables.days),
        "days left out (other configuration)": len(tables.excluded),
        "encoders": ", ".join(tables.costs),
        "unavailable_encoders": "; ".join(f"{k}: {v}" for k, v in tables.unavailable.items()) or "none",
        "encoder_study_rows": tables.encoder_study.height,
        "fusion_rows": tables.fusion_ablation.height,
        "new_user_rows": tables.new_user_text.height,
        "encoder study": dg.MetadataValue.md(frame_to_markdown(shown) if shown.height else "no rows"),
    }
    for name, cost in tables.costs.items():
        metadata[f"{name}/texts_per_s"] = float(cost.texts_per_s)
    return dg.MaterializeResult(metadata=metadata)
