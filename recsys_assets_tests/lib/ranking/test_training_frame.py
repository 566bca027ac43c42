"""(a) The label window never touches day D; the training frame is built from the train view only."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import polars as pl
import pytest

from recsys_assets.lib.errors import LeakageError
from recsys_assets.lib.schema import EVENT_SCHEMA
from recsys_assets.lib.ranking.arms import ArmError, build_training_frame, training_labels
from recsys_assets.lib.snapshot import build_view, day_start
from recsys_assets_tests.lib.ranking.conftest import CFG, INTER
from recsys_assets_tests.lib.ranking.world import D, PCFG, TOPIC


def _event(eid: str, user: str, item: str, ts: datetime) -> pl.DataFrame:
    return pl.DataFrame(
        {"event_id": [eid], "user_id": [user], "item_id": [item], "event_type": ["click"], "value": [1.0], "ts": [ts]},
        schema=EVENT_SCHEMA,
    )


def _unseen_warm_item(world, train_features, user: str) -> str:
    seen = set(world.events.filter(pl.col("user_id") == user).get_column("item_id").to_list())
    warm = train_features.view.item_stats.filter(pl.col("item_segment") == "warm").sort("item_id").get_column("item_id").to_list()
    return next(i for i in warm if i not in seen)


def test_day_d_event_changes_neither_labels_nor_training_frame(world, lake_world, train_features, labels):
    user = labels.get_column("user_id").sort()[0]
    item = _unseen_warm_item(world, train_features, user)
    noon_d = day_start(D) + timedelta(hours=12)
    planted = pl.concat([world.events, _event("plant-d", user, item, noon_d), _event("plant-new", "ghost-user", item, noon_d)])

    # the pipeline refuses day-D events as model inputs
    with pytest.raises(LeakageError):
        build_view(planted, world.items, D, "temporal", "train", PCFG)

    planted_labels = training_labels(train_features.view, planted, INTER)
    assert planted_labels.equals(labels)
    assert planted_labels.filter((pl.col("user_id") == user) & (pl.col("item_id") == item)).height == 0
    assert "ghost-user" not in planted_labels.get_column("user_id").to_list()

    # The train view rebuilt from the planted log (day D cut off), over the lake's models of that view.
    before_d = planted.filter(pl.col("ts") < day_start(D))
    tf2 = replace(train_features, view=build_view(before_d, lake_world.items, D, "temporal", "train", PCFG), _cache={})
    f1, s1 = build_training_frame(train_features, labels, f"ranker_{TOPIC}", CFG)
    f2, s2 = build_training_frame(tf2, planted_labels, f"ranker_{TOPIC}", CFG)
    assert f1.equals(f2)
    assert s1 == s2
    assert "ghost-user" not in f2.get_column("user_id").to_list()


def test_label_window_is_d_minus_w_to_d(world, train_features, labels):
    """The same planted pair one day earlier (inside [D-w, D)) IS a label: the test above can fail."""
    user = labels.get_column("user_id").sort()[0]
    item = _unseen_warm_item(world, train_features, user)
    planted = pl.concat([world.events, _event("plant-d-1", user, item, day_start(D) - timedelta(hours=1))])
    got = training_labels(train_features.view, planted, INTER)
    assert got.filter((pl.col("user_id") == user) & (pl.col("item_id") == item)).height == 1
    # model inputs of the train view stop at D - w; labels are events of [D - w, D) only
    assert train_features.view.history.get_column("ts").max() < day_start(train_features.view.cutoff)
    window = world.events.filter(pl.col("ts").is_between(day_start(train_features.view.cutoff), day_start(D), closed="left"))
    assert labels.join(window.select("user_id", "item_id"), on=["user_id", "item_id"], how="anti").height == 0


def test_training_frame_labels_and_recall(train_features, labels):
    frame, stats = build_training_frame(train_features, labels, "ranker_no_text", CFG)
    assert frame.get_column("label").sum() == stats["n_positive_rows"] > 0
    in_pool = labels.join(frame.select("user_id", "item_id"), on=["user_id", "item_id"], how="semi").height
    assert stats["candidate_recall"] == pytest.approx(in_pool / labels.height)
    assert 0 < stats["candidate_recall"] < 1
    # new items of the train view keep their label-window labels (they are what the ranker learns from)
    new_items = train_features.view.item_stats.filter(pl.col("item_segment") == "new").select("item_id")
    assert frame.filter(pl.col("label") == 1).join(new_items, on="item_id", how="semi").height > 0


def test_training_needs_train_view(serve_features, labels):
    with pytest.raises(ArmError):
        build_training_frame(serve_features, labels, "ranker_no_text", CFG)
    with pytest.raises(ArmError):
        build_training_frame(serve_features, labels, "als", CFG)
