"""Serve-like ranker examples (lib/ranking/examples.py) and multi-night training (ranker.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import polars as pl
import pytest

from recsys_assets.lib.ranking.arms import build_training_frame, ranker_arm_names
from recsys_assets.lib.ranking.examples import (
    SNAPSHOT_COL,
    ExamplesError,
    audit_examples,
    next_day_labels,
    night_examples,
    training_frame_from_nights,
)
from recsys_assets.lib.ranking.features import feature_names
from recsys_assets.lib.ranking.ranker import prepare_lgb_data, train_ranker
from recsys_assets.lib.snapshot import day_start
from recsys_assets_tests.lib.ranking.conftest import CFG, INTER
from recsys_assets_tests.lib.ranking.world import D, TOPIC, TOPIC_COS


@pytest.fixture(scope="module")
def night(world, train_features):
    labels = next_day_labels(train_features.view, world.events, INTER)
    frame, stats = night_examples(train_features, labels, CFG)
    return frame, stats, labels


def test_labels_are_the_day_after_the_snapshot_only(world, train_features):
    view = train_features.view
    labels = next_day_labels(view, world.events, INTER)
    assert labels.height > 0
    first = world.events.join(labels, on=["user_id", "item_id"], how="semi").group_by("user_id", "item_id").agg(pl.col("ts").min())
    got = labels.join(first, on=["user_id", "item_id"])
    assert got["ts"].min() >= day_start(view.cutoff) and got["ts"].max() < day_start(view.cutoff + timedelta(days=1))
    # Day D (the truth) never reaches a label, even when the caller passes it.
    assert labels.join(world.events.filter(pl.col("ts") >= day_start(D)), on=["user_id", "item_id"], how="semi").join(
        world.events.filter(pl.col("ts") < day_start(D)), on=["user_id", "item_id"], how="anti"
    ).height == 0


def test_night_examples_match_the_per_arm_training_frame(train_features, night):
    """One union pool with every arm's features gives exactly each arm's own candidates and features, for
    the labelled users with a positive among them; the users left out have none in any arm's candidates."""
    frame, stats, labels = night
    assert frame[SNAPSHOT_COL].unique().to_list() == [train_features.view.cutoff]
    assert stats["n_users"] == labels["user_id"].n_unique() and stats["n_positive_rows"] > 0
    kept = frame.select("user_id").unique()
    assert kept.height == stats["n_users"] - stats["users_without_positive_candidates"] and 0 < kept.height < stats["n_users"]
    assert stats["n_rows"] < stats["n_candidate_rows"]
    for arm in ranker_arm_names(CFG):
        mine, _ = training_frame_from_nights([frame], arm, CFG)
        ref, _ = build_training_frame(train_features, labels, arm, CFG)
        cols = ["user_id", "item_id", "label", *feature_names(arm.removeprefix("ranker_") if arm != "ranker_no_text" else None)]
        a = mine.select(cols).sort("user_id", "item_id")
        b = ref.select(cols).with_columns(pl.col("label").cast(a["label"].dtype)).sort("user_id", "item_id")
        assert a.equals(b.join(kept, on="user_id", how="semi", maintain_order="left")), arm
        assert b.join(kept, on="user_id", how="anti").get_column("label").sum() == 0, arm


def test_night_examples_refuse_a_serve_view(world, serve_features):
    with pytest.raises(ExamplesError, match="'train' view"):
        night_examples(serve_features, next_day_labels(serve_features.view, world.events, INTER), CFG)


def test_audit_catches_a_snapshot_at_or_after_the_day(night):
    frame = night[0]
    snap = frame[SNAPSHOT_COL][0]
    assert audit_examples([frame], snap + timedelta(days=1)) == []
    assert "train day" in audit_examples([frame], snap)[0]


def test_two_nights_are_two_queries_and_the_last_night_validates(night):
    frame = night[0]
    older = frame.with_columns(pl.col(SNAPSHOT_COL) - timedelta(days=1))
    two, st = training_frame_from_nights([older, frame], "ranker_no_text", CFG)
    assert st["nights"] == 2 and st["n_users"] == 2 * frame.filter(pl.col("source_als") + pl.col("source_popular") + pl.col("source_new") > 0)["user_id"].n_unique()
    fn = feature_names(None)
    cfg = replace(CFG, min_valid_users=1, validation="last_night")
    data = prepare_lgb_data(two, fn, cfg)
    assert data.stats["validation"] == "last_night"
    assert data.stats["n_valid_users"] == data.stats["n_train_users"]  # the same users, one night each
    # One night only: nothing to hold out by night, so no validation (fixed rounds).
    assert prepare_lgb_data(training_frame_from_nights([frame], "ranker_no_text", CFG)[0], fn, cfg).stats["validation"] == "none"
    model = train_ranker(two, fn, cfg, arm="ranker_no_text")
    assert model.meta["refit_on_all"] and model.booster.current_iteration() == model.best_iteration
    assert model.meta["n_train_users"] + model.meta["n_valid_users"] == data.stats["n_train_users"] + data.stats["n_valid_users"]


def test_missing_arm_columns_are_named(night):
    frame = night[0].drop(TOPIC_COS)
    with pytest.raises(ExamplesError, match=TOPIC_COS):
        training_frame_from_nights([frame], f"ranker_{TOPIC}", CFG)
