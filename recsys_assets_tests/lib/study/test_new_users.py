"""The categorical-attribute baseline of new users and the study's Pareto front."""

from __future__ import annotations

from datetime import datetime, timezone

import polars as pl

from recsys_assets.lib.interactions import InteractionConfig
from recsys_assets.lib.study.new_users import AttributeConfig, attribute_popularity_recs, attribute_values, user_attributes
from recsys_assets.lib.study.tables import pareto_front


def _history(rows):
    ts = datetime(2024, 1, 1, tzinfo=timezone.utc)
    return pl.DataFrame(
        {"user_id": [u for u, _ in rows], "item_id": [i for _, i in rows], "event_type": ["rating"] * len(rows), "value": [5.0] * len(rows),
         "ts": [ts] * len(rows), "event_id": [str(n) for n in range(len(rows))]}
    )


def test_attribute_values_bucket_numbers_and_drop_common_words():
    cfg = AttributeConfig()
    assert attribute_values("24 year old male technician", cfg) == ["20s", "male", "old", "technician", "year"]
    users = pl.DataFrame({"user_id": ["a", "b", "c"], "profile": ["24 year old male technician", "31 year old female writer", None]})
    attrs = user_attributes(users, cfg)
    # "year" and "old" are in every profile: no information, dropped.
    assert set(attrs["attr"]) == {"20s", "male", "technician", "30s", "female", "writer"}


def test_new_user_gets_the_items_of_users_sharing_their_attributes():
    users = pl.DataFrame({
        "user_id": ["t1", "t2", "w1", "w2", "w3", "new_t", "new_x"],
        "profile": ["25 technician", "27 technician", "60 writer", "61 writer", "62 writer", "22 technician", "40 farmer"],
    })
    # Writers make item W the most popular overall; technicians like item T.
    history = _history([("t1", "T"), ("t2", "T"), ("w1", "W"), ("w2", "W"), ("w3", "W"), ("w1", "X")])
    recs = attribute_popularity_recs(history, ["T", "W", "X"], users, ["new_t", "new_x"], 2, InteractionConfig(), AttributeConfig())
    by_user = {u: g.sort("rank")["item_id"].to_list() for (u,), g in recs.group_by("user_id")}
    assert by_user["new_t"][0] == "T"
    # A farmer shares no attribute with anyone: the global popularity list.
    assert by_user["new_x"] == ["W", "T"]


def test_pareto_front():
    pts = [("cheap_good", 1.0, 0.05), ("cheap_bad", 0.5, -0.01), ("dear_better", 10.0, 0.06), ("dear_worse", 20.0, 0.04), ("no_lift", 2.0, None)]
    assert pareto_front(pts) == {"cheap_good", "cheap_bad", "dear_better"}


def test_html_report_draws_the_pareto_chart():
    from recsys_assets.lib.evaluation.html_report import render_html_report

    study = pl.DataFrame({
        "protocol": ["temporal"] * 3, "cell": ["new_users"] * 3, "encoder": ["minilm-l3", "mpnet-base", "tfidf"],
        "is_lm": [True, True, False], "teacher": [None, None, None], "params": [17_241_984, 109_486_464, 5_000],
        "catalogue_seconds": [3.0, 40.0, 0.2], "lift_vs_no_text": [0.02, 0.03, 0.0], "ci_low_vs_no_text": [0.0, 0.01, -0.01],
        "ci_high_vs_no_text": [0.04, 0.05, 0.01], "pareto": [True, True, True],
    })
    html = render_html_report(pl.DataFrame(), pl.DataFrame(), pl.DataFrame(), pl.DataFrame(), "t", encoder_study=study)
    assert 'data-chart="pareto"' in html and "Pareto front" in html and "mpnet-base" in html
    without = render_html_report(pl.DataFrame(), pl.DataFrame(), pl.DataFrame(), pl.DataFrame(), "t")
    assert 'data-chart="pareto"' not in without
