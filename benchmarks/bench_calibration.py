"""Calibration of the lift statistics by simulation (docs/statistics.md, "Calibration").

Part 1, replicate worlds (cheap): each world is one cell of per-(user, item) recall
contributions from :class:`recsys_assets.lib.evaluation.stats.SimWorld` with item effects
shared by every user ranking that item. Every replicate goes through the estimator the
reports use (``cluster_bootstrap``: users as clusters, items resampled too) and through
the user-only intervals for comparison. Printed per world: rejection rate at alpha
(false-positive rate when the true lift is 0, power otherwise), rejection at alpha / m
(m = 6 primary endpoints per protocol), CI coverage of the true lift, and the median
two-way / user-only width ratio.

Part 2, real pipeline runs (``--real``): ``recsys-assets demo --dataset synthetic`` with
``--text-signal 0`` (text is noise: no lift should be found) and ``1`` (text carries the
topics), and the headline rows it writes (reports.headline, pooled window).

    .venv/bin/python benchmarks/bench_calibration.py                  # part 1, >= 200 replicates a world
    .venv/bin/python benchmarks/bench_calibration.py --real --days 7  # + part 2 (minutes per run)
    .venv/bin/python benchmarks/bench_calibration.py --known-answer --seeds 0,1  # test_known_answer's worlds

Writes benchmarks/results/calibration.json and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import polars as pl

from recsys_assets.lib.evaluation.stats import SimWorld, calibrate

WORLDS: dict[str, SimWorld] = {
    "cold-item cell, null": SimWorld(n_users=200, n_items=40, item_effect=0.15, effect=0.0),
    "few shared items, null": SimWorld(n_users=300, n_items=15, item_effect=0.2, effect=0.0),
    "pooled days (2.5/user), null": SimWorld(n_users=150, n_items=40, mean_days=2.5, effect=0.0),
    "no item effect, null": SimWorld(n_users=200, n_items=40, item_effect=0.0, user_effect=0.1, effect=0.0),
    "many items, null": SimWorld(n_users=400, n_items=400, item_effect=0.15, effect=0.0),
    "cold-item cell, lift 0.05": SimWorld(n_users=200, n_items=40, item_effect=0.15, effect=0.05),
    "cold-item cell, lift 0.10": SimWorld(n_users=200, n_items=40, item_effect=0.15, effect=0.10),
    "large cell, lift 0.05": SimWorld(n_users=800, n_items=120, item_effect=0.15, effect=0.05),
}


def simulated(replicates: int, n_boot: int, seed: int) -> pl.DataFrame:
    rows = []
    for i, (name, world) in enumerate(WORLDS.items()):
        t0 = time.perf_counter()
        cal = calibrate(world, replicates=replicates, n_boot=n_boot, seed=seed + 1000 * i)
        rows.append({"world": name, **asdict(cal), "seconds": round(time.perf_counter() - t0, 1)})
    return pl.DataFrame(rows)


def real_runs(days: int, seeds: list[int], root: Path) -> pl.DataFrame:
    from recsys_assets.lib.evaluation.headline import read_headline

    frames = []
    for signal in (0.0, 1.0):
        for seed in seeds:
            lake = root / f"syn_s{seed}_t{int(signal)}"
            cmd = [sys.executable, "-m", "recsys_assets.cli", "demo", "--dataset", "synthetic", "--text-signal", str(signal), "--seed", str(seed), "--days", str(days), "--lake", str(lake)]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            head = read_headline(lake / "warehouse.duckdb")
            frames.append(head.with_columns(text_signal=pl.lit(signal), seed=pl.lit(seed), seconds=pl.lit(round(time.perf_counter() - t0))))
    return pl.concat(frames) if frames else pl.DataFrame()


def known_answer_runs(seeds: list[int], root: Path) -> pl.DataFrame:
    """The known-answer world of test_known_answer.py (nightly stages as library calls), text_signal 0 and 1."""
    import recsys_assets_tests.lib.evaluation.test_known_answer as ka

    rows = []
    for seed in seeds:
        for signal in (0.0, 1.0):
            ka.WORLD["seed"] = seed
            folder = root / f"ka_s{seed}_t{int(signal)}"
            res = ka.run_world(folder, signal, (ka.LM,), ("ranker_no_text", f"ranker_{ka.LM}"))
            c = res.cell(f"ranker_{ka.LM}", "ranker_no_text", "cold_only")
            keep = ("value", "baseline_value", "abs_lift", "ci_low", "ci_high", "user_ci_low", "user_ci_high", "p_value", "n_users", "n_clusters", "n_items", "ci_method")
            rows.append({"seed": seed, "text_signal": signal, "baseline": "ranker_no_text", **{k: c[k] for k in keep}})
    return pl.DataFrame(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--replicates", type=int, default=400, help="replicate worlds per simulated world (>= 200)")
    ap.add_argument("--n-boot", type=int, default=300, help="user-cluster resamples per replicate")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--real", action="store_true", help="also run the synthetic pipeline with text_signal 0 and 1")
    ap.add_argument("--known-answer", action="store_true", help="also run the known-answer worlds (library calls, ~4 min a world)")
    ap.add_argument("--days", type=int, default=7, help="evaluated days of each real run")
    ap.add_argument("--seeds", default="7", help="comma-separated world seeds of the real runs")
    ap.add_argument("--lake-root", default="/tmp/bench_calibration", help="folder of the real runs' lakes")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "calibration.json"))
    args = ap.parse_args(argv)

    sim = simulated(args.replicates, args.n_boot, args.seed)
    shown = sim.select(
        "world", "effect", "replicates",
        pl.col("reject_two_way").alias("reject two-way"),
        pl.col("reject_two_way_bonferroni").alias("reject two-way p<a/6"),
        pl.col("reject_user").alias("reject user-only"),
        pl.col("reject_user_day").alias("reject user-day (old)"),
        pl.col("cover_two_way").alias("cover two-way"),
        pl.col("cover_user").alias("cover user-only"),
        pl.col("cover_user_day").alias("cover user-day (old)"),
        pl.col("width_ratio").alias("width 2-way/user"),
    )
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=250, float_precision=3, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
        print("Simulated replicate worlds (alpha 0.05; 'reject' = false-positive rate when effect = 0, power otherwise):")
        print(shown)
    result = {"simulated": sim.to_dicts(), "args": vars(args)}
    if args.real:
        real = real_runs(args.days, [int(s) for s in args.seeds.split(",")], Path(args.lake_root))
        cols = ["text_signal", "seed", "protocol", "endpoint", "value", "baseline_value", "abs_lift", "ci_low", "ci_high", "p_adjusted", "n_users", "n_items", "verdict"]
        with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=250, float_precision=4, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
            print("\nReal pipeline runs on synthetic worlds (reports.headline, pooled window):")
            print(real.select(cols))
        result["real"] = real.with_columns(pl.col(pl.Date).cast(pl.String)).to_dicts()
    if args.known_answer:
        ka = known_answer_runs([int(s) for s in args.seeds.split(",")], Path(args.lake_root))
        with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=250, float_precision=4, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
            print("\nKnown-answer worlds (item_holdout, cold_only, ranker_minilm-l6 vs ranker_no_text, recall@20, 3 days pooled):")
            print(ka)
        result["known_answer"] = ka.to_dicts()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(f"\nwritten: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
