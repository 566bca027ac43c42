"""The daily partitioning shared by every per-day asset (day D = snapshot "everything before D").

Days are UTC days (the lake's contract); the nightly schedule's own timezone is
configured separately (RECSYS_SCHEDULE_TZ).
"""

import os

import dagster as dg

PARTITIONS_START = os.environ.get("RECSYS_PARTITIONS_START", "1997-09-01")

daily_partitions = dg.DailyPartitionsDefinition(start_date=PARTITIONS_START, timezone="UTC", end_offset=0)
