from __future__ import annotations

import polars as pl
import pytest

from recsys_assets.lib.interactions import InteractionConfig, positives
from recsys_assets.lib.ranking.arms import build_training_frame, parse_arm, ranker_arm_names, training_labels
from recsys_assets.lib.ranking.config import RankingConfig
from recsys_assets.lib.ranking.features import feature_names
from recsys_assets.lib.ranking.ranker import train_ranker
from recsys_assets.lib.snapshot import day_start
from recsys_assets_tests.lib.ranking.world import D, NOISE, TOPIC, land_world, make_world, snapshot_features

CFG = RankingConfig(encoders=(TOPIC, NOISE), num_threads=1, num_boost_round=150, validation="hash", prior_profile_new=0.0)
INTER = InteractionConfig()


@pytest.fixture(scope="package")
def world():
    return make_world(seed=0)


@pytest.fixture(scope="package")
def lake_world(world, tmp_path_factory):
    """The world landed in a lake, ingested, and day D's feature assets materialized (once per test run)."""
    return land_world(world, tmp_path_factory.mktemp("ranking_world") / "lake")


@pytest.fixture(scope="package")
def train_features(world, lake_world):
    return snapshot_features(lake_world, world, "train")


@pytest.fixture(scope="package")
def serve_features(world, lake_world):
    return snapshot_features(lake_world, world, "serve")


@pytest.fixture(scope="package")
def labels(world, train_features):
    return training_labels(train_features.view, world.events, INTER)


@pytest.fixture(scope="package")
def models(train_features, labels):
    out = {}
    for arm in ranker_arm_names(CFG):
        frame, _ = build_training_frame(train_features, labels, arm, CFG)
        out[arm] = train_ranker(frame, feature_names(parse_arm(arm).encoder), CFG, arm=arm)
    return out


@pytest.fixture(scope="package")
def truth(world, serve_features):
    day = world.events.filter(pl.col("ts") >= day_start(D))
    return positives(day, INTER).join(serve_features.view.seen, on=["user_id", "item_id"], how="anti")
