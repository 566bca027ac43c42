"""The nightly choice of ``prior_profile_new`` on the training frame (ranker.choose_prior_profile_new)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from recsys_assets.lib.ranking.config import RankingConfig, RankingConfigError
from recsys_assets.lib.ranking.features import FEATURES_NO_TEXT
from recsys_assets.lib.ranking.ranker import RankerError, choose_prior_profile_new, resolve_prior, train_ranker

CFG = RankingConfig(encoders=(), num_threads=1)


def _frame(n_users: int, profile_signal: bool, seed: int = 0, new_share: float = 1.0) -> pl.DataFrame:
    """Two nights of queries, 30 candidates each; positives follow popularity, plus (``profile_signal``)
    the items with the highest ``profile_lift`` for new users, which popularity ranks low."""
    rng = np.random.default_rng(seed)
    rows = []
    for q in range(n_users):
        new = rng.random() < new_share
        lift = rng.normal(0.0, 1.0, 30)
        for j in range(30):
            p = 0.15 / (1 + j) ** 0.5
            if profile_signal and new and lift[j] > 1.3:
                p = 0.6
            rows.append(
                {
                    "snapshot": date(2000, 1, 1) + timedelta(days=q % 2),
                    "user_id": f"u{q}",
                    "item_id": f"i{j:02d}",
                    "label": int(rng.random() < p),
                    "pop_rank_log": float(np.log1p(j)),
                    "profile_lift": float(lift[j]),
                    "user_is_new": 1.0 if new else 0.0,
                }
            )
    frame = pl.DataFrame(rows)
    for f in FEATURES_NO_TEXT:
        if f not in frame.columns:
            frame = frame.with_columns(pl.lit(0.0).alias(f))
    return frame


def test_a_profile_signal_for_new_users_is_chosen_and_recorded():
    weight, record = choose_prior_profile_new(_frame(300, True), CFG)
    assert weight > 0
    assert record["chosen"] == weight and record["metric"] == "ndcg@20"
    assert record["n_queries"] >= CFG.prior_choice_min_queries
    assert set(record["ndcg"]) == {"0.0", "1.0", "2.0", "3.0"}
    assert record["ndcg"][str(weight)] == max(record["ndcg"].values())
    assert record["gain"][str(weight)] > CFG.prior_choice_min_se * record["gain_se"][str(weight)]


def test_no_signal_keeps_the_popularity_prior():
    # profile_lift is noise: a weight may win by chance on the mean, but not by a standard error.
    weight, record = choose_prior_profile_new(_frame(300, False), CFG)
    assert weight == 0.0 and record["chosen"] == 0.0
    assert all(record["gain"][w] <= record["gain_se"][w] for w in record["gain"])


def test_returning_users_do_not_choose_and_too_few_queries_mean_zero():
    # The signal is there but only for new users; with no new users nothing is compared.
    weight, record = choose_prior_profile_new(_frame(300, True, new_share=0.0), CFG)
    assert (weight, record["n_queries"]) == (0.0, 0)
    assert "fewer than" in record["reason"]
    weight, record = choose_prior_profile_new(_frame(30, True), CFG)
    assert weight == 0.0 and record["n_queries"] < CFG.prior_choice_min_queries


def test_a_fixed_weight_is_kept_and_the_trained_model_records_the_choice():
    frame = _frame(300, True)
    fixed, record = resolve_prior(frame, replace(CFG, prior_profile_new=0.0))
    assert fixed.prior_profile_new == 0.0 and record is None
    chosen, record = resolve_prior(frame, CFG)
    assert chosen.prior_profile_new == record["chosen"] > 0
    model = train_ranker(frame, FEATURES_NO_TEXT, CFG, arm="ranker_no_text")
    assert model.meta["prior"]["profile_new"] == record["chosen"]
    assert model.meta["prior_choice"] == record
    unchosen = train_ranker(frame, FEATURES_NO_TEXT, replace(CFG, prior_profile_new=0.0), arm="ranker_no_text")
    assert "prior_choice" not in unchosen.meta and "profile_new" not in unchosen.meta["prior"]


def test_negative_choices_and_frames_without_the_new_user_flag_are_refused():
    with pytest.raises(RankingConfigError, match="prior_profile_new_choices"):
        RankingConfig(prior_profile_new_choices=(0.0, -1.0))
    with pytest.raises(RankerError, match="user_is_new"):
        choose_prior_profile_new(_frame(60, True).drop("user_is_new"), CFG)
    # Without a popularity prior there is no weight to choose.
    assert choose_prior_profile_new(_frame(300, True), replace(CFG, prior="none"))[0] == 0.0
