"""Item and user catalogs (not partitioned: each run rebuilds the current snapshot)."""

import dagster as dg

from recsys_assets.defs.ingest.staged_events import staged_events
from recsys_assets.defs.resources import IngestResource, LakeResource
from recsys_assets.lib.ingest.catalog import build_items_counted, build_users, publish_catalog
from recsys_assets.lib.ingest.events import staged_first_days
from recsys_assets.lib.ingest.validation import validate_items


@dg.asset(
    group_name="ingest",
    kinds={"polars", "parquet"},
    deps=[staged_events],
    check_specs=[dg.AssetCheckSpec("items_expectations", asset="items", blocking=True)],
)
def items(lake: LakeResource, ingest: IngestResource):
    """Item catalog: latest landing snapshot per item + items seen only in events; first_seen_day, text_hash."""
    the_lake = lake.lake()
    built = build_items_counted(the_lake, staged_first_days(the_lake, "item_id"), ingest.config())
    frame, bad = built.frame, built.bad
    outcome = validate_items(frame)
    if outcome.success:
        publish_catalog(the_lake, "items", frame, bad)
    yield dg.MaterializeResult(
        metadata={
            "items": frame.height,
            "with_text": int(frame["title"].is_not_null().sum()),
            "with_image_vector": int(frame["image_vector"].is_not_null().sum()),
            "landing_rows_read": built.rows_read,
            "quarantined_rows": bad.height,
            "superseded_rows": built.superseded,
            "items_from_landing": built.from_landing,
            "reconciles": built.reconciles,
            "quarantine_examples": dg.MetadataValue.md(_examples(bad)),
            "published": outcome.success,
        }
    )
    yield dg.AssetCheckResult(check_name="items_expectations", passed=outcome.success, metadata={"summary": outcome.summary()})


def _examples(bad, n: int = 10) -> str:
    """The first quarantined rows as markdown lines: file:line field: reason."""
    return "\n".join(f"- {r['source_file']}:{r['line']} {r['field']}: {r['reason']}" for r in bad.head(n).iter_rows(named=True)) or "none"


@dg.asset(group_name="ingest", kinds={"polars", "parquet"}, deps=[staged_events])
def users(lake: LakeResource, ingest: IngestResource) -> dg.MaterializeResult:
    """User catalog: optional profile text, first_seen_day from events."""
    the_lake = lake.lake()
    frame, bad = build_users(the_lake, staged_first_days(the_lake, "user_id"), ingest.config())
    publish_catalog(the_lake, "users", frame, bad)
    return dg.MaterializeResult(
        metadata={
            "users": frame.height,
            "with_profile": int(frame["profile"].is_not_null().sum()),
            "quarantined_rows": bad.height,
            "quarantine_examples": dg.MetadataValue.md(_examples(bad)),
        }
    )
