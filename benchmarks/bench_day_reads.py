"""How often one nightly partition reads the event history, and what the night costs.

Runs ``day_job`` for ``--day`` in-process (as the nightly schedule and the demo do) with
``Lake.read_events`` wrapped to count its calls and the rows each returned, and prints one
line: event reads, rows read, wall seconds, process CPU seconds, peak RSS, load average.
It only patches ``Lake.read_events``, so it runs unchanged on older commits of this repository
(``PYTHONPATH=<checkout> python benchmarks/bench_day_reads.py ...``): that is how the
before/after of the one-snapshot refactor was measured.

    .venv/bin/python benchmarks/bench_day_reads.py --lake /tmp/lake100k --day 1998-04-10 [--repeat 2]

The lake must hold the published events (``recsys-assets ingest``). The first run of a day
also encodes its item texts; ``--repeat 2`` reports each run, the second with warm caches
(a rerun rewrites byte-identical artifacts).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
from datetime import date  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lake", required=True)
    ap.add_argument("--day", required=True, type=date.fromisoformat)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()

    import dagster as dg

    from recsys_assets import runner
    from recsys_assets.lib.lake import Lake

    calls: list[int] = []
    original = Lake.read_events

    def counted(self, *a, **kw):
        out = original(self, *a, **kw)
        calls.append(out.height)
        return out

    Lake.read_events = counted
    runner.quiet_dagster()
    runner.use_lake(args.lake)
    for i in range(args.repeat):
        calls.clear()
        inst = dg.DagsterInstance.ephemeral()
        w0, c0 = time.perf_counter(), time.process_time()
        result = runner.run_job("day_job", inst, partition_key=args.day.isoformat())
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        assert result.success, runner.check_failures(result)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"run {i + 1} day {args.day}: event reads {len(calls)}, rows read {sum(calls):,}, "
            f"wall {wall:.1f} s, CPU {cpu:.1f} s, peak RSS {rss:,.0f} MiB, load {os.getloadavg()[0]:.1f}"
        )


if __name__ == "__main__":
    main()
