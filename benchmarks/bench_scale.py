"""Scale: ingest and one nightly partition of shop-like synthetic worlds of growing size.

For each world size (``--events 1M,3M,10M``; users and items follow the shop ratios of
``recsys_assets.lib.ingest.synthetic.shop_shape``: events/33 users, events/200 items):

1. ``recsys-assets ingest --source synthetic`` in a fresh child process on a fresh lake
   (``--lake-root/<size>``): wall time and peak RSS (``ru_maxrss`` of the child).
2. ``item_embeddings`` of the night, once, untimed (a warm cache, as on every night after the
   first; the cold catalogue encode is printed separately as ``item_embeddings (cold)``).
3. ``day_job`` for ``--day`` (default: the world's last day) in another fresh child, through
   Dagster in-process exactly as the nightly job runs it: per asset the wall time
   (STEP_START -> STEP_SUCCESS in the run's event log) and the peak RSS of the process while
   the step ran (sampled every 0.1 s by a thread), the whole run's wall and peak RSS.

Then the growth exponent of every stage: the slope of log(seconds) against log(events) over
the sizes (least squares; 1 = linear in the events, 2 = quadratic). Prints a table and writes
``benchmarks/results/scale.json`` (or ``--out``).

    .venv/bin/python benchmarks/bench_scale.py --events 1M,3M --lake-root /tmp/scale/bench
    .venv/bin/python benchmarks/bench_scale.py --events 10M --lake-root /tmp/scale/bench --merge benchmarks/results/scale.json
    .venv/bin/python benchmarks/bench_scale.py --events 3M --lake-root /tmp/scale/bench --no-night    # world + cold encode now,
    .venv/bin/python benchmarks/bench_scale.py --events 1M,3M --lake-root /tmp/scale/bench --reuse  # the nights later (code changes)
    .venv/bin/python benchmarks/bench_scale.py --events 10M --lake-root /tmp/scale/bench --reuse --max-rss-gib 10 --deadline 11:05
    .venv/bin/python benchmarks/bench_scale.py --events 1M,3M --lake-root /tmp/scale/bench --reuse --assets candidates,cold_start_eval
    .venv/bin/python benchmarks/bench_scale.py --events 10M --lake-root /tmp/scale/bench --reuse --step-processes 2 --max-rss-gib 14

``--step-processes N`` runs ``day_job`` through its executor as the daemon does (one process per step, N at a time,
``defs/executor.py``): per step the CPU and peak RSS of its own process, for the night the CPU of all processes and
the peak of their summed RSS, also in the record of a night the watchdog stopped (the watchdog's ``--max-rss-gib``
is then a limit on that sum).

With ``--max-rss-gib`` / ``--deadline`` a watchdog thread in the night's child stops it when its RSS passes
the limit or at the time, after writing per asset what finished (the running asset up to then, marked
``unfinished``), so a night too big for the machine still yields figures. ``--assets`` reruns single
assets of a night that ran on the lake (each alone: its wall, CPU and the child's peak RSS), e.g. one
asset before and after a change to it.

Timings on a shared machine are noisy (the 1-minute load average is recorded with each run).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "scale.json"


def parse_count(text: str) -> int:
    """``1M`` / ``300k`` / ``2500000`` -> int."""
    t = text.strip().lower().replace("_", "")
    mult = {"k": 1_000, "m": 1_000_000}.get(t[-1:], 1)
    return int(float(t[:-1] if mult > 1 else t) * mult)


def label(n: int) -> str:
    return f"{n / 1e6:g}M" if n >= 1_000_000 else f"{n / 1e3:g}k"


class RssSampler:
    """Samples this process's RSS and CPU time every ``period`` s in a thread: (wall clock time, bytes, cpu s).

    With ``children`` (a run of the multiprocess executor: one process per step) the samples are the sums over
    this process and every descendant, and ``by_pid`` keeps each process's own samples (a step's figures are its
    process's)."""

    def __init__(self, period: float = 0.1, children: bool = False) -> None:
        import psutil

        self.proc, self.period, self.samples, self.children = psutil.Process(), period, [], children
        self.by_pid: dict[int, list[tuple[float, int, float]]] = {}
        self._gone_cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            now = time.time()
            procs = [self.proc] + (self.proc.children(recursive=True) if self.children else [])
            rss_sum, cpu_sum = 0, 0.0
            for p in procs:
                try:
                    cpu, rss = p.cpu_times(), p.memory_info().rss
                except psutil.Error:
                    continue
                c = cpu.user + cpu.system
                rss_sum, cpu_sum = rss_sum + rss, cpu_sum + c
                if self.children:
                    self.by_pid.setdefault(p.pid, []).append((now, rss, c))
            if self.children:  # processes that ended keep their last CPU figure in the total
                live = {p.pid for p in procs}
                for pid, rows in self.by_pid.items():
                    if pid not in live:
                        self._gone_cpu[pid] = rows[-1][2]
                cpu_sum += sum(c for pid, c in self._gone_cpu.items() if pid not in live)
            self.samples.append((now, rss_sum, cpu_sum))
            self._stop.wait(self.period)

    def of_pid(self, pid: int, t0: float, t1: float) -> dict:
        """{cpu_s, peak_rss_mib} of one process between two wall-clock times."""
        rows = [r for r in self.by_pid.get(pid, []) if t0 <= r[0] <= t1]
        if not rows:
            return {"cpu_s": 0.0, "peak_rss_mib": 0.0}
        return {"cpu_s": rows[-1][2] - (rows[0][2] if rows[0][0] > t0 + 1.0 else 0.0), "peak_rss_mib": max(r[1] for r in rows) / 2**20}

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def peak_between(self, t0: float, t1: float) -> int:
        inside = [r for t, r, _ in self.samples if t0 <= t <= t1]
        return max(inside) if inside else 0

    def cpu_between(self, t0: float, t1: float) -> float:
        """CPU seconds (all threads) spent between two wall-clock times (nearest samples)."""
        inside = [c for t, _, c in self.samples if t0 <= t <= t1]
        return inside[-1] - inside[0] if len(inside) >= 2 else 0.0


# --- children ------------------------------------------------------------------------------------


def child_ingest(lake: str, n_events: int, out: str) -> None:
    from recsys_assets.cli import main

    t0 = time.perf_counter()
    rc = main(["ingest", "--source", "synthetic", "--synthetic-events", str(n_events), "--lake", lake])
    wall = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    Path(out).write_text(json.dumps({"rc": rc, "wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "peak_rss_mib": ru.ru_maxrss / 1024}))


def _steps_so_far(inst, rss: RssSampler, now: float) -> dict:
    """Per finished step {wall_s, cpu_s, peak_rss_mib}; a step still running is measured up to ``now`` and marked unfinished."""
    from recsys_assets import runner

    steps = {}
    for run in inst.get_runs():
        pids = runner.step_pids(inst, run.run_id) if rss.children else {}
        for key, (a, end, _) in runner.step_spans(inst, run.run_id).items():
            b = now if end is None else end
            if pids.get(key) not in (None, os.getpid()):  # its own process: that process's CPU and peak
                steps[key] = {"wall_s": b - a, **rss.of_pid(pids[key], a - 1.0, b + 1.0)}
            else:
                steps[key] = {"wall_s": b - a, "cpu_s": rss.cpu_between(a, b), "peak_rss_mib": rss.peak_between(a, b) / 2**20}
            if end is None:
                steps[key]["unfinished"] = True
    return steps


def night_totals(rss: RssSampler, tw: float, t1: float, cpu_s: float, step_processes: int | None) -> dict:
    """The night's CPU s and peak RSS: with step processes the peak of all its processes' summed RSS (sampled)
    and the run process's own peak apart, else the run process's own ``ru_maxrss``; ``cpu_s`` as measured."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    sampled = rss.peak_between(tw, t1) / 2**20
    return {
        "cpu_s": cpu_s,
        "peak_rss_mib": sampled if step_processes else ru.ru_maxrss / 1024,
        "peak_rss_sampled_mib": sampled,
        **({"step_processes": step_processes, "run_process_peak_rss_mib": ru.ru_maxrss / 1024} if step_processes else {}),
    }


def stopped_record(inst, rss: RssSampler, tw: float, now: float, c0: float, why: str, step_processes: int | None) -> dict:
    """What a night stopped by the watchdog reports: its wall, CPU and peak so far and per asset what finished.
    With step processes the CPU is the sampler's sum over the run process and every step process (ended ones
    included; the running ones have not been waited for, so ``RUSAGE_CHILDREN`` lacks them) since ``c0``,
    the run process's CPU time when the night started."""
    cpu = (rss.samples[-1][2] if rss.samples else time.process_time()) - c0 if step_processes else time.process_time() - c0
    return {"ok": False, "error": why, "wall_s": now - tw, **night_totals(rss, tw, now, cpu, step_processes), "steps": _steps_so_far(inst, rss, now)}


def _watchdog(
    inst, rss: RssSampler, tw: float, c0: float, out: str, max_rss_gib: float | None, deadline: float | None, step_processes: int | None = None
) -> None:
    """Stops the night (os._exit) when its RSS passes ``max_rss_gib`` or the clock passes ``deadline``, after writing
    what finished: a killed night still reports per asset its CPU s and peak RSS (the running one as unfinished)."""
    while True:
        time.sleep(0.5)
        now = time.time()
        rss_now = rss.samples[-1][1] if rss.samples else 0
        why = None
        if max_rss_gib is not None and rss_now > max_rss_gib * 2**30:
            why = f"watchdog: RSS {rss_now / 2**30:.2f} GiB > {max_rss_gib} GiB"
        elif deadline is not None and now > deadline:
            why = f"watchdog: deadline {time.strftime('%H:%M:%S', time.gmtime(deadline))} UTC reached"
        if why:
            Path(out).write_text(json.dumps(stopped_record(inst, rss, tw, now, c0, why, step_processes)))
            print(why, flush=True)
            for child in rss.proc.children(recursive=True):  # step processes of the multiprocess executor
                child.kill()
            os._exit(3)


def child_night(
    lake: str, day: str, job: str, out: str, max_rss_gib: float | None = None, deadline: float | None = None, step_processes: int | None = None
) -> None:
    import tempfile

    import dagster as dg

    from recsys_assets import runner

    runner.quiet_dagster()
    runner.use_lake(lake)
    # The multiprocess executor needs a persistent instance (its step processes report to it).
    inst = dg.DagsterInstance.local_temp(tempfile.mkdtemp(prefix="bench_scale_")) if step_processes else dg.DagsterInstance.ephemeral()
    with RssSampler(children=bool(step_processes)) as rss:
        t0, c0 = time.perf_counter(), time.process_time()
        tw = time.time()
        if max_rss_gib is not None or deadline is not None:
            threading.Thread(target=_watchdog, args=(inst, rss, tw, c0, out, max_rss_gib, deadline, step_processes), daemon=True).start()
        error = None
        try:
            if not job.endswith("_job"):  # one asset alone, its inputs as the lake holds them
                from dagster import materialize

                from recsys_assets.definitions import defs

                result = materialize([defs.resolve_assets_def(job)], partition_key=day, instance=inst, selection=[job], raise_on_error=False)
                if not result.success:
                    error = f"{job} failed"
            elif step_processes:
                result = runner.run_job_in_step_processes(job, inst, day, max_concurrent=step_processes)
            else:
                result = runner.run_job(job, inst, partition_key=day)
        except Exception as exc:  # a failed run is a result of the benchmark, reported as such
            error = f"{type(exc).__name__}: {exc}"[:2000]
            result = None
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if step_processes:  # the step processes' CPU too (they have ended and been waited for)
            ru_c = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu += ru_c.ru_utime + ru_c.ru_stime
        tw1 = time.time()
    steps = _steps_so_far(inst, rss, tw1)
    ok = error is None and (result is None or result.success)
    Path(out).write_text(json.dumps({"ok": ok, "error": error, "wall_s": wall, **night_totals(rss, tw, tw1, cpu, step_processes), "steps": steps}))


# --- parent --------------------------------------------------------------------------------------


# A night child stops itself (watchdog: what finished is written) this long before --timeout; the parent's
# kill is the last resort for a child that hangs (session 9 lost a 59-minute 10M night's per-step figures
# to the kill).
STOP_MARGIN_S = 30.0


def child_command(args: list[str], out: Path, timeout: float, now: float) -> list[str]:
    """The child's command line; a night child (``--child-night``) is told to stop at ``now + timeout - STOP_MARGIN_S``."""
    stop = ["--stop-at", f"{now + max(timeout - STOP_MARGIN_S, 1.0):.0f}"] if args and args[0] == "--child-night" else []
    return [sys.executable, __file__, *args, *stop, "--child-out", str(out)]


def _child(args: list[str], out: Path, log: Path, timeout: float) -> dict:
    cmd = child_command(args, out, timeout, time.time())
    with log.open("w") as fh:
        try:
            subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout + STOP_MARGIN_S, check=False)
        except subprocess.TimeoutExpired:
            return {"ok": False, "error": f"killed after {timeout + STOP_MARGIN_S:.0f} s, no result written (log {log})"}
    if not out.exists():
        return {"ok": False, "error": f"child wrote no result (log {log}): {log.read_text()[-1500:]}"}
    return json.loads(out.read_text())


def deadline_epoch(hhmm: str | None) -> float | None:
    """``HH:MM`` today in UTC as epoch seconds (None passes through)."""
    if not hhmm:
        return None
    import calendar

    h, m = (int(x) for x in hhmm.split(":"))
    today = time.gmtime()
    return float(calendar.timegm((today.tm_year, today.tm_mon, today.tm_mday, h, m, 0)))


def world_day(lake: Path) -> str:
    """The last day with published events (a full history and label window before it)."""
    days = sorted(p.name[4:] for p in (lake / "events").iterdir() if p.name.startswith("day="))
    return days[-1]


def growth(sizes: list[int], seconds: list[float]) -> float | None:
    """Least-squares slope of log(seconds) on log(size); None under two usable points."""
    pts = [(math.log(n), math.log(s)) for n, s in zip(sizes, seconds) if s and s > 0]
    if len(pts) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    den = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / den if den else None


def run_size(
    n: int, root: Path, timeout: float, keep: bool, reuse: bool = False, night: bool = True, watch: tuple[str, ...] = (), assets: tuple[str, ...] = ()
) -> dict:
    from recsys_assets.lib.ingest.synthetic import shop_shape

    lake = root / label(n)
    reusable = reuse and (lake / "ingest.json").exists() and (lake / "embed.json").exists()
    if lake.exists() and not (keep or reusable):
        shutil.rmtree(lake)
    lake.mkdir(parents=True, exist_ok=True)
    users, items = shop_shape(n)
    rec: dict = {"events": n, "users": users, "items": items, "load_1min": os.getloadavg()[0]}
    if reusable:  # the world and its cold encode measured before on this lake: rerun the night only
        rec["ingest"], rec["embed_cold"] = (json.loads((lake / f).read_text()) for f in ("ingest.json", "embed.json"))
        rec["day"] = world_day(lake)
        print(f"[{label(n)}] reusing {lake}: ingest and cold encode as measured then", flush=True)
        day = rec["day"]
    else:
        print(f"[{label(n)}] ingest ({users:,} users, {items:,} items) ...", flush=True)
        rec["ingest"] = _child(["--child-ingest", str(lake), str(n)], lake / "ingest.json", lake / "ingest.log", timeout)
        print(f"[{label(n)}] ingest: {rec['ingest']}", flush=True)
        if not rec["ingest"].get("rc", 1) == 0:
            return rec
        day = world_day(lake)
        rec["day"] = day
        print(f"[{label(n)}] item_embeddings (cold cache) for {day} ...", flush=True)
        rec["embed_cold"] = _child(["--child-night", str(lake), day, "item_embeddings"], lake / "embed.json", lake / "embed.log", timeout)
    if not night:
        return rec
    if assets:  # single assets of a night that ran on this lake (before/after a change to them)
        for name in assets:
            print(f"[{label(n)}] {name} {day} alone ...", flush=True)
            rec.setdefault("assets", {})[name] = _child(["--child-night", str(lake), day, name, *watch], lake / f"{name}.json", lake / f"{name}.log", timeout)
            print(f"[{label(n)}] {name}: {rec['assets'][name]}", flush=True)
        return rec
    print(f"[{label(n)}] day_job {day} ...", flush=True)
    rec["night"] = _child(["--child-night", str(lake), day, "day_job", *watch], lake / "night.json", lake / "night.log", timeout)
    print(f"[{label(n)}] night: ok={rec['night'].get('ok')} wall={rec['night'].get('wall_s')} error={rec['night'].get('error')}", flush=True)
    return rec


STAGE_ORDER = (
    "item_embeddings", "als_model", "content_to_cf", "user_profiles", "candidates", "ranker_examples", "ranker_dataset",
    "rankers", "recommendations", "cold_start_eval", "cold_start_lift", "lift_rollup",
)  # fmt: skip


def _stage_rows(records: list[dict]) -> list[tuple[str, list[dict | None]]]:
    """(stage name, per record {wall_s, cpu_s, peak_rss_mib} or None) in graph order."""
    out = [("ingest (whole history)", [r.get("ingest") if r.get("ingest", {}).get("wall_s") else None for r in records])]
    out.append(("item_embeddings (cold cache)", [(r.get("embed_cold") or {}).get("steps", {}).get("item_embeddings") for r in records]))
    steps = sorted({k for r in records for k in ((r.get("night") or {}).get("steps") or {})}, key=lambda k: (STAGE_ORDER.index(k) if k in STAGE_ORDER else 99, k))
    for key in steps:
        out.append((key, [((r.get("night") or {}).get("steps") or {}).get(key) for r in records]))
    for name in sorted({a for r in records for a in (r.get("assets") or {})}, key=lambda k: STAGE_ORDER.index(k) if k in STAGE_ORDER else 99):
        out.append((f"{name} (alone)", [(r.get("assets") or {}).get(name) if ((r.get("assets") or {}).get(name) or {}).get("wall_s") else None for r in records]))
    out.append(("night (day_job, whole run)", [r.get("night") if (r.get("night") or {}).get("wall_s") else None for r in records]))
    return out


def table(records: list[dict]) -> str:
    """Markdown: per stage and world size wall s, CPU s, peak RSS MiB; growth exponents of wall and CPU time."""
    records = sorted(records, key=lambda r: r["events"])
    sizes = [r["events"] for r in records]
    head = " | ".join(f"{label(n)}: wall s / CPU s / peak MiB" for n in sizes)
    lines = [f"| stage | {head} | growth exp. wall | growth exp. CPU |", "|---" * (3 + len(sizes)) + "|"]
    lines.append("| world: events / users / items | " + " | ".join(f"{r['events']:,} / {r['users']:,} / {r['items']:,}" for r in records) + " | | |")
    for name, vals in _stage_rows(records):
        cells = []
        for v in vals:
            if not v:
                cells.append("-")
                continue
            cpu = v.get("cpu_s")
            cell = f"{v['wall_s']:.1f} / {cpu:.1f} / {v.get('peak_rss_mib', 0):.0f}" if cpu is not None else f"{v['wall_s']:.1f} / - / {v.get('peak_rss_mib', 0):.0f}"
            cells.append(cell + (" (stopped, unfinished)" if v.get("unfinished") else ""))
        gw = growth(sizes, [(v or {}).get("wall_s") or 0 for v in vals])
        gc = growth(sizes, [(v or {}).get("cpu_s") or 0 for v in vals])
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {'-' if gw is None else f'{gw:.2f}'} | {'-' if gc is None else f'{gc:.2f}'} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", default="1M,3M,10M", help="comma-separated world sizes (events), e.g. 1M,3M,10M")
    ap.add_argument("--lake-root", default="/tmp/recsys_scale", help="one lake per size is created under it")
    ap.add_argument("--timeout", type=float, default=3600.0, help=f"seconds per child (ingest, encode, night); a night stops itself {STOP_MARGIN_S:.0f} s before and reports what finished")
    ap.add_argument("--keep", action="store_true", help="reuse an existing lake folder instead of starting fresh")
    ap.add_argument("--reuse", action="store_true", help="a lake whose ingest and cold encode were measured (ingest.json, embed.json): rerun the night only")
    ap.add_argument("--no-night", action="store_true", help="ingest and cold encode only (a later --reuse run measures the night)")
    ap.add_argument("--max-rss-gib", type=float, help="the night stops (reporting what finished) when its RSS passes this")
    ap.add_argument("--deadline", help="HH:MM (UTC, today): the night stops (reporting what finished) at this time")
    ap.add_argument("--assets", help="with --reuse on a lake whose night ran: run only these assets (comma-separated), each alone in a fresh child")
    ap.add_argument(
        "--step-processes", type=int, default=0,
        help="run day_job through its executor (one process per step, this many steps at a time; 0 = in-process); per step "
        "the figures of its own process, for the night the sum over processes",
    )  # fmt: skip
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--merge", help="a previous scale.json whose sizes are kept unless measured again")
    ap.add_argument("--child-ingest", nargs=2, metavar=("LAKE", "EVENTS"))
    ap.add_argument("--child-night", nargs=3, metavar=("LAKE", "DAY", "JOB"))
    ap.add_argument("--child-out")
    ap.add_argument("--stop-at", type=float, help=argparse.SUPPRESS)  # epoch s: the parent's timeout, as a watchdog deadline
    args = ap.parse_args()
    if args.child_ingest:
        child_ingest(args.child_ingest[0], int(args.child_ingest[1]), args.child_out)
        return
    if args.child_night:
        deadlines = [d for d in (deadline_epoch(args.deadline), args.stop_at) if d is not None]
        child_night(*args.child_night, args.child_out, args.max_rss_gib, min(deadlines, default=None), args.step_processes or None)
        return
    root = Path(args.lake_root)
    root.mkdir(parents=True, exist_ok=True)
    records = {}
    if args.merge and Path(args.merge).exists():
        records = {r["events"]: r for r in json.loads(Path(args.merge).read_text())["records"]}
    for n in [parse_count(x) for x in args.events.split(",") if x.strip()]:
        watch = (("--max-rss-gib", str(args.max_rss_gib)) if args.max_rss_gib else ()) + (("--deadline", args.deadline) if args.deadline else ())
        watch += ("--step-processes", str(args.step_processes)) if args.step_processes else ()
        assets = tuple(a.strip() for a in (args.assets or "").split(",") if a.strip())
        records[n] = run_size(n, root, args.timeout, args.keep, args.reuse, not args.no_night, watch, assets)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"machine": platform.platform(), "cpus": os.cpu_count(), "records": sorted(records.values(), key=lambda r: r["events"])}, indent=1))
    print(table(list(records.values())))


if __name__ == "__main__":
    main()
