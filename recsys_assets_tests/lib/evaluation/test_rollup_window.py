"""The rollup pools only days evaluated under its own configuration, and says which it left out."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl

from recsys_assets.lib.evaluation.evaluate import ARM_STATS_SCHEMA
from recsys_assets.lib.evaluation.lift import LiftConfig
from recsys_assets.lib.evaluation.reporting import EVAL_PROVENANCE, comparable_window, rollup_report, save_eval
from recsys_assets.lib.lake import Lake
from recsys_assets_tests.lib.evaluation.test_ranker_check import _per_user

D0 = date(2024, 3, 1)
DAYS = [D0 + timedelta(days=i) for i in range(4)]


def _lake(tmp_path) -> Lake:
    lake = Lake.at(str(tmp_path / "lake"))
    # Days 0-1 under configuration A, day 2 under B (e.g. another ranker setting), day 3 under A again.
    for d, h in zip(DAYS, ["cfgA", "cfgA", "cfgB", "cfgA"]):
        save_eval(lake, d, [_per_user(n=60, seed=d.day)], pl.DataFrame(schema=ARM_STATS_SCHEMA), config_hash=h)
    return lake


def test_days_of_another_configuration_are_left_out_with_the_reason(tmp_path):
    lake = _lake(tmp_path)
    days, excluded = comparable_window(lake, DAYS[-1], 28, "cfgA")
    assert days == [DAYS[0], DAYS[1], DAYS[3]]
    assert list(excluded) == [DAYS[2]] and "cfgB" in excluded[DAYS[2]] and "re-materialize day_job" in excluded[DAYS[2]]
    days_b, excluded_b = comparable_window(lake, DAYS[-1], 28, "cfgB")
    assert days_b == [DAYS[2]] and set(excluded_b) == {DAYS[0], DAYS[1], DAYS[3]}


def test_a_day_without_provenance_is_not_pooled(tmp_path):
    lake = _lake(tmp_path)
    lake.eval_dir(DAYS[1]).joinpath(EVAL_PROVENANCE).unlink()
    days, excluded = comparable_window(lake, DAYS[-1], 28, "cfgA")
    assert days == [DAYS[0], DAYS[3]] and "older version" in excluded[DAYS[1]]


def test_the_rollup_pools_only_its_configuration(tmp_path):
    lake = _lake(tmp_path)
    window = rollup_report(lake, DAYS[-1], 28, [], LiftConfig(n_boot=50), "cfgA", {})
    assert window.days == [DAYS[0], DAYS[1], DAYS[3]] and list(window.excluded) == [DAYS[2]]
    assert sum(window.code_versions.values()) == 3
    # The pooled cells count the user-days of the three comparable days only (60 users a day).
    cell = window.ranker_check.filter((pl.col("arm") == "ranker_no_text") & (pl.col("metric") == "recall"))
    assert cell.height == 1 and cell["n_users"].item() == 3 * 60
