"""The warehouse's tables and analyst views, from the files in sql/."""

import dagster as dg

from recsys_assets.defs.resources import LakeResource
from recsys_assets.lib.evaluation.reporting import open_warehouse
from recsys_assets.lib.evaluation.sql_files import sql_files, view_names


@dg.asset(group_name="reports", kinds={"duckdb", "sql"}, deps=["lift_rollup"], pool="duckdb_writer")
def analyst_views(lake: LakeResource) -> dg.MaterializeResult:
    """Answers: where do I query the results? Applies sql/ddl then sql/views to the lake's warehouse.duckdb (idempotent)."""
    open_warehouse(lake.lake())
    return dg.MaterializeResult(metadata={"sql_files": len(sql_files()), "views": ", ".join(view_names()), "warehouse": str(lake.lake().warehouse)})
