"""Lift pooled over a window of days, warm-up curves, and the HTML report."""

import dagster as dg
import polars as pl

from recsys_assets.defs.features.common import partition_day
from recsys_assets.defs.partitions import daily_partitions
from recsys_assets.defs.reports.cold_start_lift import cold_start_lift, lm_encoders
from recsys_assets.defs.reports.common import encoder_metas, fingerprints
from recsys_assets.defs.resources import LakeResource, ModelsResource
from recsys_assets.defs.schedules import REPORT_FRESHNESS
from recsys_assets.lib.evaluation.html_report import (
    markdown_lift_table,
    write_html_report,
)
from recsys_assets.lib.evaluation.lift import LiftConfig
from recsys_assets.lib.evaluation.reporting import open_warehouse, rollup


@dg.asset(group_name="reports", kinds={"duckdb", "html"}, partitions_def=daily_partitions, deps=[cold_start_lift], pool="duckdb_writer", freshness_policy=REPORT_FRESHNESS)
def lift_rollup(context: dg.AssetExecutionContext, lake: LakeResource, models: ModelsResource) -> dg.MaterializeResult:
    """Bootstrap over the pooled user-days of (D - window, D]; warm-up curve per history bucket; <lake>/reports/index.html."""
    the_lake, cfg, day = lake.lake(), models.feature_config(), partition_day(context)
    fps = fingerprints(encoder_metas(the_lake, day, cfg))
    lift, warm, days = rollup(the_lake, day, models.rollup_days, lm_encoders(cfg), LiftConfig(n_boot=models.n_boot), cfg.config_hash(), fps)
    wh = open_warehouse(the_lake)
    if lift.height:
        wh.replace_partition("cold_start_lift_rollup", lift, {"window_end": day})
        wh.replace_partition("warmup_curve", warm, {"window_end": day})
    start = days[0] if days else day
    daily = wh.query("SELECT * FROM reports.cold_start_lift WHERE day BETWEEN ? AND ?", [start, day])
    cost = wh.query("SELECT * FROM reports.encoder_cost WHERE day BETWEEN ? AND ?", [start, day])
    report = the_lake.reports.joinpath("index.html")
    write_html_report(report, lift, daily, warm, cost, title=f"Cold-start lift, {start} to {day}")
    shown = lift.filter((pl.col("metric") == "recall") & (pl.col("k") == 20)) if lift.height else lift
    return dg.MaterializeResult(
        metadata={
            "window": f"{start}..{day}",
            "days_pooled": len(days),
            "rows": lift.height,
            "report": dg.MetadataValue.path(str(report)),
            "pooled lift (recall@20)": dg.MetadataValue.md(markdown_lift_table(shown) if lift.height else "no evaluated days in the window"),
        }
    )
