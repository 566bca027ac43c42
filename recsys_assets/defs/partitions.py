"""The daily partitioning shared by every per-day asset (day D = snapshot "everything before D").

Days are UTC days (the lake's contract); the nightly schedule's own timezone is
configured separately (RECSYS_SCHEDULE_TZ).
"""

import dagster as dg

from recsys_assets.lib.ingest.config import partitions_start

# $RECSYS_PARTITIONS_START (default 1997-09-01); ingest quarantines events before it.
PARTITIONS_START = partitions_start().isoformat()

daily_partitions = dg.DailyPartitionsDefinition(start_date=PARTITIONS_START, timezone="UTC", end_offset=0)
