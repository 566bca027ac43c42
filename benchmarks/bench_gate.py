"""The ranker gate: every ranker arm must reach the best ID baseline (popularity or ALS).

Reads the per-user metrics the pipeline wrote (``eval/day=D/per_user.parquet``) for the
evaluated days of a lake, pools the user-days, and prints, per protocol, metric
(recall@20, NDCG@20, ``full`` scope, ``all`` cell) and ranker arm:

- the pooled means of the arm, of ``popularity`` and of ``als``;
- ``best``: whichever of popularity / als has the higher pooled mean in that cell;
- the paired bootstrap (``recsys_assets.lib.evaluation.stats.paired_bootstrap``, users
  resampled, same user-days for both arms) of ``arm - best``: difference and 95% CI;
- ``reach``: ``diff >= 0``, the arm reaches at least the best baseline (the gate; its CI then
  reaches above 0 too, i.e. it is not below 0);
- ``above``: ``ci_low > 0``, the arm is significantly above the best baseline (the goal).

With ``--text`` it also prints the text-lift cells (LM ranker vs ``ranker_no_text`` and vs
``ranker_tfidf``), same statistic, ``full`` and ``cold_only`` scopes, ``all`` and ``new`` users.

    .venv/bin/python benchmarks/bench_gate.py --lake /tmp/lake [--start D --end D] [--text] [--check] [--against /tmp/base_lake]

``--against BASE`` (a variant measured on tuning days before the evaluated window) also prints each ranker
arm of this lake minus the same arm of BASE, paired over the user-days both lakes judged.

After the gate it prints the product's own treatment check over the same days
(``reports.ranker_check``: the rollup's statistics, users as clusters and items resampled where
shared, so its intervals are wider than the user-day bootstrap above).

``--check`` exits 1 when a ranker arm fails the gate (use it in a nightly CI job). The fast
gate test on a synthetic world is ``recsys_assets_tests/lib/ranking/test_gate.py``.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date

import polars as pl

from recsys_assets.lib.evaluation.lift import LiftConfig
from recsys_assets.lib.evaluation.ranker_check import ranker_check_notes, ranker_check_rows
from recsys_assets.lib.evaluation.reporting import load_per_user, pooled_window
from recsys_assets.lib.evaluation.stats import paired_bootstrap
from recsys_assets.lib.lake import Lake

BASELINES = ("popularity", "als")
GATE_METRICS = (("recall", 20), ("ndcg", 20))


def eval_days(lake: Lake) -> list[date]:
    base = lake.path("eval")
    if not base.exists():
        return []
    return sorted(date.fromisoformat(c.name[4:]) for c in base.iterdir() if c.name.startswith("day=") and c.joinpath("per_user.parquet").exists())


def pooled_per_user(lake: Lake, days: list[date]) -> pl.DataFrame:
    """Per-user rows of the chosen days; ``unit`` = day|user (a user-day is one observation)."""
    frames = []
    for d in days:
        f = load_per_user(lake, d)
        if f.height:
            frames.append(f.with_columns(unit=pl.format("{}|{}", pl.lit(d.isoformat()), pl.col("user_id"))))
    if not frames:
        raise SystemExit(f"no eval/day=*/per_user.parquet under {lake.root} for {days[:1]}..{days[-1:]}")
    return pl.concat(frames)


def _pair(cell: pl.DataFrame, arm: str, base: str) -> tuple:
    t = cell.filter(pl.col("arm") == arm).select("unit", pl.col("value").alias("t"))
    b = cell.filter(pl.col("arm") == base).select("unit", pl.col("value").alias("b"))
    j = t.join(b, on="unit", how="inner").sort("unit")
    return j.get_column("t").to_numpy(), j.get_column("b").to_numpy()


def gate_table(per_user: pl.DataFrame, n_boot: int = 2000, seed: int = 0) -> pl.DataFrame:
    """One row per (protocol, metric@k, ranker arm): means, best baseline, arm - best with its CI."""
    data = per_user.filter((pl.col("scope") == "full") & (pl.col("segment_kind") == "all"))
    rankers = sorted(a for a in data.get_column("arm").unique().to_list() if a.startswith("ranker_") and "+" not in a)
    rows = []
    for protocol in sorted(data.get_column("protocol").unique().to_list()):
        for metric, k in GATE_METRICS:
            cell = data.filter((pl.col("protocol") == protocol) & (pl.col("metric") == metric) & (pl.col("k") == k))
            means = {a: float(cell.filter(pl.col("arm") == a).get_column("value").mean() or 0.0) for a in (*BASELINES, *rankers)}
            best = max(BASELINES, key=lambda a: (means[a], a == "popularity"))
            for arm in rankers:
                t, b = _pair(cell, arm, best)
                st = paired_bootstrap(t, b, n_boot=n_boot, seed=seed)
                rows.append(
                    {
                        "protocol": protocol, "metric": f"{metric}@{k}", "arm": arm, "value": st.value,
                        "popularity": means["popularity"], "als": means["als"], "best": best, "diff": st.abs_lift,
                        "ci_low": st.ci_low, "ci_high": st.ci_high, "n_user_days": st.n_users,
                        "reach": bool(st.abs_lift >= 0.0 and st.ci_high >= 0.0), "above": bool(st.ci_low > 0.0),
                    }
                )
    return pl.DataFrame(rows)


TEXT_PAIRS = (("ranker_no_text",), ("ranker_tfidf",))


def text_table(per_user: pl.DataFrame, lm_arms: list[str], n_boot: int = 2000, seed: int = 0) -> pl.DataFrame:
    """LM ranker vs ranker_no_text and vs ranker_tfidf, recall@20, full/cold_only x all/new users."""
    rows = []
    data = per_user.filter((pl.col("metric") == "recall") & (pl.col("k") == 20))
    cells = [("all", "all"), ("user", "new")]
    for protocol in sorted(data.get_column("protocol").unique().to_list()):
        for scope in ("full", "cold_only"):
            for kind, seg in cells:
                cell = data.filter(
                    (pl.col("protocol") == protocol) & (pl.col("scope") == scope) & (pl.col("segment_kind") == kind) & (pl.col("segment") == seg)
                )
                for arm in lm_arms:
                    for (base,) in TEXT_PAIRS:
                        t, b = _pair(cell, arm, base)
                        if len(t) == 0:
                            continue
                        st = paired_bootstrap(t, b, n_boot=n_boot, seed=seed)
                        rows.append(
                            {
                                "protocol": protocol, "scope": scope, "segment": f"{kind}:{seg}", "arm": arm, "baseline": base,
                                "value": st.value, "baseline_value": st.baseline_value, "diff": st.abs_lift,
                                "ci_low": st.ci_low, "ci_high": st.ci_high, "n_user_days": st.n_users,
                            }
                        )
    return pl.DataFrame(rows)


def against_table(per_user: pl.DataFrame, other: pl.DataFrame, n_boot: int = 2000, seed: int = 0) -> pl.DataFrame:
    """Each ranker arm of this lake minus the same arm of another lake (a variant against its base on the
    same days), recall@20 / NDCG@20, ``full`` scope, ``all`` cell, paired over the user-days both judged."""
    keep = (pl.col("scope") == "full") & (pl.col("segment_kind") == "all")
    mine, theirs = per_user.filter(keep), other.filter(keep)
    rows = []
    for protocol in sorted(mine.get_column("protocol").unique().to_list()):
        for metric, k in GATE_METRICS:
            at = (pl.col("protocol") == protocol) & (pl.col("metric") == metric) & (pl.col("k") == k)
            a, b = mine.filter(at), theirs.filter(at)
            for arm in sorted(x for x in a.get_column("arm").unique().to_list() if x.startswith("ranker_") and "+" not in x):
                t = a.filter(pl.col("arm") == arm).select("unit", pl.col("value").alias("t"))
                j = t.join(b.filter(pl.col("arm") == arm).select("unit", pl.col("value").alias("b")), on="unit", how="inner").sort("unit")
                if j.height == 0:
                    continue
                st = paired_bootstrap(j.get_column("t").to_numpy(), j.get_column("b").to_numpy(), n_boot=n_boot, seed=seed)
                rows.append(
                    {
                        "protocol": protocol, "metric": f"{metric}@{k}", "arm": arm, "value": st.value, "other": st.baseline_value,
                        "diff": st.abs_lift, "ci_low": st.ci_low, "ci_high": st.ci_high, "n_user_days": st.n_users,
                    }
                )
    return pl.DataFrame(rows)


def show(df: pl.DataFrame) -> str:
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=250, float_precision=4, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
        return str(df)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lake", required=True)
    ap.add_argument("--start", type=date.fromisoformat)
    ap.add_argument("--end", type=date.fromisoformat)
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--text", action="store_true", help="also print the LM-vs-no-text and LM-vs-TF-IDF cells")
    ap.add_argument("--lm", default="ranker_minilm-l6", help="comma-separated LM ranker arms for --text")
    ap.add_argument("--check", action="store_true", help="exit 1 when an arm fails the gate")
    ap.add_argument("--against", help="another lake over the same days (a variant's base): print each ranker arm here minus there")
    args = ap.parse_args(argv)
    lake = Lake.at(args.lake)
    days = [d for d in eval_days(lake) if (args.start is None or d >= args.start) and (args.end is None or d <= args.end)]
    if not days:
        print(f"no evaluated days in {lake.root}", file=sys.stderr)
        return 2
    per_user = pooled_per_user(lake, days)
    gate = gate_table(per_user, args.n_boot)
    print(f"Ranker gate, {lake.root}, {len(days)} days {days[0]}..{days[-1]} (full scope, all users; diff = arm - best of popularity/als, paired bootstrap 95% CI over user-days):")
    print(show(gate))
    failed = gate.filter(~pl.col("reach"))
    print(f"gate: {'PASS' if failed.height == 0 else 'FAIL'} ({gate.height - failed.height}/{gate.height} cells reach the best baseline; {int(gate['above'].sum())} significantly above it)")
    # The product's own check over the same days (reports.ranker_check): the rollup's statistics,
    # users as clusters (a user's days move together) and items resampled where users share them.
    pooled, pairs = pooled_window(lake, days)
    check = ranker_check_rows(pooled, LiftConfig(), days[0], days[-1], per_pair=pairs)
    print("\nThe product's treatment check on the same days (reports.ranker_check; user-cluster / two-way CIs):")
    print(show(check.drop("window_start", "window_end")))
    print(ranker_check_notes(check)[-1])
    if args.text:
        lm = [a.strip() for a in args.lm.split(",") if a.strip()]
        print("\nText lift inside the ranker (recall@20, paired bootstrap over user-days):")
        print(show(text_table(per_user, lm, args.n_boot)))
    if args.against:
        other = Lake.at(args.against)
        print(f"\nRanker arms of {lake.root} minus the same arms of {other.root} (paired bootstrap over the user-days both judged):")
        table = against_table(per_user, pooled_per_user(other, days), args.n_boot)
        print(show(table))
        print(f"mean diff over the cells: {table['diff'].mean():+.4f}; {int((table['ci_low'] > 0).sum())} significantly up, {int((table['ci_high'] < 0).sum())} down")
    return 1 if (args.check and failed.height) else 0


if __name__ == "__main__":
    sys.exit(main())
