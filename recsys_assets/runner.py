"""Run the Dagster jobs in-process for the CLI (runs land in $DAGSTER_HOME when it is set)."""

from __future__ import annotations

import logging
import os
import sys
import time
from datetime import date

import dagster as dg

from recsys_assets.lib.errors import RecsysError
from recsys_assets.lib.lake import LAKE_ENV_VAR, Lake


def instance() -> dg.DagsterInstance:
    """The persistent instance under $DAGSTER_HOME (runs show in the UI), else an ephemeral one."""
    if os.environ.get("DAGSTER_HOME"):
        os.makedirs(os.environ["DAGSTER_HOME"], exist_ok=True)
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.ephemeral()


def quiet_dagster() -> None:
    """Library loggers stay quiet on the console; the CLI prints its own progress."""
    for name in ("great_expectations", "sentence_transformers", "implicit", "lightgbm"):
        logging.getLogger(name).setLevel(logging.WARNING)


def use_lake(root: str | None) -> Lake:
    """Point every resource at this lake (resources read $RECSYS_LAKE) and return it."""
    lake = Lake.at(root)
    os.environ[LAKE_ENV_VAR] = str(lake.root)
    return lake


def _defs():
    from recsys_assets.definitions import defs

    return defs


def run_job(
    name: str,
    inst: dg.DagsterInstance,
    partition_key: str | None = None,
    tags: dict | None = None,
    run_config_resources: dict | None = None,
) -> dg.ExecuteInProcessResult:
    job = _defs().resolve_job_def(name)
    result = job.execute_in_process(
        instance=inst,
        partition_key=partition_key,
        tags=tags or {},
        raise_on_error=False,
        # The CLI prints its own progress; the full event log stays in the run's history.
        run_config={
            "loggers": {"console": {"config": {"log_level": os.environ.get("RECSYS_LOG_LEVEL", "WARNING")}}},
            "resources": run_config_resources or {},
        },
    )
    if not result.success:
        raise RecsysError(f"Dagster run {result.run_id} of {name} failed: {_failure_text(result)}")
    return result


def job_def(name: str) -> dg.JobDefinition:
    """The job ``name`` of the project's definitions (what a reconstructable job rebuilds in each step process)."""
    return _defs().resolve_job_def(name)


def run_job_in_step_processes(
    name: str, inst: dg.DagsterInstance, partition_key: str, max_concurrent: int | None = None, run_config_resources: dict | None = None
) -> dg.ExecutionResult:
    """Run a job as the daemon does: its executor (``defs/executor.py``: one process per step, independent steps
    side by side, ``max_concurrent`` at a time; default one per core). ``inst`` must be persistent (e.g.
    ``DagsterInstance.local_temp()``): the step processes report to it."""
    recon = dg.build_reconstructable_job("recsys_assets.runner", "job_def", reconstructable_args=(name,))
    config = {"max_concurrent": max_concurrent} if max_concurrent else {}
    result = dg.execute_job(
        recon,
        instance=inst,
        tags={"dagster/partition": partition_key},
        run_config={
            "execution": {"config": config},
            "loggers": {"console": {"config": {"log_level": os.environ.get("RECSYS_LOG_LEVEL", "WARNING")}}},
            "resources": run_config_resources or {},
        },
        raise_on_error=False,
    )
    if not result.success:
        raise RecsysError(f"Dagster run {result.run_id} of {name} failed: see the run's event log")
    return result


def run_range(name: str, inst: dg.DagsterInstance, start: date, end: date) -> dg.ExecuteInProcessResult:
    """One run over a partition range (assets with a single-run backfill policy read inputs once)."""
    tags = {"dagster/asset_partition_range_start": start.isoformat(), "dagster/asset_partition_range_end": end.isoformat()}
    return run_job(name, inst, tags=tags)


def check_failures(result: dg.ExecuteInProcessResult) -> list[str]:
    """One line per failed asset check: ``asset.check: what failed`` (the check's own summary, naming file and row)."""
    out = []
    for ev in result.get_asset_check_evaluations():
        if ev.passed:
            continue
        meta = {k: getattr(v, "value", v) for k, v in (ev.metadata or {}).items()}
        detail = meta.get("summary") or meta.get("failures") or "see the check in the UI"
        detail = " | ".join(line.strip("- ").strip() for line in str(detail).splitlines() if line.strip())
        out.append(f"{ev.asset_key.to_user_string()}.{ev.check_name} failed: {detail}")
    return out


def _failure_text(result: dg.ExecuteInProcessResult) -> str:
    checks = check_failures(result)
    if checks:
        return "; ".join(checks)
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            err = event.step_failure_data.error
            # Errors we raise on purpose carry the whole story in their message.
            cause = err.cause or err
            return f"step {event.step_key}: {cause.message.strip()}"
    return "see the run's event log"


def step_pids(inst: dg.DagsterInstance, run_id: str) -> dict[str, int]:
    """Per step of a run: the process that ran it (one per step under the multiprocess executor)."""
    return {rec.dagster_event.step_key: rec.dagster_event.pid for rec in inst.all_logs(run_id) if rec.dagster_event and rec.dagster_event.event_type_value == "STEP_START"}


def step_spans(inst: dg.DagsterInstance, run_id: str) -> dict[str, tuple[float, float | None, bool]]:
    """Per step of a run: (start timestamp, end timestamp or None while it runs, succeeded), from the event log."""
    starts, ends = {}, {}
    for rec in inst.all_logs(run_id):
        ev = rec.dagster_event
        if ev is None or ev.step_key is None:
            continue
        if ev.event_type_value == "STEP_START":
            starts[ev.step_key] = rec.timestamp
        elif ev.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
            ends[ev.step_key] = (rec.timestamp, ev.event_type_value == "STEP_SUCCESS")
    return {k: (a, *(ends.get(k) or (None, False))) for k, a in starts.items()}


def metadata_of(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    out: dict = {}
    for ev in result.get_asset_materialization_events():
        if ev.materialization.asset_key.to_user_string() == asset:
            out = {k: v.value for k, v in ev.materialization.metadata.items()}
    return out


class Progress:
    """Plain progress lines on stderr with elapsed time."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def __call__(self, msg: str) -> None:
        print(f"[{time.perf_counter() - self.t0:7.1f}s] {msg}", file=sys.stderr, flush=True)
