"""The ranker settings of ModelsResource reach every nightly asset's RankingConfig."""

from __future__ import annotations

from datetime import date

import pytest

from recsys_assets.defs.resources import ModelsResource
from recsys_assets.lib.lake import Lake
from recsys_assets.lib.ranking.nightly import ranking_config
from recsys_assets.lib.ranking.ranker import prior_of, RankerError


def test_resource_ranker_settings_reach_the_ranking_config(tmp_path):
    lake = Lake.at(str(tmp_path))
    models = ModelsResource(new_item_slots=2, max_train_users=300, ranker_prior_profile_new=1.5)
    rcfg = ranking_config(lake, date(2000, 11, 30), models.feature_config(), **models.ranking_settings())
    assert (rcfg.new_item_slots, rcfg.max_train_users, rcfg.prior_profile_new) == (2, 300, 1.5)
    assert prior_of(rcfg) == {"kind": "popularity", "scale": 1.0, "profile_new": 1.5}
    default = ranking_config(lake, date(2000, 11, 30), ModelsResource().feature_config(), **ModelsResource().ranking_settings())
    # By default the weight is left to the data (chosen each night on the training frame, ranker.resolve_prior).
    assert default.prior_profile_new is None
    with pytest.raises(RankerError, match="resolve it first"):
        prior_of(default)
    off = ranking_config(lake, date(2000, 11, 30), ModelsResource().feature_config(), **ModelsResource(ranker_prior_profile_new=0.0).ranking_settings())
    assert prior_of(off) == {"kind": "popularity", "scale": 1.0}
