"""Lift pooled over a window of days, warm-up curves, and the HTML report."""

import dagster as dg
import polars as pl

from recsys_assets.defs.features.common import partition_day
from recsys_assets.defs.partitions import daily_partitions
from recsys_assets.defs.reports.cold_start_lift import cold_start_lift
from recsys_assets.defs.reports.common import encoder_metas, fingerprints, headline_metadata
from recsys_assets.defs.reports.encoder_study import encoder_study
from recsys_assets.defs.resources import LakeResource, ModelsResource
from recsys_assets.defs.schedules import REPORT_FRESHNESS
from recsys_assets.lib.evaluation.html_report import (
    markdown_lift_table,
    write_html_report,
)
from recsys_assets.lib.evaluation.answer import window_headline
from recsys_assets.lib.evaluation.lift import LiftConfig
from recsys_assets.lib.evaluation.reporting import open_warehouse, rollup_report


@dg.asset(group_name="reports", kinds={"duckdb", "html"}, partitions_def=daily_partitions, deps=[cold_start_lift, encoder_study], pool="duckdb_writer", freshness_policy=REPORT_FRESHNESS)
def lift_rollup(context: dg.AssetExecutionContext, lake: LakeResource, models: ModelsResource) -> dg.MaterializeResult:
    """Answers the question: over the window ending D, does a pretrained LM lift new-item and new-user recall@20
    over TF-IDF and over no text, by how much, for how many users, at what encoding cost?

    The verdict per primary endpoint (reports.headline) is this asset's metadata; it also pools every cell over
    (D - window, D] (reports.cold_start_lift_rollup), the warm-up curves, and writes the HTML report (reports/index.html in the lake).
    """
    the_lake, cfg, day = lake.lake(), models.feature_config(), partition_day(context)
    fps = fingerprints(encoder_metas(the_lake, day, cfg))
    lift, warm, days, head = rollup_report(the_lake, day, models.rollup_days, cfg.lm_encoders, LiftConfig(n_boot=models.n_boot), cfg.config_hash(), fps)
    wh = open_warehouse(the_lake)
    if lift.height:
        wh.replace_partition("cold_start_lift_rollup", lift, {"window_end": day})
        wh.replace_partition("warmup_curve", warm, {"window_end": day})
        wh.replace_partition("headline", head, {"window_end": day, "window_kind": "window"})
    start = days[0] if days else day
    daily = wh.query("SELECT * FROM reports.cold_start_lift WHERE day BETWEEN ? AND ?", [start, day])
    cost = wh.query("SELECT * FROM reports.encoder_cost WHERE day BETWEEN ? AND ?", [start, day])
    report = the_lake.reports.joinpath("index.html")
    headline, headline_days = window_headline(the_lake.warehouse, start, day)
    study = wh.query("SELECT * FROM reports.encoder_study WHERE window_end = ?", [day])
    write_html_report(report, lift, daily, warm, cost, title=f"Cold-start lift, {start} to {day}", headline=headline, headline_days=headline_days, encoder_study=study)
    shown = lift.filter((pl.col("metric") == "recall") & (pl.col("k") == 20)) if lift.height else lift
    return dg.MaterializeResult(
        metadata={
            **headline_metadata(headline),
            "window": f"{start}..{day}",
            "days_pooled": len(days),
            "rows": lift.height,
            "report": dg.MetadataValue.path(str(report)),
            "pooled lift (recall@20)": dg.MetadataValue.md(markdown_lift_table(shown) if lift.height else "no evaluated days in the window"),
        }
    )
