"""Lift statistics (docs/statistics.md): cluster and two-way bootstraps, normal p, Holm, small cells.

Two estimators live here:

- :func:`cluster_bootstrap` (used by every report cell): resample user *clusters*
  (all of a user's days together) and, for cells whose users share held-out items,
  items independently too (the two-way "pigeonhole" bootstrap of Owen 2007). The
  p-value is a two-sided normal p from the bootstrap standard error, so it can go
  far below ``2 / (B + 1)``; the CI is the percentile interval.
- :func:`paired_bootstrap` (kept for comparison: the interval reports carried
  before): resample the rows (user-days) only, percentile CI and percentile p
  with its ``2 / (B + 1)`` floor.

Paired bootstrap: the same users are scored by both arms, so users are resampled with
replacement and both arms' values move together. For each of ``n_boot`` resamples b:
``d_b = mean(t*) - mean(b*)`` and ``r_b = mean(t*) / mean(b*) - 1``.

- CI: percentile interval ``[q(alpha/2), q(1 - alpha/2)]`` of ``d_b`` (absolute lift) and of
  ``r_b`` (relative lift).
- p-value (two-sided, percentile bootstrap, i.e. the inversion of the percentile CI):
  ``p = min(1, 2 * min((#{d_b <= 0} + 1) / (B + 1), (#{d_b >= 0} + 1) / (B + 1)))``.
  The +1 correction keeps p >= 2 / (B + 1) (never 0 from a finite bootstrap) and makes
  ``p < alpha`` agree with the CI excluding 0 up to resampling granularity.
- Relative lift is NaN (undefined) when the baseline mean is 0; its CI is NaN when the baseline
  mean is 0 in the sample or in any resample (the ratio is unbounded there). The absolute lift
  and its CI are always defined when n_users > 0.
- n_users = 0: every field NaN (n_users 0). All deltas equal to c: CI [c, c]; p = 1 when c = 0.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from recsys_assets.lib.errors import RecsysError

MIN_USERS_DEFAULT = 20
"""A report cell with fewer users is flagged instead of shown as a confident number."""

TOO_FEW_USERS = "too_few_users"
"""Flag text ``cell_flag`` returns for a cell below the user minimum."""

TRIVIAL = "trivial"
"""Flag of a cell whose ranked set holds no more than K items (every arm finds every positive)."""

_MAX_CHUNK_ELEMENTS = 4_000_000
"""Bound on the resample index matrix drawn at once (rows x users): ~16 MB of int32."""


class StatsError(RecsysError):
    """Inputs to a lift statistic are inconsistent (shapes, non-finite values, bad alpha)."""


@dataclass(frozen=True)
class LiftStats:
    """Treatment-vs-baseline lift of one metric over one cell's users."""

    value: float
    """Mean of the treatment arm's per-user values."""
    baseline_value: float
    """Mean of the baseline arm's per-user values."""
    abs_lift: float
    """value - baseline_value."""
    rel_lift: float
    """value / baseline_value - 1; NaN when baseline_value is 0."""
    ci_low: float
    """Lower bound of the percentile bootstrap CI of abs_lift."""
    ci_high: float
    """Upper bound of the percentile bootstrap CI of abs_lift."""
    rel_ci_low: float
    """Lower bound of the percentile CI of rel_lift; NaN if a resample had baseline mean 0."""
    rel_ci_high: float
    """Upper bound of the percentile CI of rel_lift; NaN if a resample had baseline mean 0."""
    p_value: float
    """Two-sided percentile-bootstrap p-value of abs_lift = 0 (raw, before Holm)."""
    n_users: int
    """Number of paired users."""

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def paired_bootstrap(
    treatment: np.ndarray,
    baseline: np.ndarray,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> LiftStats:
    """Paired bootstrap over users of the mean difference (see module docstring).

    Args:
        treatment: per-user metric values of the treatment arm (1-D, finite).
        baseline: the same users' values of the baseline arm, aligned by position.
        n_boot: number of resamples.
        seed: RNG seed (``numpy.random.default_rng``); same inputs + seed -> same result.
        alpha: 1 - confidence level of the CIs.
    """
    t = np.asarray(treatment, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    if t.ndim != 1 or b.ndim != 1 or t.shape != b.shape:
        raise StatsError(
            f"treatment and baseline must be 1-D arrays of the same users, got shapes "
            f"{t.shape} and {b.shape}; align both arms on user_id first."
        )
    if not (np.isfinite(t).all() and np.isfinite(b).all()):
        raise StatsError("treatment/baseline contain NaN or inf; per-user metrics must be finite.")
    if not 0.0 < alpha < 1.0:
        raise StatsError(f"alpha must be in (0, 1), got {alpha}.")
    if n_boot < 1:
        raise StatsError(f"n_boot must be >= 1, got {n_boot}.")
    n = t.shape[0]
    nan = float("nan")
    if n == 0:
        return LiftStats(nan, nan, nan, nan, nan, nan, nan, nan, nan, 0)

    mean_t = float(t.mean())
    mean_b = float(b.mean())
    abs_lift = mean_t - mean_b
    rel_lift = mean_t / mean_b - 1.0 if mean_b != 0.0 else nan

    rng = np.random.default_rng(seed)
    idx_dtype = np.int32 if n < 2**31 else np.int64
    boot_t = np.empty(n_boot)
    boot_b = np.empty(n_boot)
    chunk = max(1, _MAX_CHUNK_ELEMENTS // n)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n), dtype=idx_dtype)
        # Two contiguous 1-D gathers are ~5x faster than gathering an (n, 2) stack.
        boot_t[start:stop] = np.take(t, idx).mean(axis=1)
        boot_b[start:stop] = np.take(b, idx).mean(axis=1)
    d = boot_t - boot_b
    # Degenerate distributions: when all deltas are equal, floating-point noise in the means
    # could put d slightly off the constant; snap it to the exact value.
    deltas = t - b
    if np.all(deltas == deltas[0]):
        d = np.full(n_boot, float(deltas[0]))

    q = [alpha / 2.0, 1.0 - alpha / 2.0]
    ci_low, ci_high = (float(x) for x in np.quantile(d, q))
    if mean_b != 0.0 and np.all(boot_b != 0.0):
        rel_ci_low, rel_ci_high = (float(x) for x in np.quantile(boot_t / boot_b - 1.0, q))
    else:
        rel_ci_low = rel_ci_high = nan
    le = (np.count_nonzero(d <= 0.0) + 1) / (n_boot + 1)
    ge = (np.count_nonzero(d >= 0.0) + 1) / (n_boot + 1)
    p = float(min(1.0, 2.0 * min(le, ge)))
    return LiftStats(
        value=mean_t,
        baseline_value=mean_b,
        abs_lift=abs_lift,
        rel_lift=rel_lift,
        ci_low=ci_low,
        ci_high=ci_high,
        rel_ci_low=rel_ci_low,
        rel_ci_high=rel_ci_high,
        p_value=p,
        n_users=int(n),
    )


def holm_adjust(p_values: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values, same shape and order as the input.

    NaNs (cells without a test, e.g. too few users) stay NaN and do not count in the family
    size m. With the non-NaN p sorted ascending p_(1) <= ... <= p_(m):
    ``adj_(i) = min(1, max_{j <= i} (m - j + 1) * p_(j))``.
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    flat = p.ravel()
    ok = np.flatnonzero(~np.isnan(flat))
    m = ok.size
    if m == 0:
        return out
    vals = flat[ok]
    if np.any((vals < 0.0) | (vals > 1.0)):
        raise StatsError("p-values must lie in [0, 1].")
    order = np.argsort(vals, kind="stable")
    scaled = (m - np.arange(m)) * vals[order]
    adj_sorted = np.minimum(1.0, np.maximum.accumulate(scaled))
    res = np.full(flat.shape, np.nan)
    res[ok[order]] = adj_sorted
    return res.reshape(p.shape)


def cell_flag(n_users: int, min_users: int = MIN_USERS_DEFAULT) -> str | None:
    """``TOO_FEW_USERS`` when a cell has fewer than ``min_users`` users (including 0), else None."""
    if n_users is None or (isinstance(n_users, float) and math.isnan(n_users)):
        return TOO_FEW_USERS
    return TOO_FEW_USERS if int(n_users) < int(min_users) else None


@dataclass(frozen=True)
class ClusterLiftStats:
    """Lift of one metric over one cell, with the resampling that matches the data."""

    value: float
    """Mean of the treatment arm's per-observation (user or user-day) values."""
    baseline_value: float
    """Mean of the baseline arm's per-observation values."""
    abs_lift: float
    """value - baseline_value."""
    rel_lift: float
    """value / baseline_value - 1; NaN when baseline_value is 0."""
    ci_low: float
    """Lower bound of the CI of abs_lift: ``abs_lift - t(df) * se``."""
    ci_high: float
    """Upper bound of that CI."""
    rel_ci_low: float
    """Lower bound of the CI of rel_lift (user-cluster percentile CI widened by se / user_se)."""
    rel_ci_high: float
    """Upper bound of that CI; NaN when a resample had baseline mean 0."""
    p_value: float
    """Two-sided p of abs_lift = 0 from ``abs_lift / se`` and Student's t with ``df``; NaN when df < 1."""
    se: float
    """Standard error of abs_lift (two-way when items are resampled, else user-cluster)."""
    df: int
    """Degrees of freedom of the t reference: min(users, items) - 1 (users - 1 when one-way)."""
    user_ci_low: float
    """Lower bound of the percentile CI from resampling user clusters only (items fixed)."""
    user_ci_high: float
    """Upper bound of that user-only CI."""
    user_se: float
    """Bootstrap SD of abs_lift from resampling user clusters only."""
    n_users: int
    """Observations (users, or user-days in a pooled window)."""
    n_clusters: int
    """Distinct users (the resampled clusters)."""
    n_items: int
    """Distinct truth items (resampled when ``two_way``); 0 when no pairs were given."""
    two_way: bool
    """Whether items were resampled too."""

    def as_dict(self) -> dict[str, float | int | bool]:
        return asdict(self)


def t_p_value(estimate: float, se: float, df: int) -> float:
    """Two-sided p of ``estimate = 0`` from ``estimate / se`` and Student's t with ``df`` degrees.

    ``se == 0`` (every resample equal): p = 1 when the estimate is 0, else 0. NaN when df < 1.
    Unlike a percentile-bootstrap p, this p has no ``2 / (B + 1)`` floor.
    """
    from scipy.special import stdtr  # Student's t CDF (scipy.special imports far faster than scipy.stats)

    if df < 1 or not (math.isfinite(estimate) and math.isfinite(se)):
        return float("nan")
    if se <= 0.0:
        return 1.0 if estimate == 0.0 else 0.0
    return float(2.0 * stdtr(df, -abs(estimate) / se))


def _multinomial_counts(rng: np.random.Generator, n_boot: int, n: int) -> np.ndarray:
    """(n_boot, n) counts of ``n`` draws with replacement from ``n`` units, one row per resample."""
    idx = rng.integers(0, n, size=(n_boot, n))
    idx += (np.arange(n_boot) * n)[:, None]
    return np.bincount(idx.ravel(), minlength=n_boot * n).reshape(n_boot, n).astype(np.float64)


def _resampling_variance(totals: np.ndarray) -> float:
    """Exact variance of ``sum_j V_j * totals_j`` under multinomial weights V over the units j."""
    n = totals.shape[0]
    if n == 0:
        return 0.0
    return float(np.sum(totals**2) - totals.sum() ** 2 / n)


def cluster_bootstrap(
    obs_cluster: np.ndarray,
    treatment: np.ndarray,
    baseline: np.ndarray,
    *,
    pair_obs: np.ndarray | None = None,
    pair_item: np.ndarray | None = None,
    pair_treatment: np.ndarray | None = None,
    pair_baseline: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> ClusterLiftStats:
    """Paired lift of the mean per-observation metric; users (and items) resampled as clusters.

    Args:
        obs_cluster: per observation (a user, or a user-day in a pooled window), its user
            cluster (any non-negative ints). All of a cluster's observations are drawn together.
        treatment / baseline: per-observation metric values of the two arms.
        pair_obs, pair_item, pair_treatment, pair_baseline: optional two-way input, one entry
            per (observation, truth item) pair: the observation index, the item (any
            non-negative ints) and each arm's *contribution* of that item to the observation's
            metric (per observation they must sum to ``treatment`` / ``baseline``).

    One-way (no pairs): ``se`` is the SD of the paired mean difference over ``n_boot``
    resamples of user clusters (multinomial weights W); the CI is ``abs_lift -/+ t * se``
    with ``df = clusters - 1``.

    Two-way (users AND items random, docs/statistics.md): resampling users and items
    independently (Owen 2007's pigeonhole bootstrap, product weights W_u * V_i) counts the
    pair-level noise about three times (Var(W V) = 3), which makes it conservative. The
    variance used is the moment-corrected sum (as in Cameron, Gelbach & Miller 2011's
    two-way clustering) of three resampling variances of the same linear statistic:
    ``se^2 = Var_W + Var_V - Var_P`` with Var_W from the user-cluster bootstrap above,
    Var_V / Var_P the exact variances of the item-only / pair-only multinomial bootstraps
    (``(sum_j D_j^2 - (sum_j D_j)^2 / J) / N^2`` over items / pairs j with delta totals
    D_j), floored at Var_W (never narrower than the user-only interval); ``df = min(users,
    items) - 1``.
    """
    cl = np.asarray(obs_cluster, dtype=np.int64)
    t = np.asarray(treatment, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    if not (cl.ndim == t.ndim == b.ndim == 1 and cl.shape == t.shape == b.shape):
        raise StatsError(
            f"obs_cluster, treatment and baseline must be 1-D arrays of the same observations, got shapes "
            f"{cl.shape}, {t.shape}, {b.shape}."
        )
    if not (np.isfinite(t).all() and np.isfinite(b).all()):
        raise StatsError("treatment/baseline contain NaN or inf; per-user metrics must be finite.")
    if not 0.0 < alpha < 1.0:
        raise StatsError(f"alpha must be in (0, 1), got {alpha}.")
    if n_boot < 2:
        raise StatsError(f"n_boot must be >= 2, got {n_boot}.")
    n = t.shape[0]
    nan = float("nan")
    two_way = pair_obs is not None
    if n == 0:
        return ClusterLiftStats(nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, 0, nan, nan, nan, 0, 0, 0, two_way)
    if cl.min() < 0:
        raise StatsError("obs_cluster must hold cluster ids >= 0.")
    _, cl = np.unique(cl, return_inverse=True)
    n_clusters = int(cl.max()) + 1
    mean_t, mean_b = float(t.mean()), float(b.mean())
    abs_lift = mean_t - mean_b
    rel_lift = mean_t / mean_b - 1.0 if mean_b != 0.0 else nan

    n_items = 0
    var_extra = 0.0
    if two_way:
        po = np.asarray(pair_obs, dtype=np.int64)
        pi = np.asarray(pair_item, dtype=np.int64)
        pt = np.asarray(pair_treatment, dtype=np.float64)
        pb = np.asarray(pair_baseline, dtype=np.float64)
        if not (po.ndim == 1 and po.shape == pi.shape == pt.shape == pb.shape):
            raise StatsError("pair_obs, pair_item, pair_treatment and pair_baseline must be 1-D and aligned.")
        if po.size and (po.min() < 0 or po.max() >= n or pi.min() < 0):
            raise StatsError(f"pair_obs must index the {n} observations and pair_item hold ids >= 0.")
        sums_t = np.bincount(po, weights=pt, minlength=n)
        sums_b = np.bincount(po, weights=pb, minlength=n)
        ok = np.isclose(sums_t, t, atol=1e-9) & np.isclose(sums_b, b, atol=1e-9)
        if not ok.all():
            bad = int(np.flatnonzero(~ok)[0])
            raise StatsError(
                f"pair contributions of observation {bad} sum to ({sums_t[bad]}, {sums_b[bad]}) but its metric "
                f"values are ({t[bad]}, {b[bad]}); contributions must add up to the per-user metric."
            )
        pd = pt - pb
        if po.size:
            _, pi = np.unique(pi, return_inverse=True)
            n_items = int(pi.max()) + 1
            var_items = _resampling_variance(np.bincount(pi, weights=pd, minlength=n_items)) / n**2
            var_pairs = _resampling_variance(pd) / n**2
            var_extra = var_items - var_pairs

    rng = np.random.default_rng(seed)
    obs_per_cluster = np.bincount(cl, minlength=n_clusters).astype(np.float64)
    cluster_sums = np.stack([np.bincount(cl, weights=t, minlength=n_clusters), np.bincount(cl, weights=b, minlength=n_clusters)], axis=1)
    means = np.empty((n_boot, 2))
    chunk = max(1, _MAX_CHUNK_ELEMENTS // n_clusters)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        w = _multinomial_counts(rng, stop - start, n_clusters)
        means[start:stop] = (w @ cluster_sums) / (w @ obs_per_cluster)[:, None]
    d = means[:, 0] - means[:, 1]
    deltas = t - b
    if np.all(deltas == deltas[0]):
        d = np.full(n_boot, float(deltas[0]))  # snap floating-point noise of a constant difference
    q = [alpha / 2.0, 1.0 - alpha / 2.0]
    user_lo, user_hi = (float(x) for x in np.quantile(d, q))
    user_se = float(np.std(d, ddof=1))
    se = math.sqrt(max(user_se**2 + var_extra, user_se**2))
    df = (min(n_clusters, n_items) if two_way else n_clusters) - 1
    if df >= 1:
        from scipy.special import stdtrit

        crit = float(stdtrit(df, 1.0 - alpha / 2.0))
        lo, hi = abs_lift - crit * se, abs_lift + crit * se
    else:
        lo = hi = nan
    if mean_b != 0.0 and np.all(means[:, 1] != 0.0) and df >= 1:
        rlo, rhi = (float(x) for x in np.quantile(means[:, 0] / means[:, 1] - 1.0, q))
        widen = se / user_se if user_se > 0 else 1.0
        rlo, rhi = rel_lift - (rel_lift - rlo) * widen, rel_lift + (rhi - rel_lift) * widen
    else:
        rlo = rhi = nan
    return ClusterLiftStats(
        value=mean_t,
        baseline_value=mean_b,
        abs_lift=abs_lift,
        rel_lift=rel_lift,
        ci_low=lo,
        ci_high=hi,
        rel_ci_low=rlo,
        rel_ci_high=rhi,
        p_value=t_p_value(abs_lift, se, df),
        se=se,
        df=int(df),
        user_ci_low=user_lo,
        user_ci_high=user_hi,
        user_se=user_se,
        n_users=int(n),
        n_clusters=n_clusters,
        n_items=n_items,
        two_way=two_way,
    )


# --------------------------------------------------------------------------- calibration by simulation


@dataclass(frozen=True)
class SimWorld:
    """A cheap replicate world for calibrating the lift statistics (docs/statistics.md, "Calibration").

    Each user-day ranks a shared pool of items; its truth items are drawn by item popularity.
    A truth item is a hit for the baseline arm with probability ``base_i`` and for the
    treatment arm with ``base_i + effect + item_i + user_u``, where ``item_i`` (shared by every
    user whose truth holds item i) and ``user_u`` are uniform noises with mean 0. The per-user
    metric is recall (hits / truth items), so the true lift is exactly ``effect``.
    """

    n_users: int = 200
    """Distinct users (clusters)."""
    n_items: int = 40
    """Items in the shared pool (the cold items of a cold-item cell)."""
    mean_truth: float = 3.0
    """Mean truth items per user-day (1 + Poisson(mean_truth - 1))."""
    mean_days: float = 1.0
    """Mean evaluated days per user (1 + Poisson(mean_days - 1)); above 1 pools user-days."""
    zipf: float = 0.8
    """Item popularity exponent (probability of item rank r proportional to r^-zipf)."""
    item_effect: float = 0.15
    """Half-width of the uniform per-item treatment effect shared by all users (the two-way term)."""
    user_effect: float = 0.05
    """Half-width of the uniform per-user treatment effect."""
    effect: float = 0.0
    """True average lift of the treatment arm (0: the null world)."""

    def __post_init__(self) -> None:
        if 0.3 - self.item_effect - self.user_effect + min(self.effect, 0.0) < 0 or 0.5 + self.item_effect + self.user_effect + max(self.effect, 0.0) > 1:
            raise StatsError("SimWorld: base rates 0.3-0.5 plus effects must stay inside [0, 1]; lower item_effect/user_effect/effect.")


@dataclass(frozen=True)
class SimCell:
    """One simulated cell: per-observation values and per-pair contributions of both arms."""

    obs_cluster: np.ndarray
    treatment: np.ndarray
    baseline: np.ndarray
    pair_obs: np.ndarray
    pair_item: np.ndarray
    pair_treatment: np.ndarray
    pair_baseline: np.ndarray


def simulate_cell(world: SimWorld, rng: np.random.Generator) -> SimCell:
    """Draw one replicate cell of ``world`` (new item and user effects each time)."""
    days = 1 + rng.poisson(max(world.mean_days - 1.0, 0.0), world.n_users)
    obs_cluster = np.repeat(np.arange(world.n_users), days)
    n_obs = obs_cluster.size
    n_truth = 1 + rng.poisson(max(world.mean_truth - 1.0, 0.0), n_obs)
    pair_obs = np.repeat(np.arange(n_obs), n_truth)
    pop = np.arange(1, world.n_items + 1, dtype=np.float64) ** -world.zipf
    pair_item = rng.choice(world.n_items, size=pair_obs.size, p=pop / pop.sum())
    base = rng.uniform(0.3, 0.5, world.n_items)
    item_eff = rng.uniform(-world.item_effect, world.item_effect, world.n_items)
    user_eff = rng.uniform(-world.user_effect, world.user_effect, world.n_users)
    p_b = base[pair_item]
    p_t = p_b + world.effect + item_eff[pair_item] + user_eff[obs_cluster[pair_obs]]
    weight = 1.0 / n_truth[pair_obs]
    ct = (rng.random(pair_obs.size) < p_t) * weight
    cb = (rng.random(pair_obs.size) < p_b) * weight
    return SimCell(
        obs_cluster=obs_cluster,
        treatment=np.bincount(pair_obs, weights=ct, minlength=n_obs),
        baseline=np.bincount(pair_obs, weights=cb, minlength=n_obs),
        pair_obs=pair_obs,
        pair_item=pair_item,
        pair_treatment=ct,
        pair_baseline=cb,
    )


@dataclass(frozen=True)
class Calibration:
    """Rates over replicate worlds (each a share of ``replicates``)."""

    replicates: int
    """Replicate worlds drawn."""
    effect: float
    """True lift of the worlds."""
    reject_two_way: float
    """Share with two-way p < alpha (false-positive rate when effect = 0, power otherwise)."""
    reject_two_way_bonferroni: float
    """Share with two-way p < alpha / m (what a primary endpoint needs in a family of m under Holm's first step)."""
    reject_user: float
    """Share whose user-cluster-only CI excludes 0 (items fixed)."""
    reject_user_day: float
    """Share whose old interval (user-days resampled as independent rows, percentile CI) excludes 0."""
    cover_two_way: float
    """Share whose two-way CI covers the true effect."""
    cover_user: float
    """Share whose user-cluster-only CI covers it."""
    cover_user_day: float
    """Share whose old user-day CI covers it."""
    width_ratio: float
    """Median two-way CI width / user-cluster-only CI width."""


def calibrate(world: SimWorld, replicates: int = 200, n_boot: int = 300, seed: int = 0, alpha: float = 0.05, family_size: int = 6) -> Calibration:
    """Run ``replicates`` worlds through :func:`cluster_bootstrap` (two-way and users only) and the old
    :func:`paired_bootstrap`; report rejection and coverage rates of the true ``world.effect``."""
    rng = np.random.default_rng(seed)
    rej = np.zeros(4)
    cov = np.zeros(3)
    ratios = []
    for r in range(replicates):
        c = simulate_cell(world, rng)
        st = cluster_bootstrap(
            c.obs_cluster, c.treatment, c.baseline, pair_obs=c.pair_obs, pair_item=c.pair_item,
            pair_treatment=c.pair_treatment, pair_baseline=c.pair_baseline, n_boot=n_boot, seed=seed + r, alpha=alpha,
        )
        old = paired_bootstrap(c.treatment, c.baseline, n_boot=n_boot, seed=seed + r, alpha=alpha)
        e = world.effect
        rej += [st.p_value < alpha, st.p_value < alpha / family_size, not st.user_ci_low <= 0 <= st.user_ci_high, not old.ci_low <= 0 <= old.ci_high]
        cov += [st.ci_low <= e <= st.ci_high, st.user_ci_low <= e <= st.user_ci_high, old.ci_low <= e <= old.ci_high]
        ratios.append((st.ci_high - st.ci_low) / max(st.user_ci_high - st.user_ci_low, 1e-12))
    rej /= replicates
    cov /= replicates
    return Calibration(
        replicates=replicates, effect=world.effect,
        reject_two_way=float(rej[0]), reject_two_way_bonferroni=float(rej[1]), reject_user=float(rej[2]), reject_user_day=float(rej[3]),
        cover_two_way=float(cov[0]), cover_user=float(cov[1]), cover_user_day=float(cov[2]), width_ratio=float(np.median(ratios)),
    )
