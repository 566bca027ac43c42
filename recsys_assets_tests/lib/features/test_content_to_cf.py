"""Content -> CF bridge: beats the mean-vector baseline when text carries the factors."""

from __future__ import annotations

import numpy as np
import pytest
from upath import UPath

from recsys_assets.lib.features.als import ALSModel
from recsys_assets.lib.features.content_to_cf import (
    ContentToCFConfig,
    ContentToCFError,
    ContentToCFModel,
    fit_content_to_cf,
)

N_ITEMS, K, DIM = 400, 8, 32


def _world(signal: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    factors = rng.normal(size=(N_ITEMS, K)).astype(np.float32)
    item_ids = [f"i{j:04d}" for j in range(N_ITEMS)]
    model = ALSModel(
        user_ids=["u0"],
        item_ids=item_ids,
        user_factors=np.zeros((1, K), dtype=np.float32),
        item_factors=factors,
        config_hash="test",
    )
    if signal:
        vectors = factors @ rng.normal(size=(K, DIM)) + 0.5 * rng.normal(size=(N_ITEMS, DIM))
    else:
        vectors = rng.normal(size=(N_ITEMS, DIM))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    counts = {it: (10 if j % 4 else 2) for j, it in enumerate(item_ids)}  # a quarter is cold
    return item_ids, vectors.astype(np.float32), model, counts


def test_beats_mean_baseline_when_text_encodes_factors():
    item_ids, vectors, model, counts = _world(signal=True)
    bridge = fit_content_to_cf(item_ids, vectors, model, counts, ContentToCFConfig(ridge_alpha=0.1))
    m = bridge.metrics
    assert m["n_warm"] == 300 and m["n_holdout"] == 60 and m["n_train"] == 240
    assert m["r2"] > 0.5 and m["baseline_r2"] < 0.05
    assert m["mean_cosine"] > 0.7 and m["mean_cosine"] > m["baseline_mean_cosine"] + 0.4
    pred = bridge.predict(vectors[:5])
    assert pred.shape == (5, K) and pred.dtype == np.float32


def test_no_lift_when_text_is_noise():
    item_ids, vectors, model, counts = _world(signal=False)
    m = fit_content_to_cf(item_ids, vectors, model, counts, ContentToCFConfig(ridge_alpha=10.0)).metrics
    assert m["r2"] < 0.1


def test_only_warm_items_with_factors_are_used():
    item_ids, vectors, model, counts = _world(signal=True)
    # items unknown to ALS are ignored even when counted as warm
    extra_ids = item_ids + ["not_in_als"]
    extra_vecs = np.vstack([vectors, vectors[:1]])
    counts = dict(counts, not_in_als=100)
    m = fit_content_to_cf(extra_ids, extra_vecs, model, counts).metrics
    assert m["n_warm"] == 300
    with pytest.raises(ContentToCFError, match="warm items"):
        fit_content_to_cf(item_ids, vectors, model, {it: 1 for it in item_ids})


def test_predict_rejects_wrong_dimension():
    item_ids, vectors, model, counts = _world(signal=True)
    bridge = fit_content_to_cf(item_ids, vectors, model, counts)
    with pytest.raises(ContentToCFError, match="same encoder"):
        bridge.predict(np.zeros((2, DIM + 1), dtype=np.float32))


def test_save_load_round_trip(tmp_path):
    item_ids, vectors, model, counts = _world(signal=True)
    bridge = fit_content_to_cf(item_ids, vectors, model, counts)
    d = UPath(tmp_path) / "c2cf"
    bridge.save(d)
    back = ContentToCFModel.load(d)
    np.testing.assert_array_equal(back.predict(vectors), bridge.predict(vectors))
    assert back.metrics == bridge.metrics and back.config_hash == bridge.config_hash
