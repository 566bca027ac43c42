"""benchmarks/bench_scale.py's night record when its watchdog stops a night (no timing is asserted: the
figures are fed in as samples)."""

from __future__ import annotations

import importlib.util
import resource
import time
from pathlib import Path

import dagster as dg
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_scale.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_scale", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_stopped_step_process_night_reports_the_samplers_sums(bench):
    """Under --step-processes a stopped night's CPU and peak are those of all its processes (the sampler's sums),
    not the run process's own (scale6.md: the 10M night row showed 53.6 CPU s / 217 MiB of the parent)."""
    rss = bench.RssSampler(children=True)  # not started: the samples are given
    tw, c0 = 1000.0, 2.0
    rss.samples = [(tw - 5.0, 9 * 2**30, 1.0), (tw + 1.0, 1 * 2**30, 3.0), (tw + 50.0, 6 * 2**30, 400.0), (tw + 90.0, 4 * 2**30, 1502.0)]
    rec = bench.stopped_record(dg.DagsterInstance.ephemeral(), rss, tw, tw + 90.0, c0, "watchdog: test", 2)
    assert rec["ok"] is False and rec["error"] == "watchdog: test" and rec["wall_s"] == 90.0
    assert rec["cpu_s"] == 1500.0  # the last summed sample less the run process's CPU at the start
    assert rec["peak_rss_mib"] == rec["peak_rss_sampled_mib"] == 6 * 1024  # the peak of the sums inside the night
    assert rec["step_processes"] == 2 and 0 < rec["run_process_peak_rss_mib"] <= resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert rec["steps"] == {}


def test_stopped_in_process_night_reports_its_own_process(bench):
    rss = bench.RssSampler(children=False)
    tw, c0 = 1000.0, time.process_time()
    rss.samples = [(tw + 1.0, 2**30, 0.0), (tw + 2.0, 2 * 2**30, 0.0)]
    inst = dg.DagsterInstance.ephemeral()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rec = bench.stopped_record(inst, rss, tw, tw + 2.0, c0, "watchdog: test", None)
    assert 0.0 <= rec["cpu_s"] <= time.process_time() - c0  # this process's CPU since c0, not since it started
    assert before <= rec["peak_rss_mib"] <= resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # its own maxrss
    assert rec["peak_rss_sampled_mib"] == 2 * 1024 and "step_processes" not in rec


def test_a_night_child_stops_itself_before_the_parents_timeout(bench):
    """The parent's --timeout reaches a night child as its watchdog deadline, so a night that runs out of time
    still writes what finished (session 9: a 10M night killed at 3,600 s left no per-step figures)."""
    out = Path("/tmp/x.json")
    cmd = bench.child_command(["--child-night", "LAKE", "2024-02-29", "day_job"], out, 3600.0, 1000.0)
    assert cmd[cmd.index("--stop-at") + 1] == f"{1000.0 + 3600.0 - bench.STOP_MARGIN_S:.0f}"
    assert cmd[-2:] == ["--child-out", str(out)]
    assert "--stop-at" not in bench.child_command(["--child-ingest", "LAKE", "1000"], out, 3600.0, 1000.0)
