"""Lift statistics (docs/statistics.md): user-cluster and two-way variances, t p-values, Holm, small cells.

Two estimators live here:

- :func:`cell_lifts` (every report cell, all cells of a report at once; :func:`cluster_bootstrap`
  for one cell): users are resampled as *clusters* (all of a user's days together) and, in
  cells whose users share truth items, items independently too (the two-way "pigeonhole"
  bootstrap of Owen 2007, moment-corrected). The variances are the exact (closed-form)
  variances of those multinomial bootstraps of the linearized statistic, so there is no
  Monte Carlo noise and no ``2 / (B + 1)`` floor: CI and p come from Student's t.
- :func:`paired_bootstrap` (kept for comparison: the interval reports carried before, and
  the ranker gate benchmark): resample the rows (user-days) as independent, percentile CI
  and percentile p with its ``2 / (B + 1)`` floor.

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
import polars as pl

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
    """Lower bound of the CI of rel_lift (delta method over user clusters, widened by se / user_se)."""
    rel_ci_high: float
    """Upper bound of that CI; NaN when the baseline mean is 0."""
    p_value: float
    """Two-sided p of abs_lift = 0 from ``abs_lift / se`` and Student's t with ``df``; NaN when df < 1."""
    se: float
    """Standard error of abs_lift (two-way when items are resampled, else user clusters)."""
    df: int
    """Degrees of freedom of the t reference: min(users, items) - 1 (users - 1 when one-way)."""
    user_ci_low: float
    """Lower bound of the CI from resampling user clusters only (items fixed): lift -/+ t(users - 1) * user_se."""
    user_ci_high: float
    """Upper bound of that user-only CI."""
    user_se: float
    """Standard error of abs_lift from resampling user clusters only."""
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


def cell_lifts(obs: pl.DataFrame, keys: list[str], pairs: pl.DataFrame | None = None, alpha: float = 0.05) -> pl.DataFrame:
    """Paired lift of every cell at once, users as clusters and, where ``pairs`` are given, items too.

    Args:
        obs: one row per observation (a user, or a user-day of a pooled window): ``keys``
            (the cell), ``cluster`` (the user behind the observation), ``user_id`` (the
            observation) and ``t`` / ``b``, the treatment / baseline metric values.
        pairs: optional, one row per (observation, truth item) of the two-way cells:
            ``keys``, ``user_id``, ``item_id``, ``ct`` / ``cb``, each arm's contribution of that
            item to the observation's metric (per observation they must sum to ``t`` / ``b``).
        alpha: 1 - confidence level.

    Returns one row per cell: ``keys`` + the fields of :class:`ClusterLiftStats`.

    Variance (docs/statistics.md): the exact variances of multinomial bootstraps of the
    linearized paired mean difference, in closed form. Users only:
    ``Var_W = sum_g (D_g - lift * n_g)^2 / N^2`` over user clusters g (D_g: the cluster's
    summed deltas, n_g its observations). Two-way cells add the item term and remove the
    pair term counted in both: ``se^2 = max(Var_W + Var_V - Var_P, Var_W)`` with
    ``Var_V = (sum_i D_i^2 - (sum_i D_i)^2 / I) / N^2`` over items and ``Var_P`` the same over
    (observation, item) pairs. CI and p from Student's t with ``df = min(users, items) - 1``
    (``users - 1`` one-way).
    """
    from scipy.special import stdtr, stdtrit

    if not 0.0 < alpha < 1.0:
        raise StatsError(f"alpha must be in (0, 1), got {alpha}.")
    missing = [c for c in (*keys, "cluster", "user_id", "t", "b") if c not in obs.columns]
    if missing:
        raise StatsError(f"cell_lifts: obs lacks column(s) {missing}.")
    bad = obs.filter(~(pl.col("t").is_finite() & pl.col("b").is_finite()))
    if bad.height:
        raise StatsError(f"treatment/baseline contain NaN or inf (e.g. {bad.row(0, named=True)}); per-user metrics must be finite.")
    # Fixed summation order: the same data give the same bits whatever order joins returned.
    obs = obs.sort([*keys, "cluster", "user_id"], nulls_last=True)
    cells = obs.group_by(keys, maintain_order=True).agg(
        pl.len().alias("n_users"), pl.col("t").mean().alias("value"), pl.col("b").mean().alias("baseline_value"), pl.col("cluster").n_unique().alias("n_clusters")
    )
    clusters = (
        obs.group_by([*keys, "cluster"], maintain_order=True)
        .agg(pl.col("t").sum().alias("_st"), pl.col("b").sum().alias("_sb"), pl.len().alias("_nc"))
        .join(cells.select(*keys, "value", "baseline_value"), on=keys, nulls_equal=True, maintain_order="left")
        .with_columns((pl.col("_st") - pl.col("value") * pl.col("_nc")).alias("_rt"), (pl.col("_sb") - pl.col("baseline_value") * pl.col("_nc")).alias("_rb"))
        .group_by(keys, maintain_order=True)
        .agg(((pl.col("_rt") - pl.col("_rb")) ** 2).sum().alias("_vw"), (pl.col("_rt") ** 2).sum().alias("_vtt"), (pl.col("_rb") ** 2).sum().alias("_vbb"), (pl.col("_rt") * pl.col("_rb")).sum().alias("_vtb"))
    )
    out = cells.join(clusters, on=keys, nulls_equal=True)
    if pairs is not None and pairs.height:
        p = pairs.sort([*keys, "user_id", "item_id"], nulls_last=True).with_columns((pl.col("ct") - pl.col("cb")).alias("_d"))
        sums = p.group_by([*keys, "user_id"], maintain_order=True).agg(pl.col("ct").sum().alias("_pt"), pl.col("cb").sum().alias("_pb"))
        check = obs.join(sums, on=[*keys, "user_id"], how="inner", nulls_equal=True).filter(
            ((pl.col("_pt") - pl.col("t")).abs() > 1e-9) | ((pl.col("_pb") - pl.col("b")).abs() > 1e-9)
        )
        if check.height:
            raise StatsError(
                f"pair contributions of {check.height} observation(s) do not add up to their metric values, e.g. "
                f"{check.row(0, named=True)}; contributions must sum to the per-user metric."
            )
        covered = obs.join(sums.select(*keys, "user_id"), on=[*keys, "user_id"], how="anti", nulls_equal=True).join(
            p.select(keys).unique(), on=keys, how="semi", nulls_equal=True
        )
        if covered.height:
            raise StatsError(f"{covered.height} observation(s) of two-way cells have no truth pairs, e.g. {covered.row(0, named=True)}.")
        items = (
            p.sort([*keys, "item_id", "user_id"], nulls_last=True).group_by([*keys, "item_id"], maintain_order=True).agg(pl.col("_d").sum().alias("_D"))
            .group_by(keys, maintain_order=True).agg((pl.col("_D") ** 2).sum().alias("_sD2"), pl.col("_D").sum().alias("_sD"), pl.len().alias("n_items"))
        )
        prs = p.group_by(keys, maintain_order=True).agg((pl.col("_d") ** 2).sum().alias("_sd2"), pl.col("_d").sum().alias("_sd"), pl.len().alias("_P"))
        out = out.join(items, on=keys, how="left", nulls_equal=True).join(prs, on=keys, how="left", nulls_equal=True)
    else:
        out = out.with_columns(
            pl.lit(None, pl.Float64).alias("_sD2"), pl.lit(None, pl.Float64).alias("_sD"), pl.lit(None, pl.UInt32).alias("n_items"),
            pl.lit(None, pl.Float64).alias("_sd2"), pl.lit(None, pl.Float64).alias("_sd"), pl.lit(None, pl.UInt32).alias("_P"),
        )
    n2 = pl.col("n_users").cast(pl.Float64) ** 2
    two_way = pl.col("n_items").is_not_null()
    var_w = pl.col("_vw") / n2
    var_extra = ((pl.col("_sD2") - pl.col("_sD") ** 2 / pl.col("n_items")) - (pl.col("_sd2") - pl.col("_sd") ** 2 / pl.col("_P"))) / n2
    out = out.with_columns(
        (pl.col("value") - pl.col("baseline_value")).alias("abs_lift"),
        pl.when(pl.col("baseline_value") != 0).then(pl.col("value") / pl.col("baseline_value") - 1.0).alias("rel_lift"),
        var_w.sqrt().alias("user_se"),
        pl.when(two_way).then(pl.max_horizontal(var_w + var_extra, var_w)).otherwise(var_w).sqrt().alias("se"),
        (pl.when(two_way).then(pl.min_horizontal(pl.col("n_clusters"), pl.col("n_items"))).otherwise(pl.col("n_clusters")).cast(pl.Int64) - 1).alias("df"),
        two_way.alias("two_way"),
        pl.col("n_items").fill_null(0).cast(pl.Int64),
        # Delta method for the ratio of means (user clusters), widened like the absolute CI below.
        (
            (pl.col("_vtt") / pl.col("baseline_value") ** 2
             - 2 * pl.col("value") * pl.col("_vtb") / pl.col("baseline_value") ** 3
             + pl.col("value") ** 2 * pl.col("_vbb") / pl.col("baseline_value") ** 4).clip(lower_bound=0.0).sqrt() / pl.col("n_users")
        ).alias("_rel_se_user"),
    )
    df = out["df"].to_numpy().astype(np.float64)
    ok = df >= 1
    crit = np.full(df.shape, np.nan)
    crit[ok] = stdtrit(df[ok], 1.0 - alpha / 2.0)
    crit_user = np.full(df.shape, np.nan)
    dfu = out["n_clusters"].to_numpy().astype(np.float64) - 1
    oku = dfu >= 1
    crit_user[oku] = stdtrit(dfu[oku], 1.0 - alpha / 2.0)
    lift = out["abs_lift"].to_numpy()
    se = out["se"].to_numpy()
    pval = np.full(df.shape, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.abs(lift) / se
        pval[ok] = 2.0 * stdtr(df[ok], -z[ok])
        zero = ok & (se == 0)
        pval[zero] = np.where(lift[zero] == 0, 1.0, 0.0)
        widen = np.where(out["user_se"].to_numpy() > 0, se / out["user_se"].to_numpy(), 1.0)
    out = out.with_columns(
        pl.Series("_crit", crit), pl.Series("_critu", crit_user), pl.Series("p_value", pval), pl.Series("_widen", widen)
    ).with_columns(
        (pl.col("abs_lift") - pl.col("_crit") * pl.col("se")).alias("ci_low"),
        (pl.col("abs_lift") + pl.col("_crit") * pl.col("se")).alias("ci_high"),
        (pl.col("abs_lift") - pl.col("_critu") * pl.col("user_se")).alias("user_ci_low"),
        (pl.col("abs_lift") + pl.col("_critu") * pl.col("user_se")).alias("user_ci_high"),
        (pl.col("rel_lift") - pl.col("_crit") * pl.col("_rel_se_user") * pl.col("_widen")).alias("rel_ci_low"),
        (pl.col("rel_lift") + pl.col("_crit") * pl.col("_rel_se_user") * pl.col("_widen")).alias("rel_ci_high"),
    )
    fields = [f for f in ClusterLiftStats.__dataclass_fields__]
    return out.select(*keys, *fields).with_columns(pl.col(pl.Float64).fill_nan(None)).sort(keys, nulls_last=True)


def cluster_bootstrap(
    obs_cluster: np.ndarray,
    treatment: np.ndarray,
    baseline: np.ndarray,
    *,
    pair_obs: np.ndarray | None = None,
    pair_item: np.ndarray | None = None,
    pair_treatment: np.ndarray | None = None,
    pair_baseline: np.ndarray | None = None,
    alpha: float = 0.05,
) -> ClusterLiftStats:
    """:func:`cell_lifts` of one cell given as arrays (pairs index the observations by position)."""
    t = np.asarray(treatment, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    cl = np.asarray(obs_cluster)
    if not (cl.ndim == t.ndim == b.ndim == 1 and cl.shape == t.shape == b.shape):
        raise StatsError(f"obs_cluster, treatment and baseline must be 1-D arrays of the same observations, got shapes {cl.shape}, {t.shape}, {b.shape}.")
    nan = float("nan")
    if t.size == 0:
        return ClusterLiftStats(nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, 0, nan, nan, nan, 0, 0, 0, pair_obs is not None)
    obs = pl.DataFrame({"cell": np.zeros(t.size, dtype=np.int8), "cluster": cl, "user_id": np.arange(t.size), "t": t, "b": b})
    pairs = None
    if pair_obs is not None:
        po = np.asarray(pair_obs)
        if po.size and (po.min() < 0 or po.max() >= t.size):
            raise StatsError(f"pair_obs must index the {t.size} observations.")
        pairs = pl.DataFrame({"cell": np.zeros(po.size, dtype=np.int8), "user_id": po, "item_id": np.asarray(pair_item), "ct": np.asarray(pair_treatment, dtype=np.float64), "cb": np.asarray(pair_baseline, dtype=np.float64)})
    row = cell_lifts(obs, ["cell"], pairs, alpha).row(0, named=True)
    row.pop("cell")
    return ClusterLiftStats(**{k: (nan if v is None else v) for k, v in row.items()})


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
            pair_treatment=c.pair_treatment, pair_baseline=c.pair_baseline, alpha=alpha,
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
