"""A sensor on <lake>/landing/events: new or changed files request the days they touch."""

from __future__ import annotations

import hashlib
import json
from datetime import date, timedelta

import dagster as dg

from recsys_assets.defs.jobs import nightly_job
from recsys_assets.defs.partitions import daily_partitions
from recsys_assets.defs.resources import IngestResource, LakeResource
from recsys_assets.lib.ingest.landing import file_fingerprint, iter_event_file, landing_event_files


def days_to_request(touched: set[date], last_partition: date | None) -> list[date]:
    """A touched day and the next one (whose snapshot includes it): late data reruns both."""
    out = set()
    for d in touched:
        for day in (d, d + timedelta(days=1)):
            if last_partition is None or day <= last_partition:
                out.add(day)
    return sorted(out)


@dg.sensor(job=nightly_job, minimum_interval_seconds=60, description="Requests the partitions that new landing files touch.")
def landing_sensor(context: dg.SensorEvaluationContext, lake: LakeResource, ingest: IngestResource):
    the_lake = lake.lake()
    known: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    current, touched = {}, set()
    for path in landing_event_files(the_lake.landing_dir("events")):
        fp = file_fingerprint(path)
        current[path.name] = fp
        if known.get(path.name) == fp:
            continue
        for parsed in iter_event_file(path, ingest.config()):  # chunk by chunk: a big file is never held whole
            touched |= set(parsed.good["ts"].dt.date().unique().to_list())
            touched |= set(parsed.bad["day"].drop_nulls().unique().to_list())
    last_key = daily_partitions.get_last_partition_key()
    last = date.fromisoformat(last_key) if last_key else None
    # A content digest (not hash(): salted per process) so that a retried tick in a restarted
    # code server gives the same run keys and Dagster does not launch the runs twice.
    state = hashlib.sha256(json.dumps(sorted(current.items())).encode()).hexdigest()[:12]
    requests = [
        dg.RunRequest(run_key=f"landing-{day}-{state}", partition_key=day.isoformat())
        for day in days_to_request(touched, last)
    ]
    context.update_cursor(json.dumps(current))
    if not requests:
        return dg.SkipReason("no new or changed landing files")
    return requests
