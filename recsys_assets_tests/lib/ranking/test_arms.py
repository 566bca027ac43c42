"""(b) Every arm serves K items to every user, brand-new users included; explicit fallbacks."""

from __future__ import annotations

import polars as pl
import pytest

from recsys_assets.lib.ranking.arms import (
    ArmError,
    arm_names,
    new_item_ids,
    parse_arm,
    recommend,
    reserve_new_slots,
    score_items,
    top_k_from_scores,
)
from recsys_assets.lib.ranking.config import RankingConfig
from recsys_assets_tests.lib.ranking.conftest import CFG
from recsys_assets_tests.lib.ranking.world import NOISE, TOPIC

K = 20


def test_arm_names_and_parsing():
    cfg = RankingConfig(encoders=("minilm-l6", "tfidf"), new_item_slots=2)
    names = arm_names(cfg)
    assert names[:7] == ["popularity", "als", "content_minilm-l6", "content_tfidf", "ranker_no_text", "ranker_minilm-l6", "ranker_tfidf"]
    assert "ranker_no_text+slots2" in names and "ranker_minilm-l6+slots2" in names
    spec = parse_arm("ranker_minilm-l6+slots2")
    assert (spec.base, spec.kind, spec.encoder, spec.slots) == ("ranker_minilm-l6", "ranker", "minilm-l6", 2)
    with pytest.raises(ArmError):
        parse_arm("bogus")


@pytest.mark.parametrize(
    "arm",
    ["popularity", "als", f"content_{TOPIC}", f"content_{NOISE}", "ranker_no_text", f"ranker_{TOPIC}", f"ranker_{NOISE}", f"ranker_{TOPIC}+slots3", "als+slots2"],
)
def test_every_user_gets_k_items(arm, world, serve_features, models):
    users = sorted(world.user_topic) + ["never-seen-user"]
    recs, stats = recommend(arm, serve_features, users, K, models, CFG)
    assert set(recs.get_column("user_id").unique().to_list()) == set(users)
    per_user = recs.group_by("user_id").agg(pl.len(), pl.col("rank").min().alias("lo"), pl.col("rank").max().alias("hi"), pl.col("item_id").n_unique().alias("u"))
    assert (per_user.get_column("len") == K).all() and (per_user.get_column("u") == K).all()
    assert (per_user.get_column("lo") == 1).all() and (per_user.get_column("hi") == K).all()
    assert recs.join(serve_features.view.seen, on=["user_id", "item_id"], how="semi").height == 0
    assert set(recs.get_column("item_id").to_list()) <= set(serve_features.item_ids)
    assert stats["n_users"] == len(users) and stats["short_users"] == 0
    n_unscorable = len(world.new_users) + 1  # no history -> no factors
    if arm.startswith("als") or arm == f"content_{NOISE}":
        assert stats["fallback_users"] == n_unscorable
    elif arm.startswith(f"content_{TOPIC}"):
        assert stats["fallback_users"] == n_unscorable - len(world.profile_vectors[TOPIC][0])
    else:
        assert stats["fallback_users"] == 0
    if "+slots" in arm:
        n = parse_arm(arm).slots
        new = set(new_item_ids(serve_features))
        got = recs.with_columns(pl.col("item_id").is_in(list(new)).alias("new")).group_by("user_id").agg(pl.col("new").sum())
        assert got.get_column("new").min() >= n


def test_k_larger_than_catalog_is_short_not_dropped(serve_features, models):
    big = len(serve_features.item_ids) + 5
    recs, stats = recommend("popularity", serve_features, ["never-seen-user"], big, models, CFG)
    assert recs.height == len(serve_features.item_ids)
    assert stats["short_users"] == 1


def test_score_items_cold_only(world, serve_features, models):
    users = sorted(world.user_topic)[:30]
    new = new_item_ids(serve_features)
    seen_pairs = serve_features.view.seen.filter(pl.col("user_id").is_in(users) & pl.col("item_id").is_in(new)).height
    for arm in ("popularity", "als", f"content_{TOPIC}", f"ranker_{TOPIC}", "ranker_no_text"):
        s = score_items(arm, serve_features, users, new, models, CFG)
        assert s.height == len(users) * len(new) - seen_pairs
        a = top_k_from_scores(s, 5, serve_features)
        b = top_k_from_scores(s.sample(fraction=1.0, shuffle=True, seed=3), 5, serve_features)
        assert a.sort("user_id", "rank").equals(b.sort("user_id", "rank"))  # ties broken by hashed id, not input order
    als = score_items("als", serve_features, users, new, models, CFG)
    assert (als.get_column("score") == float("-inf")).all()  # ALS cannot score new items: all tie


def test_reserve_new_slots_replaces_lowest_non_new():
    recs = pl.DataFrame({"user_id": ["u"] * 4, "item_id": ["a", "b", "n1", "c"], "rank": [1, 2, 3, 4], "score": [4.0, 3.0, 2.0, 1.0]})
    stats = pl.DataFrame({"item_id": ["a", "b", "c", "n1", "n2", "n3"], "item_segment": ["warm"] * 3 + ["new"] * 3})
    scores = pl.DataFrame({"user_id": ["u"] * 3, "item_id": ["n1", "n2", "n3"], "score": [2.0, 0.5, 0.7]})
    out = reserve_new_slots(recs, scores, stats, 2)
    assert out.get_column("item_id").to_list() == ["a", "b", "n1", "n3"]
    assert out.get_column("rank").to_list() == [1, 2, 3, 4]
    out3 = reserve_new_slots(recs, scores, stats, 3)
    assert out3.get_column("item_id").to_list() == ["a", "n1", "n3", "n2"]
    assert reserve_new_slots(recs, scores, stats, 1).equals(recs)  # already holds one new item


def _sorted_top_k(scores: pl.DataFrame, k: int, tiebreak: pl.DataFrame) -> pl.DataFrame:
    """The former ``top_k_from_scores`` (before scale8): every row sorted by (user, score, tiebreak), ranked, cut at k."""
    s = scores.select("user_id", "item_id", pl.col("score").cast(pl.Float64).fill_nan(None)).join(tiebreak, on="item_id", how="left")
    s = s.sort(["user_id", "score", "tiebreak"], descending=[False, True, False], nulls_last=True)
    s = s.with_columns(rank=pl.int_range(1, pl.len() + 1).over("user_id").cast(pl.Int64)).filter(pl.col("rank") <= k)
    return s.select("user_id", "item_id", "rank", pl.col("score").fill_null(float("-inf")))


@pytest.mark.parametrize("decimals", [1, 0])
@pytest.mark.parametrize("k", [1, 3, 8, 50])
def test_top_k_from_scores_is_the_full_sort(k, decimals):
    """``top_k_from_scores`` sorts only the rows at or above each user's k-th score, and of those tied at it
    the k lowest tiebreaks: the same frame as sorting every row, with many tied scores (the ranker's; with
    ``decimals`` 0 most of a user's rows tie, as the cold scope's popularity and ALS scores do), NaN, null
    and -inf scores, users with fewer than k rows, rows in no order."""
    import numpy as np

    rng = np.random.default_rng(11)
    n_items, n = 40, 4_000
    users = rng.integers(0, 300, n)
    users[:30] = 999  # one user with 30 rows, others with few (some fewer than k)
    items = rng.integers(0, n_items, n)
    score = np.round(rng.normal(size=n), decimals)  # coarse: many ties
    score[rng.random(n) < 0.05] = np.nan
    score[rng.random(n) < 0.05] = -np.inf
    scores = pl.DataFrame({"user_id": [f"u{u:03d}" for u in users], "item_id": [f"i{i:02d}" for i in items], "score": score})
    scores = scores.unique(["user_id", "item_id"], keep="first", maintain_order=True)
    scores = scores.with_columns(pl.when(pl.int_range(pl.len()) % 17 == 0).then(None).otherwise(pl.col("score")).alias("score"))
    unscored = pl.DataFrame({"user_id": ["u998"] * 3, "item_id": ["i01", "i02", "i03"], "score": [None, float("nan"), float("-inf")]})
    scores = pl.concat([scores, unscored.cast(scores.schema)]).sample(fraction=1.0, shuffle=True, seed=5)
    tiebreak = pl.DataFrame({"item_id": [f"i{i:02d}" for i in range(n_items)], "tiebreak": rng.permutation(n_items).astype(np.uint64)})
    got = top_k_from_scores(scores, k, None, tiebreak)
    want = _sorted_top_k(scores, k, tiebreak)
    assert got.equals(want) and got.height == want.height > 0
    assert got.get_column("score").is_nan().sum() == 0 and (got.get_column("score") == float("-inf")).any()
