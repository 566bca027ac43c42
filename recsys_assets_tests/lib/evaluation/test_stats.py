"""Paired bootstrap, Holm and the small-cell flag."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recsys_assets.lib.evaluation import stats
from recsys_assets.lib.evaluation.stats import (
    MIN_USERS_DEFAULT,
    TOO_FEW_USERS,
    LiftStats,
    StatsError,
    cell_flag,
    holm_adjust,
    paired_bootstrap,
)


def test_point_estimates_by_hand():
    t = np.array([1.0, 0.0, 0.5, 0.5])  # mean 0.5
    b = np.array([0.5, 0.0, 0.0, 0.5])  # mean 0.25
    s = paired_bootstrap(t, b, n_boot=200)
    assert s.value == pytest.approx(0.5)
    assert s.baseline_value == pytest.approx(0.25)
    assert s.abs_lift == pytest.approx(0.25)
    assert s.rel_lift == pytest.approx(1.0)  # 0.5 / 0.25 - 1
    assert s.n_users == 4
    assert s.ci_low <= s.abs_lift <= s.ci_high


def test_ci_coverage_on_simulated_data():
    """200 datasets with a known mean difference 0.05: the 95% CI covers it in 90-99%."""
    true_diff, covered, rejected_null = 0.05, 0, 0
    rng = np.random.default_rng(123)
    n_sets = 200
    for i in range(n_sets):
        b = rng.random(150)
        t = b + true_diff + rng.normal(0.0, 0.3, 150)  # population mean difference = 0.05
        s = paired_bootstrap(t, b, n_boot=500, seed=i)
        covered += s.ci_low <= true_diff <= s.ci_high
        # a null world (same distribution for both arms): p < 0.05 about 5% of the time
        t0 = b + rng.normal(0.0, 0.3, 150)
        rejected_null += paired_bootstrap(t0, b, n_boot=500, seed=i).p_value < 0.05
    assert 0.90 * n_sets <= covered <= 0.99 * n_sets, covered
    assert rejected_null <= 0.10 * n_sets, rejected_null


def test_p_value_small_for_clear_effect_large_for_none():
    rng = np.random.default_rng(5)
    b = rng.random(300)
    clear = paired_bootstrap(b + 0.2 + rng.normal(0, 0.1, 300), b, n_boot=1000)
    assert clear.p_value == pytest.approx(2 / 1001)  # every resample > 0: the +1-corrected floor
    assert clear.ci_low > 0
    # no effect: a symmetric noise around 0 on a fixed seed
    none = paired_bootstrap(b + rng.normal(0, 0.1, 300) - 0.0, b, n_boot=1000)
    assert none.p_value > 0.2
    assert none.ci_low < 0 < none.ci_high


def test_relative_lift_ci_by_hand():
    # t = 2 b per user: every resample has mean t* = 2 mean b* -> relative lift exactly 1
    b = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    s = paired_bootstrap(2 * b, b, n_boot=300)
    assert s.rel_lift == pytest.approx(1.0)
    assert s.rel_ci_low == pytest.approx(1.0)
    assert s.rel_ci_high == pytest.approx(1.0)


def test_zero_baseline_gives_nan_relative_lift():
    s = paired_bootstrap(np.array([0.0, 1.0, 0.0]), np.zeros(3), n_boot=200)
    assert s.abs_lift == pytest.approx(1 / 3)
    assert math.isnan(s.rel_lift) and math.isnan(s.rel_ci_low) and math.isnan(s.rel_ci_high)
    # baseline mean > 0 but some resamples draw only zero-baseline users -> relative CI undefined
    s = paired_bootstrap(np.array([1.0, 1.0, 1.0]), np.array([0.0, 0.0, 1.0]), n_boot=200)
    assert s.rel_lift == pytest.approx(2.0)
    assert math.isnan(s.rel_ci_low)
    assert not math.isnan(s.ci_low)


def test_empty_and_degenerate_cases():
    s = paired_bootstrap(np.array([]), np.array([]))
    assert s.n_users == 0
    assert all(math.isnan(v) for k, v in s.as_dict().items() if k != "n_users")

    same = paired_bootstrap(np.full(10, 0.3), np.full(10, 0.3), n_boot=500)
    assert (same.ci_low, same.ci_high) == (0.0, 0.0)
    assert same.p_value == 1.0
    assert same.rel_lift == 0.0

    const = paired_bootstrap(np.full(10, 0.5), np.full(10, 0.2), n_boot=500)  # every delta 0.3
    assert const.ci_low == pytest.approx(0.3) and const.ci_high == pytest.approx(0.3)
    assert const.p_value == pytest.approx(2 / 501)


def test_input_validation():
    with pytest.raises(StatsError, match="same users"):
        paired_bootstrap(np.zeros(3), np.zeros(4))
    with pytest.raises(StatsError, match="NaN"):
        paired_bootstrap(np.array([np.nan]), np.array([0.0]))


def test_deterministic_for_a_seed_and_chunk_size(monkeypatch):
    rng = np.random.default_rng(9)
    t, b = rng.random(400), rng.random(400)
    a1 = paired_bootstrap(t, b, n_boot=700, seed=3)
    a2 = paired_bootstrap(t, b, n_boot=700, seed=3)
    assert a1 == a2
    other = paired_bootstrap(t, b, n_boot=700, seed=4)
    assert (other.ci_low, other.ci_high) != (a1.ci_low, a1.ci_high)
    # chunking bounds memory only: a tiny chunk (3 resamples at a time) gives the same draws
    monkeypatch.setattr(stats, "_MAX_CHUNK_ELEMENTS", 400 * 3)
    a3 = paired_bootstrap(t, b, n_boot=700, seed=3)
    assert a3.ci_low == pytest.approx(a1.ci_low, abs=1e-12)
    assert a3.ci_high == pytest.approx(a1.ci_high, abs=1e-12)
    assert a3.p_value == a1.p_value


def test_holm_hand_case():
    # p = [0.01, 0.04, 0.03, 0.005], m = 4. Sorted: 0.005*4 = 0.02, 0.01*3 = 0.03,
    # 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max 0.06. Back in input order:
    p = np.array([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(holm_adjust(p), [0.03, 0.06, 0.06, 0.02])
    # NaNs stay NaN and do not enlarge the family (m stays 4)
    p_nan = np.array([0.01, np.nan, 0.04, 0.03, np.nan, 0.005])
    np.testing.assert_allclose(holm_adjust(p_nan), [0.03, np.nan, 0.06, 0.06, np.nan, 0.02])
    # capped at 1: [0.5, 0.6] -> 0.5*2 = 1.0, max(1.0, 0.6) = 1.0
    np.testing.assert_allclose(holm_adjust(np.array([0.5, 0.6])), [1.0, 1.0])
    assert holm_adjust(np.array([])).shape == (0,)
    assert np.isnan(holm_adjust(np.array([np.nan]))).all()


def test_cell_flag():
    assert MIN_USERS_DEFAULT == 20
    assert cell_flag(0, MIN_USERS_DEFAULT) == TOO_FEW_USERS
    assert cell_flag(19) == TOO_FEW_USERS
    assert cell_flag(20) is None
    assert cell_flag(5, min_users=5) is None


def test_liftstats_fields():
    assert [f for f in LiftStats.__dataclass_fields__] == [
        "value", "baseline_value", "abs_lift", "rel_lift", "ci_low", "ci_high",
        "rel_ci_low", "rel_ci_high", "p_value", "n_users",
    ]
