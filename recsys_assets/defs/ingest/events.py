"""Daily normalized events, validated by a blocking Great Expectations check before publishing."""

from datetime import date

import dagster as dg

from recsys_assets.defs.ingest.catalogs import items
from recsys_assets.defs.ingest.staged_events import staged_events
from recsys_assets.defs.partitions import daily_partitions
from recsys_assets.defs.resources import IngestResource, LakeResource
from recsys_assets.lib.ingest.catalog import read_catalog
from recsys_assets.lib.ingest.events import iter_day_partitions, publish_day
from recsys_assets.lib.progress import progress
from recsys_assets.lib.ingest.validation import validate_event_days


@dg.asset(
    group_name="ingest",
    kinds={"polars", "parquet"},
    partitions_def=daily_partitions,
    # One run can publish a whole range (ingest of a dataset's history) reading staging once.
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[staged_events, items],
    check_specs=[dg.AssetCheckSpec("events_expectations", asset="events", blocking=True)],
)
def events(context: dg.AssetExecutionContext, lake: LakeResource, ingest: IngestResource):
    """Events of day D (UTC): deduplicated by event_id, sorted by ts; bad rows in quarantine/events/day=D."""
    the_lake = lake.lake()
    cfg = ingest.config()
    catalog_ids = read_catalog(the_lake, "items")["item_id"]
    days = [date.fromisoformat(k) for k in context.partition_keys]
    totals = {"rows_read": 0, "rows_written": 0, "rows_quarantined": 0, "duplicates_dropped": 0}
    failed = []
    # Batches of days (bounded rows): memory grows with the largest day, not with the range.
    batches = iter_day_partitions(the_lake, days)
    for parts in progress(batches, desc="publishing event-day batches", unit="batch", log=context.log.info):
        outcomes = validate_event_days([(p.day, p.events) for p in parts], catalog_ids, cfg)
        for part in parts:
            outcome = outcomes[part.day]
            if not outcome.success:
                # Not published: downstream of this day is stopped by the blocking check.
                failed.append(f"{part.day}: {outcome.summary(part.sources)}")
                continue
            publish_day(the_lake, part)
            totals["rows_read"] += part.rows_read
            totals["rows_written"] += part.events.height
            totals["rows_quarantined"] += part.quarantine.height
            totals["duplicates_dropped"] += part.duplicates_dropped
    reconciled = totals["rows_read"] == totals["rows_written"] + totals["rows_quarantined"] + totals["duplicates_dropped"]
    yield dg.MaterializeResult(metadata={**totals, "days": len(days), "days_failed_validation": len(failed), "reconciles": reconciled})
    yield dg.AssetCheckResult(
        check_name="events_expectations",
        passed=not failed,
        metadata={"failures": dg.MetadataValue.md("\n".join(f"- {f}" for f in failed[:50]) or "none")},
    )
