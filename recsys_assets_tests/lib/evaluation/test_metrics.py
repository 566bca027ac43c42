"""Ranking metrics against hand-computed cases (arithmetic in the comments)."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from recsys_assets.lib.evaluation.metrics import (
    UNKNOWN_SEGMENT,
    EvaluationError,
    candidate_recall,
    coverage,
    per_user_metrics,
    ranked_lists,
    restrict_truth,
    slot_share,
)

L2_3 = 1 / math.log2(3)  # discount of rank 2 = 0.6309...
L2_4 = 1 / math.log2(4)  # discount of rank 3 = 0.5


def _recs(lists: dict[str, list[str]]) -> pl.DataFrame:
    rows = [(u, it, r) for u, items in lists.items() for r, it in enumerate(items, start=1)]
    return pl.DataFrame(rows, schema={"user_id": pl.String, "item_id": pl.String, "rank": pl.Int64},
                        orient="row")


def _truth(sets: dict[str, list[str]]) -> pl.DataFrame:
    rows = [(u, it) for u, items in sets.items() for it in items]
    return pl.DataFrame(rows, schema={"user_id": pl.String, "item_id": pl.String}, orient="row")


def _as_dict(df: pl.DataFrame) -> dict[tuple[str, str, int], float]:
    return {(r["user_id"], r["metric"], r["k"]): r["value"] for r in df.iter_rows(named=True)}


@pytest.fixture
def case():
    recs = _recs({
        "u1": ["a", "b", "c", "d"],
        "u2": ["p", "x", "q", "r", "y"],
        "u4": ["n", "o", "p", "m"],
        "u5": ["a", "b"],
        "other": ["a"],  # not evaluated: ignored
    })
    truth = _truth({
        "u1": ["a", "c"],
        "u2": ["x", "y", "z"],
        "u3": ["a"],  # no recs at all
        "u4": ["m"],  # its positive sits at rank 4, beyond K=3
        "u5": ["a", "b", "c", "d"],
        "other": ["a"],
    })
    return recs, truth


def test_hand_computed_values(case):
    recs, truth = case
    out = per_user_metrics(recs, truth, ["u1", "u2", "u3", "u4", "u5"], ks=(2, 3))
    v = _as_dict(out)
    approx = pytest.approx

    # u1: truth {a, c}, ranked [a, b, c, d]
    # @2: hit a@1. recall = 1/2. DCG = 1/log2(2) = 1; IDCG over min(2,2)=2 = 1 + 1/log2(3)
    assert v[("u1", "recall", 2)] == approx(0.5)
    assert v[("u1", "ndcg", 2)] == approx(1 / (1 + L2_3))  # 0.6131
    assert v[("u1", "hitrate", 2)] == 1.0
    assert v[("u1", "mrr", 2)] == 1.0
    # @3: hits a@1, c@3. recall = 2/2. DCG = 1 + 1/log2(4) = 1.5; IDCG = 1 + 1/log2(3)
    assert v[("u1", "recall", 3)] == approx(1.0)
    assert v[("u1", "ndcg", 3)] == approx(1.5 / (1 + L2_3))  # 0.9197
    assert v[("u1", "mrr", 3)] == 1.0

    # u2: truth {x, y, z}, ranked [p, x, q, r, y]
    # @2: hit x@2. recall = 1/3. DCG = 1/log2(3); IDCG over min(2,3)=2 = 1 + 1/log2(3). MRR = 1/2
    assert v[("u2", "recall", 2)] == approx(1 / 3)
    assert v[("u2", "ndcg", 2)] == approx(L2_3 / (1 + L2_3))  # 0.3869
    assert v[("u2", "hitrate", 2)] == 1.0
    assert v[("u2", "mrr", 2)] == approx(0.5)
    # @3: still only x. IDCG over min(3,3)=3 = 1 + 1/log2(3) + 1/log2(4)
    assert v[("u2", "recall", 3)] == approx(1 / 3)
    assert v[("u2", "ndcg", 3)] == approx(L2_3 / (1 + L2_3 + L2_4))  # 0.2961
    assert v[("u2", "mrr", 3)] == approx(0.5)

    # u3 has no recs and u4's positive is at rank 4 > K: every metric 0.
    for u in ("u3", "u4"):
        for m in ("recall", "ndcg", "hitrate", "mrr"):
            for k in (2, 3):
                assert v[(u, m, k)] == 0.0, (u, m, k)

    # u5: truth {a, b, c, d}, ranked [a, b]. Full-|truth| recall: 2/4 (a min(K,|T|) cap would give 1).
    # DCG = 1 + 1/log2(3) = IDCG over min(2,4)=2 -> NDCG 1.
    assert v[("u5", "recall", 2)] == approx(0.5)
    assert v[("u5", "ndcg", 2)] == approx(1.0)


def test_shape_order_and_dtypes(case):
    recs, truth = case
    users = ["u5", "u1", "u3"]
    out = per_user_metrics(recs, truth, pl.Series(users), ks=(3, 2))
    assert out.schema == pl.Schema({"user_id": pl.String, "metric": pl.String, "k": pl.Int64,
                                    "value": pl.Float64})
    # every user x metric x k exactly once; "other" (not in users) absent
    assert out.height == 3 * 4 * 2
    assert out.select("user_id", "metric", "k").is_duplicated().sum() == 0
    assert set(out["user_id"]) == set(users)
    # order: metric, then k in the given ks order, then users in the given order
    assert out["metric"].head(6).to_list() == ["recall"] * 6
    assert out["k"].head(6).to_list() == [3, 3, 3, 2, 2, 2]
    assert out["user_id"].head(3).to_list() == users


def test_users_without_truth_raise_or_drop(case):
    recs, truth = case
    with pytest.raises(EvaluationError, match="no truth rows"):
        per_user_metrics(recs, truth, ["u1", "ghost"], ks=(2,))
    out = per_user_metrics(recs, truth, ["u1", "ghost"], ks=(2,), missing_truth="drop")
    assert set(out["user_id"]) == {"u1"}


def test_bad_ranks_and_duplicates():
    truth = _truth({"u": ["a"]})
    bad = pl.DataFrame({"user_id": ["u"], "item_id": ["a"], "rank": [0]})
    with pytest.raises(EvaluationError, match="1-based"):
        per_user_metrics(bad, truth, ["u"])
    ties = pl.DataFrame({"user_id": ["u", "u"], "item_id": ["b", "a"], "rank": [1, 1]})
    with pytest.raises(EvaluationError, match="ordinal"):
        per_user_metrics(ties, truth, ["u"])
    # a repeated item keeps its best rank and counts once: [b, a, a] -> hit at rank 2 only
    dup = pl.DataFrame({"user_id": ["u"] * 3, "item_id": ["b", "a", "a"], "rank": [1, 2, 3]})
    v = _as_dict(per_user_metrics(dup, truth, ["u"], ks=(3,)))
    assert v[("u", "recall", 3)] == 1.0
    assert v[("u", "mrr", 3)] == 0.5
    # duplicate truth rows count once: recall 1/1, not 1/2
    v = _as_dict(per_user_metrics(dup, pl.concat([truth, truth]), ["u"], ks=(3,)))
    assert v[("u", "recall", 3)] == 1.0


def _reference(recs_lists, truth_sets, k):
    """Straight Python implementation of the definitions (for a randomized cross-check)."""
    out = {}
    for u, pos in truth_sets.items():
        ranked = recs_lists.get(u, [])[:k]
        hits = [r for r, it in enumerate(ranked, start=1) if it in pos]
        dcg = sum(1 / math.log2(r + 1) for r in hits)
        idcg = sum(1 / math.log2(j + 1) for j in range(1, min(k, len(pos)) + 1))
        out[(u, "recall", k)] = len(hits) / len(pos)
        out[(u, "ndcg", k)] = dcg / idcg
        out[(u, "hitrate", k)] = float(bool(hits))
        out[(u, "mrr", k)] = 1 / hits[0] if hits else 0.0
    return out


def test_matches_reference_on_random_data():
    rng = np.random.default_rng(7)
    items = [f"i{j}" for j in range(60)]
    recs_lists, truth_sets = {}, {}
    for u in range(300):
        uid = f"u{u}"
        if u % 7:  # some users without recs
            recs_lists[uid] = list(rng.choice(items, size=int(rng.integers(1, 30)), replace=False))
        truth_sets[uid] = set(rng.choice(items, size=int(rng.integers(1, 15)), replace=False))
    out = _as_dict(per_user_metrics(_recs(recs_lists), _truth({u: sorted(s) for u, s in truth_sets.items()}),
                                    list(truth_sets), ks=(5, 20)))
    ref = {**_reference(recs_lists, truth_sets, 5), **_reference(recs_lists, truth_sets, 20)}
    assert out.keys() == ref.keys()
    for key, val in ref.items():
        assert out[key] == pytest.approx(val), key


def test_100k_users_x_100_recs():
    """Scale check (no wall-clock assertion: tests never time; see benchmarks/ for speed)."""
    nu, n_recs = 100_000, 100
    rng = np.random.default_rng(0)
    item = (np.arange(nu)[:, None] * 7 + np.arange(n_recs)[None, :]) % 50_000  # distinct per user
    recs = pl.DataFrame({
        "u": np.repeat(np.arange(nu), n_recs), "i": item.ravel(),
        "rank": np.tile(np.arange(1, n_recs + 1), nu),
    }).select(pl.format("u{}", "u").alias("user_id"), pl.format("i{}", "i").alias("item_id"), "rank")
    truth = pl.DataFrame({
        "u": np.repeat(np.arange(nu), 3), "i": rng.integers(0, 50_000, nu * 3),
    }).select(pl.format("u{}", "u").alias("user_id"), pl.format("i{}", "i").alias("item_id"))
    uid = truth["user_id"].unique(maintain_order=True)
    out = per_user_metrics(recs, truth, uid)
    assert out.height == nu * 4 * 2
    assert out.filter(pl.col("metric") == "recall")["value"].is_between(0, 1).all()


def test_candidate_recall():
    truth = _truth({"u1": ["a", "c"], "u2": ["x"]})
    cands = pl.DataFrame({"user_id": ["u1", "u1", "u1", "u9"], "item_id": ["a", "b", "a", "x"]})
    out = candidate_recall(cands, truth)
    # u1: {a, c} ∩ {a, b} = {a} -> 1/2 ; u2: no candidates -> 0 ; u9 has no truth -> absent
    assert dict(out.iter_rows()) == {"u1": 0.5, "u2": 0.0}
    out = candidate_recall(cands, truth, users=["u2", "u1"])
    assert out["user_id"].to_list() == ["u2", "u1"]
    with pytest.raises(EvaluationError, match="no truth"):
        candidate_recall(cands, truth, users=["u9"])


def test_coverage_and_slot_share():
    recs = _recs({"u1": ["a", "b", "c"], "u2": ["a", "d"]})
    # top-2 lists: u1 {a, b}, u2 {a, d} -> distinct {a, b, d} = 3 of a 10-item catalogue
    assert coverage(recs, catalog_size=10, k=2) == pytest.approx(0.3)
    # top-3 adds c -> 4/10
    assert coverage(recs, catalog_size=10, k=3) == pytest.approx(0.4)
    with pytest.raises(EvaluationError, match="catalog_size"):
        coverage(recs, catalog_size=2, k=3)

    seg = pl.DataFrame({"item_id": ["a", "b", "c", "d", "e"],
                        "segment": ["warm", "new", "new", "cold", "warming"]})
    # top-2 slots: a, b, a, d -> warm 2/4, new 1/4, cold 1/4, warming 0
    assert slot_share(recs, seg, k=2) == pytest.approx(
        {"cold": 0.25, "new": 0.25, "warm": 0.5, "warming": 0.0})
    # an item without a segment is counted as unknown: top-3 slots a, b, c, a, d (d unknown)
    share = slot_share(recs, seg.filter(pl.col("item_id") != "d"), k=3)
    assert share[UNKNOWN_SEGMENT] == pytest.approx(1 / 5)
    assert share["new"] == pytest.approx(2 / 5)
    assert sum(share.values()) == pytest.approx(1.0)


def test_restrict_truth_keeps_the_full_catalogue():
    seg = pl.DataFrame({"item_id": ["a", "b", "c"], "segment": ["warm", "warm", "new"]})
    truth = _truth({"u1": ["a", "c"], "u2": ["b"]})
    new_truth = restrict_truth(truth, seg, "new")
    assert new_truth.rows() == [("u1", "c")]  # u2 has no new-item positive
    # Ranking stays over the full catalogue: warm a, b keep slots 1-2 ahead of new item c.
    recs = _recs({"u1": ["a", "b", "c"]})
    v = _as_dict(per_user_metrics(recs, new_truth, new_truth["user_id"].unique(), ks=(2, 3)))
    assert v[("u1", "recall", 2)] == 0.0  # c is at rank 3
    assert v[("u1", "recall", 3)] == 1.0  # 1 of 1 new positive
    assert v[("u1", "mrr", 3)] == pytest.approx(1 / 3)  # rank 3, not 1 as in a cold-only ranking
    assert v[("u1", "ndcg", 3)] == pytest.approx(L2_4 / 1.0)  # DCG 1/log2(4); IDCG min(3,1)=1 -> 1


def test_lists_checked_once_score_every_cell_as_the_raw_lists_do():
    """ranked_lists (checked once, then scored against several truth cells, as the evaluation does per block)
    gives per_user_metrics' frame for the raw lists: duplicates keep their best rank, ranks past max(ks) count
    nowhere. Lists checked with a max_rank below max(ks) are refused."""
    rng = np.random.default_rng(3)
    users = [f"u{i}" for i in range(40)]
    recs = _recs({u: [f"i{j}" for j in rng.permutation(60)[:30]] for u in users})
    recs = pl.concat([recs, recs.head(25).with_columns(pl.col("rank") + 40)])  # duplicated items, worse ranks
    truth = _truth({u: [f"i{j}" for j in rng.choice(60, 1 + i % 5, replace=False)] for i, u in enumerate(users)})
    cells = [truth, truth.filter(pl.col("user_id").is_in(users[:10])), truth.filter(pl.col("item_id").str.ends_with("3"))]
    for max_rank in (20, None):
        lists = ranked_lists(recs, max_rank)
        for cell in cells:
            cell_users = cell["user_id"].unique().sort()
            assert per_user_metrics(lists, cell, cell_users, (10, 20)).equals(per_user_metrics(recs, cell, cell_users, (10, 20)))
    with pytest.raises(EvaluationError, match="max_rank=10"):
        per_user_metrics(ranked_lists(recs, 10), truth, truth["user_id"].unique(), (10, 20))
    with pytest.raises(EvaluationError, match="rank < 1"):
        ranked_lists(recs.with_columns(pl.lit(0, pl.Int64).alias("rank")), 20)
