"""Lift pooled over a window of days, warm-up curves, and the HTML report."""

import dagster as dg
import polars as pl

from recsys_assets.defs.features.common import partition_day
from recsys_assets.defs.partitions import daily_partitions
from recsys_assets.defs.reports.cold_start_lift import cold_start_lift
from recsys_assets.defs.reports.common import encoder_metas, fingerprints, headline_metadata, report_config_hash
from recsys_assets.defs.reports.encoder_study import encoder_study
from recsys_assets.defs.resources import LakeResource, ModelsResource
from recsys_assets.defs.schedules import REPORT_FRESHNESS
from recsys_assets.lib.evaluation.html_report import markdown_lift_table
from recsys_assets.lib.evaluation.lift import LiftConfig
from recsys_assets.lib.evaluation.ranker_check import ranker_check_notes, ranker_check_warnings
from recsys_assets.lib.evaluation.reporting import publish_window, rollup_report


@dg.asset(group_name="reports", kinds={"duckdb", "html"}, partitions_def=daily_partitions, deps=[cold_start_lift, encoder_study], pool="duckdb_writer", freshness_policy=REPORT_FRESHNESS)
def lift_rollup(context: dg.AssetExecutionContext, lake: LakeResource, models: ModelsResource) -> dg.MaterializeResult:
    """Answers the question: over the window ending D, does a pretrained LM lift new-item and new-user recall@20
    over TF-IDF and over no text, by how much, for how many users, at what encoding cost?

    The verdict per primary endpoint (reports.headline) is this asset's metadata; it also pools every cell over
    (D - window, D] (reports.cold_start_lift_rollup), the warm-up curves, the treatment check (reports.ranker_check: every
    ranker vs the best of popularity/ALS, logged as a warning when one is significantly below), and writes the HTML
    report (reports/index.html in the lake).
    """
    the_lake, cfg, day = lake.lake(), models.feature_config(), partition_day(context)
    fps = fingerprints(encoder_metas(the_lake, day, cfg))
    window = rollup_report(the_lake, day, models.rollup_days, cfg.lm_encoders, LiftConfig(n_boot=models.n_boot), report_config_hash(the_lake, day, cfg, models), fps)
    report = publish_window(the_lake, day, window)
    warnings, notes = ranker_check_warnings(window.ranker_check), ranker_check_notes(window.ranker_check)
    for line in warnings:
        context.log.warning(line)
    for line in notes:
        context.log.info(line)
    for d, why in window.excluded.items():
        context.log.warning(f"lift_rollup {day}: day {d} left out of the pool: {why}")
    if len(window.code_versions) > 1:
        context.log.info(f"lift_rollup {day}: the pooled days were evaluated by {len(window.code_versions)} code versions: {window.code_versions}")
    lift = window.lift
    shown = lift.filter((pl.col("metric") == "recall") & (pl.col("k") == 20)) if lift.height else lift
    return dg.MaterializeResult(
        metadata={
            **headline_metadata(window.headline),
            "treatment check": dg.MetadataValue.text(" ".join(warnings + notes) or "no ranker arms in the window"),
            "ranker cells below the best baseline": len(warnings),
            "window": f"{window.days[0] if window.days else day}..{day}",
            "days_pooled": len(window.days),
            "days left out (other configuration)": len(window.excluded),
            "code versions pooled": dg.MetadataValue.json(window.code_versions),
            "rows": lift.height,
            "report": dg.MetadataValue.path(str(report)),
            "pooled lift (recall@20)": dg.MetadataValue.md(markdown_lift_table(shown) if lift.height else "no evaluated days in the window"),
        }
    )
