"""Blocked serving: recommend() and top_k_items() over user blocks give exactly the one-block result.

Scale needs bounded memory (a block of users at a time, never a dense users x items frame);
these tests shrink the blocks to a few users and compare with one call over everyone.
"""

from __future__ import annotations

import pytest

from recsys_assets.lib.ranking import arms
from recsys_assets.lib.ranking.arms import new_item_ids, popularity_tiebreak, recommend, score_items, top_k_from_scores, top_k_items
from recsys_assets_tests.lib.ranking.conftest import CFG

K = 10


@pytest.mark.parametrize("arm", ["popularity", "als", "content_topic", "ranker_topic", "ranker_no_text+slots2"])
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


@pytest.mark.parametrize("arm", ["als", "content_topic", "ranker_topic"])
def test_top_k_items_in_blocks_equals_scoring_every_pair(arm, world, serve_features, models, monkeypatch):
    users = sorted(world.user_topic)
    items = new_item_ids(serve_features, ("new", "cold"))
    assert len(items) > K  # otherwise the top-k would not choose anything
    tb = popularity_tiebreak(serve_features) if arm.startswith("ranker") else None
    want = top_k_from_scores(score_items(arm, serve_features, users, items, models, CFG), K, serve_features, tb)
    monkeypatch.setattr(arms, "BLOCK_PAIRS", 3 * len(items))  # 3 users a block
    got = top_k_items(arm, serve_features, users, items, K, models, CFG, tb)
    assert got.equals(want)
    assert got.get_column("user_id").n_unique() == len(users)
