"""The nightly schedule and the landing sensor, evaluated the way the daemon evaluates them."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from recsys_assets.defs.partitions import daily_partitions
from recsys_assets.defs.resources import IngestResource, LakeResource

UTC = timezone.utc


# --- nightly schedule --------------------------------------------------------------------------


def _tick(schedule, when: datetime) -> dg.RunRequest:
    out = schedule(dg.build_schedule_context(scheduled_execution_time=when))
    assert isinstance(out, dg.RunRequest), out
    return out


def test_nightly_schedule_requests_yesterday_utc():
    from recsys_assets.defs import schedules

    sched = schedules.nightly_schedule
    assert sched.cron_schedule == "0 2 * * *"
    assert sched.job_name == "nightly_job"
    req = _tick(sched, datetime(2024, 3, 5, 2, 0, tzinfo=UTC))
    assert req.partition_key == "2024-03-04"
    assert req.run_key == "nightly-2024-03-04"
    # The first of a month / a year rolls back correctly.
    assert _tick(sched, datetime(2024, 3, 1, 2, 0, tzinfo=UTC)).partition_key == "2024-02-29"
    assert _tick(sched, datetime(2025, 1, 1, 2, 0, tzinfo=UTC)).partition_key == "2024-12-31"
    # The key is a real partition of the job (not today's, which is still open).
    now = datetime.now(UTC).replace(hour=2, minute=0, second=0, microsecond=0)
    key = _tick(sched, now).partition_key
    assert key == daily_partitions.get_last_partition_key()


@pytest.fixture
def auckland_schedules(monkeypatch):
    """schedules.py re-imported with RECSYS_SCHEDULE_TZ set (restored afterwards)."""
    from recsys_assets.defs import schedules

    monkeypatch.setenv("RECSYS_SCHEDULE_TZ", "Pacific/Auckland")
    try:
        yield importlib.reload(schedules)
    finally:
        monkeypatch.delenv("RECSYS_SCHEDULE_TZ")
        importlib.reload(schedules)


def test_nightly_schedule_in_a_non_utc_timezone(auckland_schedules):
    sched = auckland_schedules.nightly_schedule
    assert sched.execution_timezone == "Pacific/Auckland"
    # 02:00 in Auckland (NZDT, UTC+13) is still the previous day in UTC: 2024-03-04 13:00Z.
    tick = datetime(2024, 3, 5, 2, 0, tzinfo=ZoneInfo("Pacific/Auckland"))
    assert tick.astimezone(UTC).date() == date(2024, 3, 4)
    req = _tick(sched, tick)
    # Yesterday relative to the LOCAL date of the tick (the day that has just ended there).
    assert req.partition_key == "2024-03-04"
    assert req.run_key == "nightly-2024-03-04"
    # A DST change night (NZ leaves daylight time on 2024-04-07) still yields one key per night.
    keys = [_tick(sched, datetime(2024, 4, d, 2, 0, tzinfo=ZoneInfo("Pacific/Auckland"))).partition_key for d in (6, 7, 8)]
    assert keys == ["2024-04-05", "2024-04-06", "2024-04-07"]


# --- landing sensor ----------------------------------------------------------------------------


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _rows(day: date, n: int = 3, user: str = "u1") -> list[dict]:
    return [
        {"user_id": user, "item_id": f"i{k}", "event_type": "click", "ts": f"{day.isoformat()}T{10 + k:02d}:00:00+00:00"}
        for k in range(n)
    ]


def _evaluate(lake_root: Path, cursor: str | None):
    from recsys_assets.defs.sensors import landing_sensor

    ctx = dg.build_sensor_context(
        cursor=cursor,
        resources={"lake": LakeResource(root=str(lake_root)), "ingest": IngestResource()},
    )
    out = landing_sensor(ctx)
    return out, ctx.cursor


def _keys(out) -> list[str]:
    assert isinstance(out, list), out
    return sorted(r.partition_key for r in out)


def test_landing_sensor_new_unchanged_late_and_changed_files(tmp_path):
    landing = tmp_path / "lake" / "landing" / "events"
    d1, d2 = date(2024, 3, 1), date(2024, 3, 2)

    # Nothing landed yet: a skip, and an (empty) cursor.
    out, cursor = _evaluate(tmp_path / "lake", None)
    assert isinstance(out, dg.SkipReason)

    # A new file touching two days requests those days and the next one (its snapshot includes them).
    _write_jsonl(landing / "batch1.jsonl", _rows(d1) + _rows(d2))
    out, cursor = _evaluate(tmp_path / "lake", cursor)
    assert _keys(out) == ["2024-03-01", "2024-03-02", "2024-03-03"]
    assert all(r.run_key and r.run_key.startswith(f"landing-{r.partition_key}-") for r in out)
    assert len({r.run_key for r in out}) == 3
    first_keys = {r.run_key for r in out}
    assert set(json.loads(cursor)) == {"batch1.jsonl"}

    # Unchanged rerun: nothing requested (the cursor remembers the file's fingerprint).
    out, cursor2 = _evaluate(tmp_path / "lake", cursor)
    assert isinstance(out, dg.SkipReason) and "no new" in (out.skip_message or "")
    assert cursor2 == cursor

    # A late file for an older day re-requests that day and the next one, not the others.
    late = date(2024, 2, 27)
    _write_jsonl(landing / "late-2024-02-27.jsonl", _rows(late, user="u9"))
    out, cursor = _evaluate(tmp_path / "lake", cursor2)
    assert _keys(out) == ["2024-02-27", "2024-02-28"]
    # A day requested again later gets a new run key (Dagster dedups by run key).
    _write_jsonl(landing / "late-2024-03-01.jsonl", _rows(d1, user="u7"))
    out, cursor = _evaluate(tmp_path / "lake", cursor)
    assert _keys(out) == ["2024-03-01", "2024-03-02"]
    assert not ({r.run_key for r in out} & first_keys)

    # A file rewritten in place with rows of another day is read again.
    _write_jsonl(landing / "batch1.jsonl", _rows(d1) + _rows(d2) + _rows(date(2024, 3, 5)))
    out, cursor = _evaluate(tmp_path / "lake", cursor)
    assert _keys(out) == ["2024-03-01", "2024-03-02", "2024-03-03", "2024-03-05", "2024-03-06"]
    out, _ = _evaluate(tmp_path / "lake", cursor)
    assert isinstance(out, dg.SkipReason)


def test_landing_sensor_quarantined_rows_and_open_day(tmp_path):
    landing = tmp_path / "lake" / "landing" / "events"
    # A bad row with a readable day still requests that day (its quarantine partition changes);
    # garbage without a day requests nothing; today's partition does not exist yet.
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    bad = {"user_id": "", "item_id": "i1", "event_type": "click", "ts": "2024-05-10T08:00:00+00:00"}
    _write_jsonl(landing / "mixed.jsonl", [bad, {"user_id": "u1", "item_id": "i1", "event_type": "click", "ts": "not a time"}])
    _write_jsonl(landing / "recent.jsonl", _rows(yesterday, n=1))
    out, _ = _evaluate(tmp_path / "lake", None)
    assert _keys(out) == ["2024-05-10", "2024-05-11", yesterday.isoformat()]
    assert daily_partitions.get_last_partition_key() == yesterday.isoformat()


_RUN_KEYS = r"""
import json, sys
import dagster as dg
from recsys_assets.defs.resources import IngestResource, LakeResource
from recsys_assets.defs.sensors import landing_sensor
ctx = dg.build_sensor_context(resources={"lake": LakeResource(root=sys.argv[1]), "ingest": IngestResource()})
print(json.dumps(sorted(r.run_key for r in landing_sensor(ctx))))
"""


def test_landing_sensor_run_keys_are_stable_across_processes(tmp_path):
    """A tick retried in a restarted code server must produce the same run keys (no double launch)."""
    _write_jsonl(tmp_path / "lake" / "landing" / "events" / "a.jsonl", _rows(date(2024, 3, 1)))
    keys = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run([sys.executable, "-c", _RUN_KEYS, str(tmp_path / "lake")], env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        keys.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert keys[0] == keys[1] and len(keys[0]) == 2
