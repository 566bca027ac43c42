"""Blocked serving: recommend() and top_k_items_arms() over user blocks give exactly the one-block result.

Scale needs bounded memory (a block of users at a time, never a dense users x items frame);
these tests shrink the blocks to a few users and compare with one call over everyone.
"""

from __future__ import annotations

import pytest

from recsys_assets.lib.ranking import arms
from recsys_assets.lib.ranking.arms import new_item_ids, popularity_tiebreak, recommend, score_items, top_k_from_scores, top_k_items_arms
from recsys_assets_tests.lib.ranking.conftest import CFG
from recsys_assets_tests.lib.ranking.world import NOISE, TOPIC

K = 10


@pytest.mark.parametrize("arm", ["popularity", "als", f"content_{TOPIC}", f"ranker_{TOPIC}", "ranker_no_text+slots2"])
def test_recommend_in_blocks_equals_one_call(arm, world, serve_features, models, monkeypatch):
    users = sorted(world.user_topic) + ["never-seen-user"]
    whole, stats = recommend(arm, serve_features, users, K, models, CFG)
    monkeypatch.setattr(arms, "BLOCK_USERS", 7)
    blocked, bstats = recommend(arm, serve_features, users, K, models, CFG)
    assert blocked.equals(whole)
    for key in ("n_users", "fallback_users", "padded_users", "short_users", "n_rows", "n_candidates", "candidates_per_user_min"):
        assert bstats.get(key) == stats.get(key), key
    if "candidates_per_user_mean" in stats:
        assert bstats["candidates_per_user_mean"] == pytest.approx(stats["candidates_per_user_mean"])


@pytest.mark.parametrize("arm", ["als", f"content_{TOPIC}", f"ranker_{TOPIC}"])
def test_top_k_items_in_blocks_equals_scoring_every_pair(arm, world, serve_features, models, monkeypatch):
    users = sorted(world.user_topic)
    items = new_item_ids(serve_features, ("new", "cold"))
    assert len(items) > K  # otherwise the top-k would not choose anything
    tb = popularity_tiebreak(serve_features) if arm.startswith("ranker") else None
    want = top_k_from_scores(score_items(arm, serve_features, users, items, models, CFG), K, serve_features, tb)
    monkeypatch.setattr(arms, "BLOCK_PAIRS", 3 * len(items))  # 3 users a block
    got = top_k_items_arms({arm: tb}, serve_features, users, items, K, models, CFG)[arm]
    assert got.equals(want)
    assert got.get_column("user_id").n_unique() == len(users)


ALL_ARMS = ["popularity", "als", f"content_{TOPIC}", f"content_{NOISE}", "ranker_no_text", f"ranker_{TOPIC}", f"ranker_{NOISE}", f"ranker_{TOPIC}+slots2"]


def _pool_alone(arm, features, users, models):
    """A ranker arm's scored candidates computed from its own sources only (what serving did before sharing)."""
    from recsys_assets.lib.ranking.candidates import arm_sources, generate_candidates
    from recsys_assets.lib.ranking.features import ranker_features

    spec = arms.parse_arm(arm)
    cands = generate_candidates(features, users, arm_sources(spec.base), CFG)
    feats = ranker_features(features, cands, spec.encoder)
    return feats.select("user_id", "item_id").with_columns(score=models[spec.base].predict(feats))


def test_shared_ranker_pools_equal_each_arm_alone(world, serve_features, models):
    """One candidate/feature frame for all ranker arms: each arm's rows, features and scores are exactly
    those of its own candidates (the text arms add candidates the others must not see)."""
    users = sorted(world.user_topic) + ["never-seen-user"]
    specs = [arms.parse_arm(a) for a in ("ranker_no_text", f"ranker_{TOPIC}", f"ranker_{NOISE}")]
    pools = arms._ranker_pools(specs, serve_features, users, models, CFG)
    sizes = set()
    for spec in specs:
        got, stats = pools[spec.base]
        assert got.equals(_pool_alone(spec.name, serve_features, users, models))
        assert stats["n_candidates"] == got.height
        sizes.add(got.height)
    assert len(sizes) > 1  # the arms' pools really differ, so the rows are filtered per arm


@pytest.mark.parametrize("threads", [1, 3])
def test_all_arms_at_once_equal_one_call_per_arm(threads, world, serve_features, models, monkeypatch):
    """... in blocks of users, served one block at a time or ``threads`` blocks side by side (``parallel.map_in_order``)."""
    users = sorted(world.user_topic) + ["never-seen-user"]
    monkeypatch.setattr(arms, "BLOCK_USERS", 11)
    together = arms.recommend_arms(ALL_ARMS, serve_features, users, K, models, CFG, threads=threads)
    items = new_item_ids(serve_features, ("new", "cold"))
    tbs = {a: popularity_tiebreak(serve_features) if a.startswith("ranker") else None for a in ALL_ARMS}
    monkeypatch.setattr(arms, "BLOCK_PAIRS", 5 * len(items))
    cold = arms.top_k_items_arms(tbs, serve_features, users, items, K, models, CFG, threads=threads)
    assert len(users) > 3 * 11  # several blocks, so the threads really share the work
    for arm in ALL_ARMS:
        alone, stats = recommend(arm, serve_features, users, K, models, CFG)
        assert together[arm][0].equals(alone), arm
        assert together[arm][1] == stats, arm
        want = top_k_from_scores(score_items(arm, serve_features, users, items, models, CFG), K, serve_features, tbs[arm])
        assert cold[arm].equals(want), arm


def test_scores_with_rankers_equal_each_arm_alone(world, serve_features, models):
    """With ranker arms beside them, the ALS and content arms read their scores from the shared ranker features
    (``als_score``, ``text_cos_<enc>``: the same dot products); the score bytes are those of each arm alone."""
    users = sorted(world.user_topic)[:25] + ["never-seen-user"]
    items = new_item_ids(serve_features, ("new", "cold")) + serve_features.item_ids[:7]
    together = arms.score_items_arms(ALL_ARMS, serve_features, users, items, models, CFG)
    for arm in ("als", f"content_{TOPIC}"):
        alone = score_items(arm, serve_features, users, items, models, CFG)
        assert together[arm].equals(alone), arm
        assert together[arm].get_column("score").to_numpy().tobytes() == alone.get_column("score").to_numpy().tobytes(), arm
        assert alone.get_column("score").is_finite().any(), arm  # not vacuous: some pairs are scored
