"""The fixes of docs/ranker.md: comparable popularity features, monotone order features, ties, graded labels."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import polars as pl
import pytest

from recsys_assets.lib.ranking.arms import build_training_frame, popularity_tiebreak, top_k_from_scores, training_labels
from recsys_assets.lib.ranking.config import RankingConfig, RankingConfigError
from recsys_assets.lib.ranking.features import FEATURES_NO_TEXT, ranker_features
from recsys_assets.lib.ranking.ranker import train_ranker
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
        # The most popular item is at place 0 at every snapshot, whatever the traffic.
        assert f["pop_rank_log"].to_list() == pytest.approx([0.0, float(np.log1p(9))])
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


def test_trained_ranker_is_monotone_in_the_popularity_place(train_features, labels):
    frame, _ = build_training_frame(train_features, labels, "ranker_no_text", CFG)
    model = train_ranker(frame, FEATURES_NO_TEXT, CFG, arm="ranker_no_text")
    grid = np.linspace(0.0, 6.0, 25, dtype=np.float32)
    for row in frame.head(20).iter_rows(named=True):
        probe = pl.DataFrame([{**row, "pop_rank_log": float(g)} for g in grid]).with_columns(pl.col("pop_rank_log").cast(pl.Float32))
        scores = model.predict(probe)
        assert np.all(np.diff(scores) <= 1e-9), scores


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
