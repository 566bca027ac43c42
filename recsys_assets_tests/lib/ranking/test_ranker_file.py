"""``train_ranker`` on the stored frame (a Parquet file) is ``train_ranker`` on the frame, bit for bit.

The nightly ``rankers`` step streams each arm's Parquet file to LightGBM as row-group sequences
(14 nights of a 10M-event world do not fit as one frame). LightGBM draws its binning sample from
at most ``bin_construct_sample_cnt`` (200,000) rows, and the sequence path draws it in Python with
the Dataset's own seed, so the worlds here are above that size: that is where the two paths could
part (``ranker.lgb_data_seed``).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import lightgbm as lgb
import numpy as np
import polars as pl
import pytest
from upath import UPath

from recsys_assets.lib.lake import BlockParquetWriter
from recsys_assets.lib.ranking.config import RankingConfig
from recsys_assets.lib.ranking.ranker import RankerError, lgb_data_seed, new_user_rows, prepare_lgb_data, train_ranker

FEATURES = ["pop_rank_log", "als_score", "text_cos_x", "user_is_new", "profile_lift", "last_cooc"]
ROWS_PER_QUERY = 40


def _frame(n_queries: int, seed: int = 0) -> pl.DataFrame:
    """Two nights of queries (snapshot, user) sorted by keys; about one query in four has no positive."""
    rng = np.random.default_rng(seed)
    n = n_queries * ROWS_PER_QUERY
    q = np.repeat(np.arange(n_queries), ROWS_PER_QUERY)
    pop = rng.gamma(2.0, 1.5, n).astype(np.float32)
    als = rng.normal(size=n).astype(np.float32)
    cos = rng.uniform(-1, 1, n).astype(np.float32)
    score = -0.8 * pop + 1.2 * als + 0.7 * cos + rng.normal(scale=1.0, size=n)
    label = (score > np.quantile(score, 0.9)).astype(np.int8)
    label[(q % 4 == 3)] = 0
    frame = pl.DataFrame(
        {
            "snapshot": pl.Series([date(2024, 1, 1), date(2024, 1, 2)])[(q >= n_queries // 2).astype(np.int64)],
            "user_id": [f"u{i:06d}" for i in q % (n_queries // 2)],
            "item_id": [f"i{i:05d}" for i in rng.integers(0, 90_000, n)],
            "label": label,
            "pop_rank_log": pop,
            "als_score": als,
            "text_cos_x": np.where(rng.uniform(size=n) < 0.1, np.nan, cos).astype(np.float32),
            "user_is_new": np.repeat((np.arange(n_queries) % 5 == 0).astype(np.float32), ROWS_PER_QUERY),
            "profile_lift": rng.uniform(0, 2, n).astype(np.float32),
            "last_cooc": rng.uniform(0, 0.3, n).astype(np.float32),
        }
    )
    return frame.sort("snapshot", "user_id", "item_id")


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> tuple[pl.DataFrame, UPath]:
    frame = _frame(9_000)  # 360,000 rows, 265,520 in queries with a positive: above LightGBM's 200,000-row binning sample
    path = UPath(tmp_path_factory.mktemp("ranker_file")) / "arm.parquet"
    with BlockParquetWriter(path, row_group_rows=50_000) as out:
        for start in range(0, frame.height, 70_000):
            out.write(frame.slice(start, 70_000))
    return frame, path


@pytest.fixture(scope="module")
def per_night(stored, tmp_path_factory) -> list[UPath]:
    """The same frame as one file per night (snapshot), as ``nightly.build_ranker_datasets`` stores it."""
    frame, _ = stored
    folder = UPath(tmp_path_factory.mktemp("ranker_nights"))
    paths = []
    for (snap,), night in frame.group_by("snapshot", maintain_order=True):
        paths.append(folder / f"examples={snap}.parquet")
        with BlockParquetWriter(paths[-1], row_group_rows=30_000) as out:
            out.write(night)
    assert len(paths) == 2
    return paths


CFG = RankingConfig(encoders=(), prior_profile_new=None, num_leaves=7)


@pytest.mark.parametrize("validation", ["none", "hash", "last_night"])
def test_file_training_is_frame_training(stored, validation):
    frame, path = stored
    cfg = replace(CFG, validation=validation, validation_fraction=0.2, min_valid_users=5, num_boost_round=12, early_stopping_rounds=3)
    a = train_ranker(frame, FEATURES, cfg, arm="ranker_x")
    b = train_ranker(path, FEATURES, cfg, arm="ranker_x")
    assert a.meta["validation"] == b.meta["validation"] == validation
    assert a.meta["n_users_no_positive"] > 0  # the dropped queries are counted on both paths
    assert a.booster.model_to_string() == b.booster.model_to_string()
    timings = ("prepare_seconds", "fit_seconds")
    assert {k: v for k, v in a.meta.items() if k not in timings} == {k: v for k, v in b.meta.items() if k not in timings}


def test_night_files_train_the_model_of_the_one_file(stored, per_night):
    """The frame split into one file per night (other row groups too) trains the same model bytes, prior chosen alike."""
    frame, path = stored
    cfg = replace(CFG, num_boost_round=12)
    one, nights = train_ranker(path, FEATURES, cfg, arm="ranker_x"), train_ranker(per_night, FEATURES, cfg, arm="ranker_x")
    assert one.booster.model_to_string() == nights.booster.model_to_string()
    assert one.meta["prior_choice"] == nights.meta["prior_choice"] and one.meta["n_train_rows"] == nights.meta["n_train_rows"]
    assert new_user_rows(per_night).equals(frame.filter(pl.col("user_is_new") > 0))


def test_night_files_out_of_order_are_refused(per_night):
    with pytest.raises(RankerError, match="not sorted"):
        train_ranker(per_night[::-1], FEATURES, CFG)
    with pytest.raises(RankerError, match="no training file"):
        train_ranker([], FEATURES, CFG)


def test_the_derived_data_seed_is_lightgbms(stored):
    """The matrix path given ``lgb_data_seed(seed)`` explicitly bins as it does with ``seed`` alone: the
    derivation is LightGBM's (if a LightGBM release changes it, this fails before any model moves)."""
    frame, _ = stored
    cfg = replace(CFG, prior_profile_new=0.0)
    data = prepare_lgb_data(frame, FEATURES, cfg)
    params = cfg.lgb_params(FEATURES)

    def fit(dataset_params):
        ds = lgb.Dataset(data.x_train, label=data.y_train, group=data.group_train, init_score=data.init_train, params=dataset_params)
        return lgb.train(params, ds, num_boost_round=3).model_to_string()

    assert fit({"data_random_seed": lgb_data_seed(cfg.seed)}) == fit(None)
    assert fit({"data_random_seed": lgb_data_seed(cfg.seed) + 1}) != fit(None)


def test_an_unsorted_file_is_refused(stored, tmp_path):
    frame, _ = stored
    path = UPath(tmp_path) / "unsorted.parquet"
    frame.sort("user_id", "snapshot").write_parquet(path.path)
    with pytest.raises(RankerError, match="not sorted"):
        train_ranker(path, FEATURES, CFG)
