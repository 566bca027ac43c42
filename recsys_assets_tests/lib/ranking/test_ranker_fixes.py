"""The fixes of docs/ranker.md: comparable popularity features, monotone order features, ties, graded labels."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import numpy as np
import polars as pl
import pytest

from recsys_assets.lib.ranking.arms import build_training_frame, popularity_tiebreak, top_k_from_scores, training_labels
from recsys_assets.lib.ranking.config import RankingConfig, RankingConfigError
from recsys_assets.lib.ranking.features import FEATURES_NO_TEXT, feature_names, ranker_features, text_feature_names
from recsys_assets.lib.ranking.ranker import prior_scores, train_ranker
from recsys_assets.lib.snapshot import day_start
from recsys_assets_tests.lib.ranking.conftest import CFG, INTER


def test_no_raw_counts_among_features():
    assert not {"pop_recent_log", "pop_all_log"} & set(FEATURES_NO_TEXT)
    assert {"pop_rank_log", "pop_pct", "recent_share", "all_share"} <= set(FEATURES_NO_TEXT)


def test_popularity_features_are_places_and_shares(serve_features, train_features):
    for feats in (serve_features, train_features):
        order = feats.popularity_order
        top, tenth = feats.item_ids[order[0]], feats.item_ids[order[9]]
        cands = pl.DataFrame({"user_id": ["u0000", "u0000"], "item_id": [top, tenth]})
        f = ranker_features(feats, cands, None)
        # The most popular item is at place 0 at every snapshot, whatever the traffic; the tenth at
        # its place in the list (9) unless it ties with items before it (then the first tied one's).
        ahead = int((feats.popularity_score > feats.popularity_score[order[9]]).sum())
        assert ahead <= 9
        assert f["pop_rank_log"].to_list() == pytest.approx([0.0, float(np.log1p(ahead))])
        assert f["pop_pct"][0] == pytest.approx(1.0)
        n_recent = feats.item_array("n_recent")
        assert f["recent_share"][0] == pytest.approx(1000.0 * n_recent[order[0]] / n_recent.sum(), rel=1e-5)


def test_lgb_params_constrain_only_the_order_features():
    names = ["als_score", "user_hist_len", "pop_rank_log", "pop_pct", "als_rank"]
    assert RankingConfig().lgb_params(names)["monotone_constraints"] == [1, 0, -1, 1, -1]
    assert "monotone_constraints" not in RankingConfig(monotone=()).lgb_params(names)
    assert "monotone_constraints" not in RankingConfig().lgb_params()
    with pytest.raises(RankingConfigError):
        RankingConfig(monotone=(("als_score", 2),))


def test_monotone_text_constrains_the_similarity_features_of_any_encoder():
    names = [*FEATURES_NO_TEXT, *feature_names("tfidf"), *text_feature_names("minilm-l6")]
    names = list(dict.fromkeys(names))
    off = dict(zip(names, RankingConfig(monotone_text=False).lgb_params(names)["monotone_constraints"]))
    on = dict(zip(names, RankingConfig().lgb_params(names)["monotone_constraints"]))  # the default
    changed = {f: (off[f], on[f]) for f in names if off[f] != on[f]}
    assert changed == {f: (0, 1) for f in ("text_cos_tfidf", "c2cf_score_tfidf", "text_cos_minilm_l6", "c2cf_score_minilm_l6")}


def _bump_frame(seed: int = 0) -> pl.DataFrame:
    """Labels that peak at mid popularity places: an unconstrained ranker learns the bump."""
    rng = np.random.default_rng(seed)
    n_users, n_items = 200, 30
    x = rng.uniform(0.0, 6.0, n_users * n_items).astype(np.float32)
    cols = {f: rng.normal(size=n_users * n_items).astype(np.float32) for f in FEATURES_NO_TEXT}
    cols["pop_rank_log"] = x
    label = ((x > 2.0) & (x < 3.0) & (rng.random(x.size) < 0.8)).astype(np.int8)
    return pl.DataFrame({"user_id": np.repeat([f"u{i:03d}" for i in range(n_users)], n_items), **cols, "label": label})


def _curve(model, frame: pl.DataFrame) -> np.ndarray:
    row = frame.row(0, named=True)
    grid = np.linspace(0.0, 6.0, 61)
    return model.predict(pl.DataFrame([{**row, "pop_rank_log": float(g)} for g in grid]).with_columns(pl.col("pop_rank_log").cast(pl.Float32)))


def test_trained_ranker_is_monotone_in_the_popularity_place():
    frame = _bump_frame()
    constrained = _curve(train_ranker(frame, FEATURES_NO_TEXT, CFG), frame)
    assert np.all(np.diff(constrained) <= 1e-9), constrained
    free = _curve(train_ranker(frame, FEATURES_NO_TEXT, replace(CFG, monotone=())), frame)
    assert np.any(np.diff(free) > 1e-6)  # the same data without the constraint learns the bump


def test_ranker_ties_go_to_the_more_popular_item(serve_features):
    order = serve_features.popularity_order
    items = [serve_features.item_ids[j] for j in order[:30]][::-1]  # least popular first
    scores = pl.DataFrame({"user_id": ["u"] * 30, "item_id": items, "score": [1.0] * 30})
    recs = top_k_from_scores(scores, 10, serve_features, popularity_tiebreak(serve_features))
    assert recs["item_id"].to_list() == [serve_features.item_ids[j] for j in order[:10]]


def test_graded_labels_weigh_the_first_days(world, train_features):
    plain = training_labels(train_features.view, world.events, INTER)
    graded = training_labels(train_features.view, world.events, INTER, (1, 3))
    assert graded.select("user_id", "item_id").sort("user_id", "item_id").equals(plain.sort("user_id", "item_id"))
    start = day_start(train_features.view.cutoff)
    first = world.events.filter((pl.col("ts") >= start) & (pl.col("ts") < day_start(train_features.view.day)))
    first = first.group_by("user_id", "item_id").agg(pl.col("ts").min())
    g = graded.join(first, on=["user_id", "item_id"])
    assert set(g.filter(pl.col("ts") < start + timedelta(days=1))["grade"].to_list()) == {3}
    assert set(g.filter((pl.col("ts") >= start + timedelta(days=1)) & (pl.col("ts") < start + timedelta(days=3)))["grade"].to_list()) == {2}
    assert set(g.filter(pl.col("ts") >= start + timedelta(days=3))["grade"].to_list()) == {1}
    frame, _ = build_training_frame(train_features, graded, "ranker_no_text", CFG)
    assert set(frame["label"].unique().to_list()) <= {0, 1, 2, 3} and frame["label"].max() == 3


def test_tied_and_never_seen_items_share_one_popularity_place(serve_features):
    """The popularity list's hashed tie-break is no feature and no prior: items tied on popularity share
    the place of the first of them, every never-seen item the place right after the last seen one."""
    feats = serve_features
    cands = pl.DataFrame({"user_id": "u0000", "item_id": feats.item_ids})
    f = ranker_features(feats, cands, None)
    place = np.expm1(f["pop_rank_log"].cast(pl.Float64).to_numpy())
    score = feats.popularity_score
    never = feats.item_array("n_interactions") == 0
    n_seen = int((~never).sum())
    assert never.sum() >= 2 and n_seen >= 2, "the world needs never-seen and seen items for this test"
    np.testing.assert_allclose(place[never], n_seen, rtol=1e-5)
    assert np.unique(f["pop_pct"].to_numpy()[never]).size == 1
    prior = prior_scores(f, {"kind": "popularity", "scale": 1.0})
    assert np.unique(prior[never]).size == 1
    # more popular = a strictly better place; equally popular = the same place (never by hash)
    i, j = np.triu_indices(len(score), 1)
    tie = score[i] == score[j]
    np.testing.assert_allclose(place[i][tie], place[j][tie], rtol=1e-5)
    better = score[i] > score[j]
    assert np.all(place[i][better] < place[j][better]) and np.all(place[j][score[j] > score[i]] < place[i][score[j] > score[i]])
    # the most popular item stays at place 0, and the popularity arm's own order is unchanged
    assert place[feats.popularity_order[0]] == 0.0
    assert np.all(np.diff(place[feats.popularity_order]) >= 0)
