"""The nightly schedule: at 02:00 in RECSYS_SCHEDULE_TZ (default UTC) run yesterday's partition."""

import os
from datetime import timedelta

import dagster as dg

from recsys_assets.defs.jobs import nightly_job

SCHEDULE_TZ = os.environ.get("RECSYS_SCHEDULE_TZ", "UTC")

# The report assets must have been materialized within the last 24 h by 06:00 (schedule
# timezone): a missed or failed night shows as stale on the asset in the UI.
REPORT_FRESHNESS = dg.FreshnessPolicy.cron(deadline_cron="0 6 * * *", lower_bound_delta=timedelta(hours=24), timezone=SCHEDULE_TZ)


def yesterday_key(scheduled_local) -> str:
    """Yesterday relative to the tick's local date: the last complete day at 02:00 local."""
    return (scheduled_local.date() - timedelta(days=1)).isoformat()


@dg.schedule(
    job=nightly_job,
    cron_schedule="0 2 * * *",
    execution_timezone=SCHEDULE_TZ,
    description="Materializes yesterday's partition through the whole graph (ingest to lift reports).",
)
def nightly_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    key = yesterday_key(context.scheduled_execution_time)
    return dg.RunRequest(run_key=f"nightly-{key}", partition_key=key)
