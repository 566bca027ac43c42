"""cold_start_eval of day D: day-D truth against every arm's stored recommendations, per protocol."""

from __future__ import annotations


import polars as pl

from recsys_assets.lib.errors import LeakageError
from recsys_assets.lib.evaluation.evaluate import ARM_STATS_SCHEMA, PER_PAIR_SCHEMA, PER_USER_SCHEMA, evaluate_view
from recsys_assets.lib.features.nightly import FeatureConfig
from recsys_assets.lib.lake import Lake, is_local, read_parquet
from recsys_assets.lib.ranking.arms import parse_arm
from recsys_assets.lib.ranking.candidates import POOL_BLOCK_USERS
from recsys_assets.lib.ranking.nightly import arm_candidates, day_truth
from recsys_assets.lib.snapshot import SnapshotView, audit_leakage


def evaluate_protocol(lake: Lake, view: SnapshotView, events_of_day: pl.DataFrame, cfg: FeatureConfig, ks=(10, 20)) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """(per-user metrics, arm stats, n evaluated users) of one protocol's serve view."""
    per_user, stats, _, n = evaluate_protocol_pairs(lake, view, events_of_day, cfg, ks)
    return per_user, stats, n


def evaluate_protocol_pairs(
    lake: Lake,
    view: SnapshotView,
    events_of_day: pl.DataFrame,
    cfg: FeatureConfig,
    ks=(10, 20),
    block_users: int | None = POOL_BLOCK_USERS,
    threads: int = 1,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, int]:
    """(per-user metrics, arm stats, per-pair ranks, n evaluated users) of one protocol's serve view, ``block_users``
    evaluated users at a time, ``threads`` blocks side by side (``evaluate_view``)."""
    problems = audit_leakage(view)
    if problems:
        raise LeakageError("leakage audit failed: " + "; ".join(problems))
    truth = day_truth(events_of_day, view, cfg)
    folder = lake.recs_dir(view.day, view.protocol)
    recs = read_parquet(folder.joinpath("recs.parquet"))
    cold = read_parquet(folder.joinpath("cold_recs.parquet"))
    pool_path = folder.joinpath("candidates.parquet")
    # The pool (hundreds of rows per served user) is read per block of evaluated users where it can be.
    pool = pl.scan_parquet(pool_path.path) if is_local(pool_path) else read_parquet(pool_path)
    arms = recs["arm"].unique(maintain_order=True).to_list()
    arm_recs = {a: recs.filter(pl.col("arm") == a).drop("arm") for a in arms}
    arm_cold = {a: cold.filter(pl.col("arm") == a).drop("arm") for a in cold["arm"].unique(maintain_order=True).to_list()}
    cands = {a: arm_candidates(pool, a) for a in arms if parse_arm(a).kind == "ranker"}
    if truth.height == 0:
        return pl.DataFrame(schema=PER_USER_SCHEMA), pl.DataFrame(schema=ARM_STATS_SCHEMA), pl.DataFrame(schema=PER_PAIR_SCHEMA), 0
    per_user, stats, pairs = evaluate_view(view, truth, arm_recs, arm_cold, cands, cfg.protocol, ks, block_users, threads)
    return per_user, stats, pairs, truth["user_id"].n_unique()

