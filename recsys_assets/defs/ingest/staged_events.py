"""Parse new landing event files once (cached by content hash) into the staging area."""

import dagster as dg

from recsys_assets.defs.resources import IngestResource, LakeResource
from recsys_assets.lib.ingest.events import publish_unknown_day_quarantine, stage_landing_events
from recsys_assets.lib.markdown import frame_to_markdown


@dg.asset(group_name="ingest", kinds={"polars", "parquet"})
def staged_events(context: dg.AssetExecutionContext, lake: LakeResource, ingest: IngestResource) -> dg.MaterializeResult:
    """Every landing events file, parsed and validated row by row; bad rows keep file, line and reason."""
    the_lake = lake.lake()
    summary = stage_landing_events(the_lake, ingest.config(), log=context.log.info)
    unknown = publish_unknown_day_quarantine(the_lake)
    m = summary.manifest
    return dg.MaterializeResult(
        metadata={
            "files": len(m),
            "parsed_now": len(summary.parsed_now),
            "reused_from_cache": len(summary.reused),
            "rows_read": int(m["rows_read"].sum() or 0),
            "rows_valid": int(m["rows_good"].sum() or 0),
            "rows_quarantined": int(m["rows_bad"].sum() or 0),
            "quarantined_without_day": unknown,
            "files_refused": len(summary.refused),
            "landing_changes": dg.MetadataValue.md("\n".join(f"- {c}" for c in summary.landing_changes()) or "none"),
            "first_day": str(m["first_day"].min()),
            "last_day": str(m["last_day"].max()),
            "per_file": dg.MetadataValue.md(frame_to_markdown(m.drop("days"))),
        }
    )
