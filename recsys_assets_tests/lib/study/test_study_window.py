"""The study pools the days the rollup pools: a day evaluated under another configuration (e.g. the
previous ranker) is left out of the study's tables, with its reason, attribute-arm rows included."""

from __future__ import annotations

import polars as pl

from recsys_assets.lib.evaluation.lift import LiftConfig
from recsys_assets.lib.evaluation.reporting import rollup_report
from recsys_assets.lib.study.new_users import ATTRIBUTE_ARM
from recsys_assets.lib.study.plan import StudyConfig
from recsys_assets.lib.study.tables import pooled_study_window, save_attribute_eval
from recsys_assets_tests.lib.evaluation.test_ranker_check import _per_user
from recsys_assets_tests.lib.evaluation.test_rollup_window import DAYS, _lake


def _study_lake(tmp_path):
    lake = _lake(tmp_path)  # days 0, 1, 3 under cfgA; day 2 under cfgB
    for d in DAYS:
        attribute = _per_user(n=60, seed=d.day).filter((pl.col("arm") == "popularity") & (pl.col("segment") == "new"))
        save_attribute_eval(lake, d, attribute.with_columns(arm=pl.lit(ATTRIBUTE_ARM)), pl.DataFrame({"scope": ["full"]}))
    return lake


def test_the_study_pools_only_days_of_its_configuration(tmp_path):
    lake = _study_lake(tmp_path)
    pooled, pairs, days, excluded = pooled_study_window(lake, DAYS[-1], 28, StudyConfig(), "cfgA")
    assert days == [DAYS[0], DAYS[1], DAYS[3]]
    assert list(excluded) == [DAYS[2]] and "cfgB" in excluded[DAYS[2]]
    assert pairs is None  # these days stored no per-pair ranks
    pooled_days = set(pooled["user_id"].str.split("|").list.first())
    assert pooled_days == {str(d) for d in days}
    for arm in ("ranker_no_text", ATTRIBUTE_ARM):
        new_users = pooled.filter((pl.col("arm") == arm) & (pl.col("segment") == "new"))
        assert new_users.height == 3 * 60, arm
    # Only the study's metric and cells.
    assert set(pooled["metric"]) == {"recall"} and set(pooled["k"]) == {20}
    assert set(zip(pooled["scope"], pooled["segment"])) == {("cold_only", "all"), ("full", "new")}
    # The rollup of the same window pools the same days.
    assert rollup_report(lake, DAYS[-1], 28, [], LiftConfig(n_boot=20), "cfgA", {}).days == days


def test_a_window_with_no_comparable_day_pools_nothing(tmp_path):
    lake = _study_lake(tmp_path)
    pooled, pairs, days, excluded = pooled_study_window(lake, DAYS[-1], 28, StudyConfig(), "another")
    assert pooled.height == 0 and pairs is None and days == [] and set(excluded) == set(DAYS)
