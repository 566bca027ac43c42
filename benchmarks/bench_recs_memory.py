"""Where the ``recommendations`` asset's memory goes: resident memory by phase, one day of a lake.

Runs what the asset runs (``nightly.serve_day`` per protocol, the asset's settings from ``ModelsResource``)
in this process, with the phases' library calls wrapped to print, before and after each, the process's RSS
and the peak RSS sampled (``bench_scale.RssSampler``, every 50 ms) since the previous line. It rewrites the day's ``recs/`` files (the
same bytes as the asset). Used in docs/operations.md section 7 on the 10M world's lake:

    .venv/bin/python benchmarks/bench_recs_memory.py --lake /tmp/bench/10M --day 2024-02-29 [--block-users 5000]

RSS counts memory the allocators keep after a phase frees it (polars' jemalloc, glibc's malloc), so a later
phase may start high and reuse it; the last line is the process's peak (``ru_maxrss``) and CPU seconds.
"""

from __future__ import annotations

import argparse
import resource
import time
from datetime import date

from bench_scale import RssSampler  # benchmarks/ is the script's directory, so on sys.path


def run(args: argparse.Namespace, sampler: RssSampler) -> None:
    t0, last = time.time(), [time.time()]

    def mark(name: str) -> None:
        now, rss = time.time(), sampler.proc.memory_info().rss
        peak = max(sampler.peak_between(last[0], now), rss)
        print(f"{now - t0:8.1f}s  {name:42s} rss {rss / 2**20:8.0f} MiB   peak since last {peak / 2**20:8.0f} MiB", flush=True)
        last[0] = now

    import recsys_assets.lib.ranking.nightly as nightly

    def wrapped(name: str):
        fn = getattr(nightly, name)

        def call(*a, **kw):
            mark(f"before {name}")
            out = fn(*a, **kw)
            mark(f"after {name}")
            return out

        return call

    for name in ("load_snapshot_features", "recommend_arms", "top_k_items_arms", "explain_recommendations", "write_parquet_atomic"):
        setattr(nightly, name, wrapped(name))

    from recsys_assets.defs.features.common import day_snapshot
    from recsys_assets.defs.resources import ModelsResource
    from recsys_assets.lib.lake import Lake

    lake = Lake.at(args.lake)
    models = ModelsResource() if args.block_users is None else ModelsResource(block_users=args.block_users)
    cfg = models.feature_config()
    rcfg = nightly.ranking_config(lake, args.day, cfg, **models.ranking_settings())
    mark("start")
    snap = day_snapshot(lake, args.day, cfg)
    users = nightly.served_users(snap.events_of_day)
    mark(f"day's events ({len(users)} served users)")
    for (protocol, _), view in snap.views("serve").items():
        mark(f"{protocol}: views built")
        feats = nightly.load_snapshot_features(lake, view, list(rcfg.encoders), cfg)
        truth = nightly.day_truth(snap.events_of_day, view, cfg)
        nightly.serve_day(lake, feats, users, truth, nightly.load_rankers(lake, args.day, protocol, rcfg), rcfg, models.block_threads, models.thread_block_users())
        del feats
        mark(f"{protocol}: done")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lake", required=True)
    ap.add_argument("--day", required=True, type=date.fromisoformat)
    ap.add_argument("--block-users", type=int, default=None, help="ModelsResource.block_users (default: the resource's)")
    args = ap.parse_args()

    t0 = time.time()
    with RssSampler(period=0.05) as sampler:
        run(args, sampler)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"peak RSS {usage.ru_maxrss / 1024:.0f} MiB, CPU {usage.ru_utime + usage.ru_stime:.1f} s, wall {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
