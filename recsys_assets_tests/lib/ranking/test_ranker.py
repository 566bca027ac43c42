"""LightGBM ranker: persistence, determinism, importances and explanations."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl
import pytest
from upath import UPath

from recsys_assets.lib.ranking.arms import build_training_frame, explain_recommendations, recommend
from recsys_assets.lib.ranking.features import feature_names
from recsys_assets.lib.ranking.ranker import COOC_FLOOR, RankerError, RankerModel, prior_of, prior_scores, train_ranker
from recsys_assets_tests.lib.ranking.conftest import CFG
from recsys_assets_tests.lib.ranking.world import TOPIC, TOPIC_C2CF, TOPIC_COS


def test_save_load_roundtrip_and_determinism(tmp_path, train_features, labels, models):
    frame, _ = build_training_frame(train_features, labels, f"ranker_{TOPIC}", CFG)
    again = train_ranker(frame, feature_names(TOPIC), CFG, arm=f"ranker_{TOPIC}")
    m = models[f"ranker_{TOPIC}"]
    assert again.booster.model_to_string() == m.booster.model_to_string()
    m.save(UPath(tmp_path) / f"ranker_{TOPIC}")
    loaded = RankerModel.load(UPath(tmp_path) / f"ranker_{TOPIC}")
    assert loaded.feature_names == m.feature_names
    assert loaded.best_iteration == m.best_iteration
    assert loaded.meta["prior"] == m.meta["prior"] == prior_of(CFG)
    np.testing.assert_allclose(loaded.predict(frame.head(500)), m.predict(frame.head(500)))
    (UPath(tmp_path) / f"ranker_{TOPIC}" / "ranker.txt").write_text(m.booster.model_to_string() + "\n#")
    with pytest.raises(RankerError):
        RankerModel.load(UPath(tmp_path) / f"ranker_{TOPIC}")


def test_users_without_positives_dropped_but_counted(train_features, labels, models):
    m = models["ranker_no_text"]
    frame, stats = build_training_frame(train_features, labels, "ranker_no_text", CFG)
    assert m.meta["n_users_no_positive"] == stats["users_without_positive_candidates"] > 0
    assert m.meta["n_users"] == stats["n_users"]
    assert m.meta["n_train_users"] + m.meta["n_valid_users"] + m.meta["n_users_no_positive"] == m.meta["n_users"]
    assert m.meta["n_valid_users"] > 0 and 0 < m.meta["best_iteration"] <= CFG.num_boost_round
    empty = frame.with_columns(pl.lit(0).alias("label"))
    with pytest.raises(RankerError):
        train_ranker(empty, feature_names(None), CFG)


def test_importance_and_explanations(serve_features, models):
    m = models[f"ranker_{TOPIC}"]
    imp = m.feature_importance()
    assert imp.columns == ["feature", "gain", "split"] and set(imp.get_column("feature")) == set(m.feature_names)
    text_gain = imp.filter(pl.col("feature").is_in([TOPIC_COS, TOPIC_C2CF])).get_column("gain").sum()
    assert text_gain > 0
    users = sorted(serve_features.als.user_ids)[:20]
    recs, _ = recommend(f"ranker_{TOPIC}", serve_features, users, 10, models, CFG)
    ex = explain_recommendations(f"ranker_{TOPIC}", serve_features, recs, models, CFG)
    assert ex.height == min(CFG.explain_sample, recs.height)
    # prior (the popularity baseline boosted from) + bias + contributions = the score
    contrib = ex.select([f"contrib_{f}" for f in m.feature_names] + ["bias", "prior"]).to_numpy().sum(axis=1)
    np.testing.assert_allclose(contrib, ex.get_column("score").to_numpy(), rtol=1e-6, atol=1e-6)
    # the explained score is the served score
    joined = ex.join(recs, on=["user_id", "item_id"], suffix="_served")
    np.testing.assert_allclose(joined.get_column("score").to_numpy(), joined.get_column("score_served").to_numpy(), rtol=1e-5, atol=1e-6)


def test_scorer_adds_the_recorded_prior_to_the_trees(train_features, labels, models):
    """Served score = the prior named in the model's meta + the trees' raw score (the trees were boosted from it)."""
    frame, _ = build_training_frame(train_features, labels, f"ranker_{TOPIC}", CFG)
    m = models[f"ranker_{TOPIC}"]
    x = frame.head(300)
    raw = m.booster.predict(x.select(m.feature_names).cast(pl.Float32).to_numpy(), num_iteration=m.best_iteration, raw_score=True)
    prior = prior_scores(x, m.meta["prior"])
    # the prior is the popularity arm's order: a better place in the popularity list = a higher prior
    order = np.argsort(x.get_column("pop_rank_log").to_numpy(), kind="stable")
    assert np.all(np.diff(prior[order]) <= 0)
    np.testing.assert_allclose(m.predict(x), raw + prior)
    no_prior = RankerModel(m.booster, m.feature_names, {k: v for k, v in m.meta.items() if k != "prior"})
    np.testing.assert_allclose(no_prior.predict(x), raw)


def test_prior_terms_add_profile_and_cooc_where_present():
    """The popularity prior plus its optional terms: b * profile_lift (all users, or new users only)
    and c * the log-share of last_cooc; a missing feature adds 0 and the meta names only set terms."""
    x = pl.DataFrame({
        "pop_rank_log": [0.0, 1.0, 2.0, np.nan],
        "profile_lift": [0.5, np.nan, -1.0, 2.0],
        "last_cooc": [np.nan, 0.09, 0.0, 0.99],
        "user_is_new": [1.0, 0.0, 1.0, 0.0],
    })
    base = prior_scores(x, {"kind": "popularity", "scale": 2.0})
    np.testing.assert_allclose(base, [0.0, -2.0, -4.0, -4.0])  # the unplaced item gets the frame's weakest place
    np.testing.assert_allclose(prior_scores(x, {"kind": "popularity", "scale": 2.0, "profile": 0.5}), base + [0.25, 0.0, -0.5, 1.0])
    np.testing.assert_allclose(prior_scores(x, {"kind": "popularity", "scale": 2.0, "profile_new": 1.0}), base + [0.5, 0.0, -1.0, 0.0])
    cooc = np.log(np.array([0.0, 0.09, 0.0, 0.99]) + COOC_FLOOR) - np.log(COOC_FLOOR)
    np.testing.assert_allclose(prior_scores(x, {"kind": "popularity", "scale": 2.0, "cooc": 1.0}), base + cooc)
    assert cooc[0] == 0 and cooc[3] == pytest.approx(np.log(100.0))
    assert prior_of(replace(CFG, prior_profile=0.0, prior_profile_new=0.0, prior_cooc=0.0)) == {"kind": "popularity", "scale": CFG.prior_scale}
    assert prior_of(replace(CFG, prior_profile_new=2.0, prior_profile=0.0, prior_cooc=0.0))["profile_new"] == 2.0
    with pytest.raises(RankerError):
        prior_scores(x.drop("profile_lift"), {"kind": "popularity", "scale": 1.0, "profile": 1.0})


def test_pair_hash_is_stable_per_pair_and_tells_pairs_apart():
    import numpy as np
    import polars as pl

    from recsys_assets.lib.ranking.inputs import pair_hash_u64

    users = pl.Series(["u1", "u1", "u2", "u2", "u1"])
    items = pl.Series(["i1", "i2", "i1", "i2", "i1"])
    h = pair_hash_u64(users, items, "explain")
    assert h.dtype == np.uint64
    assert h[0] == h[4]  # the same pair, the same hash, wherever it is
    assert len(set(h[:4].tolist())) == 4  # four pairs, four hashes
    # a pair's hash does not depend on the other rows, and left/right are not interchangeable
    assert pair_hash_u64(users[2:3], items[2:3], "explain")[0] == h[2]
    assert pair_hash_u64(pl.Series(["i1"]), pl.Series(["u2"]), "explain")[0] != h[2]
    assert pair_hash_u64(users, items, "other")[0] != h[0]
