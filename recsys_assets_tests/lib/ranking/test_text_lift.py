"""(d) When item text = topic, the text ranker recalls more new items than the no-text ranker."""

from __future__ import annotations

import polars as pl

from recsys_assets.lib.ranking.arms import new_item_ids, recommend, score_items, top_k_from_scores
from recsys_assets_tests.lib.ranking.conftest import CFG
from recsys_assets_tests.lib.ranking.world import NOISE, TOPIC


def _recall(recs: pl.DataFrame, truth: pl.DataFrame, k: int) -> float:
    hits = recs.filter(pl.col("rank") <= k).join(truth, on=["user_id", "item_id"], how="semi").group_by("user_id").len()
    per = truth.group_by("user_id").len().rename({"len": "n"}).join(hits, on="user_id", how="left").with_columns(pl.col("len").fill_null(0))
    return float((per.get_column("len") / per.get_column("n")).mean())


def test_text_ranker_lifts_new_item_recall(serve_features, models, truth):
    new = new_item_ids(serve_features)
    truth_new = truth.filter(pl.col("item_id").is_in(new))
    users = truth.get_column("user_id").unique().sort().to_list()
    assert truth_new.height >= 30 and len(new) >= 10
    full = {}
    for arm in ("ranker_no_text", f"ranker_{TOPIC}", f"ranker_{NOISE}"):
        recs, _ = recommend(arm, serve_features, users, 20, models, CFG)
        full[arm] = _recall(recs, truth_new, 20)
    assert full[f"ranker_{TOPIC}"] > full["ranker_no_text"] + 0.2, full
    assert full[f"ranker_{TOPIC}"] > full[f"ranker_{NOISE}"] + 0.2, full

    cold_users = truth_new.get_column("user_id").unique().sort().to_list()
    cold = {}
    for arm in ("ranker_no_text", f"ranker_{TOPIC}"):
        s = score_items(arm, serve_features, cold_users, new, models, CFG)
        cold[arm] = _recall(top_k_from_scores(s, 3, serve_features), truth_new, 3)
    assert cold[f"ranker_{TOPIC}"] > cold["ranker_no_text"] + 0.1, cold
