"""Where one nightly step's memory goes: resident memory by phase, one day of a lake.

Materializes the asset alone, in this process (``dagster.materialize``, its real code, the default
``ModelsResource`` unless ``--block-users``), with the library calls of its phases wrapped to print, before
and after each, the process's RSS and the peak RSS sampled (``bench_scale.RssSampler``, every 50 ms) since
the previous line. It rewrites the step's outputs on the lake (the same bytes as the night's run). Used in
docs/operations.md section 7 on the 10M world's lake, after a night ran there:

    .venv/bin/python benchmarks/bench_step_memory.py --lake /tmp/bench/10M --day 2024-02-29 --step cold_start_eval

RSS counts memory the allocators keep after a phase frees it (polars' jemalloc, glibc's malloc), so a later
phase may start high and reuse it; the last line is the process's peak (``ru_maxrss``) and CPU seconds.
"""

from __future__ import annotations

import argparse
import importlib
import resource
import time
from datetime import date

from bench_scale import RssSampler  # benchmarks/ is the script's directory, so on sys.path

NIGHTLY, DAILY, EVALUATE, REPORTING = (
    "recsys_assets.lib.ranking.nightly", "recsys_assets.lib.evaluation.daily", "recsys_assets.lib.evaluation.evaluate", "recsys_assets.lib.evaluation.reporting"
)
STEPS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    # step: (the asset's module, the (module, function) calls timed as its phases)
    "recommendations": (
        "recsys_assets.defs.ranking.recommendations",
        [(NIGHTLY, n) for n in ("load_snapshot_features", "recommend_arms", "top_k_items_arms", "explain_recommendations", "write_parquet_atomic")],
    ),
    "candidates": (
        "recsys_assets.defs.ranking.candidates",
        [(NIGHTLY, n) for n in ("load_snapshot_features", "write_candidate_pool")],
    ),
    "ranker_examples": (
        "recsys_assets.defs.ranking.ranker_examples",
        [(NIGHTLY, "next_day_labels"), (NIGHTLY, "load_snapshot_features"), (NIGHTLY, "write_night_examples")],
    ),
    "cold_start_eval": (
        "recsys_assets.defs.reports.cold_start_eval",
        [(DAILY, "day_truth"), (DAILY, "evaluate_view"), (EVALUATE, "arm_metrics_table"), (REPORTING, "save_eval"), (REPORTING, "sort_rows"), (REPORTING, "day_arm_metrics")],
    ),
    "cold_start_lift": ("recsys_assets.defs.reports.cold_start_lift", [(REPORTING, n) for n in ("load_per_user", "load_per_pair", "lift_rows", "headline_rows")]),
    "lift_rollup": ("recsys_assets.defs.reports.lift_rollup", [(REPORTING, n) for n in ("pooled_window", "lift_rows", "warmup_rows", "ranker_check_rows", "publish_window")]),
}


def run(args: argparse.Namespace, sampler: RssSampler) -> bool:
    t0, last = time.time(), [time.time()]

    def mark(name: str) -> None:
        now, rss = time.time(), sampler.proc.memory_info().rss
        peak = max(sampler.peak_between(last[0], now), rss)
        print(f"{now - t0:8.1f}s  {name:42s} rss {rss / 2**20:8.0f} MiB   peak since last {peak / 2**20:8.0f} MiB", flush=True)
        last[0] = now

    asset_module_name, phases = STEPS[args.step]
    asset_module = importlib.import_module(asset_module_name)
    for module_name, name in phases:
        module, fn = importlib.import_module(module_name), getattr(importlib.import_module(module_name), name)

        def call(*a, _fn=fn, _name=name, **kw):
            mark(f"before {_name}")
            out = _fn(*a, **kw)
            mark(f"after {_name}")
            return out

        setattr(module, name, call)
        if getattr(asset_module, name, None) is fn:  # the asset imported it by name
            setattr(asset_module, name, call)

    import dagster as dg

    from recsys_assets.defs.resources import LakeResource, ModelsResource

    models = ModelsResource(**{k: v for k, v in (("block_users", args.block_users), ("block_threads", args.block_threads)) if v is not None})
    asset = getattr(asset_module, args.step)
    mark("start")
    result = dg.materialize([asset], partition_key=args.day.isoformat(), resources={"lake": LakeResource(root=args.lake), "models": models}, raise_on_error=False)
    mark(f"end ({'ok' if result.success else 'FAILED'})")
    return result.success


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lake", required=True)
    ap.add_argument("--day", required=True, type=date.fromisoformat)
    ap.add_argument("--step", required=True, choices=sorted(STEPS))
    ap.add_argument("--block-users", type=int, default=None, help="ModelsResource.block_users (default: the resource's)")
    ap.add_argument("--block-threads", type=int, default=None, help="ModelsResource.block_threads (default: the resource's; 1 to profile one block at a time)")
    args = ap.parse_args()

    t0 = time.time()
    with RssSampler(period=0.05) as sampler:
        ok = run(args, sampler)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"peak RSS {usage.ru_maxrss / 1024:.0f} MiB, CPU {usage.ru_utime + usage.ru_stime:.1f} s, wall {time.time() - t0:.1f} s")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
