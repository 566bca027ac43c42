"""Lift of each arm over its baselines (docs/statistics.md).

- Every cell: paired lift of the mean per-user metric; users resampled as clusters
  (in a pooled window all of a user's days together, ``cluster_id``).
- Cells whose users share truth items (item segments, the ``cold_only`` scope): items
  are resampled too (two-way, :func:`stats.cluster_bootstrap`), from the per-pair ranks
  of ``per_pair.parquet``.
- Primary endpoints (``headline.PrimaryEndpoint``) form the confirmatory family: Holm
  runs over them only, per protocol; every other cell is ``exploratory`` (CI and raw p,
  ``p_adjusted`` NULL: never "significant").
- Cells under ``min_users`` distinct users get no p; cells whose ranked set has no more
  than K items are ``trivial`` (no p, no lift claim).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from recsys_assets.lib.evaluation.headline import DEFAULT_PRIMARY_ENDPOINTS, PrimaryEndpoint, resolve_endpoints
from recsys_assets.lib.evaluation.stats import MIN_USERS_DEFAULT, TOO_FEW_USERS, TRIVIAL, cluster_bootstrap, holm_adjust

LIFT_COLUMNS = [
    "protocol", "scope", "arm", "baseline_arm", "segment_kind", "segment", "metric", "k", "value", "baseline_value",
    "abs_lift", "rel_lift", "ci_low", "ci_high", "rel_ci_low", "rel_ci_high", "p_value", "p_adjusted", "n_users", "flag",
    "se", "user_ci_low", "user_ci_high", "n_clusters", "n_items", "ci_method", "role",
]
_STRING_COLUMNS = ("protocol", "scope", "arm", "baseline_arm", "segment_kind", "segment", "metric", "flag", "ci_method", "role")
_INT_COLUMNS = ("k", "n_users", "n_clusters", "n_items")
LIFT_SCHEMA = {c: (pl.String if c in _STRING_COLUMNS else pl.Int64 if c in _INT_COLUMNS else pl.Float64) for c in LIFT_COLUMNS}
WARMUP_COLUMNS = [
    "protocol", "scope", "arm", "baseline_arm", "segment_kind", "history_bucket", "bucket_order", "metric", "k",
    "value", "baseline_value", "abs_lift", "ci_low", "ci_high", "n_users",
]
PRIMARY = "primary"
EXPLORATORY = "exploratory"
TWO_WAY = "two_way"
USER_CLUSTER = "user_cluster"
TWO_WAY_SCOPES = ("cold_only",)
"""Scopes whose every cell ranks the same small item set: items are resampled in all their cells."""
TWO_WAY_KINDS = ("item", "item_bucket")
"""Segment kinds whose truth is restricted to an item segment: items resampled in every scope."""
_KEYS = ["protocol", "scope", "segment_kind", "segment", "metric", "k"]


@dataclass(frozen=True)
class LiftConfig:
    """How lift cells are computed."""

    n_boot: int = 1000
    """Bootstrap resamples of user clusters per cell (the p-value is a t p from their SD: no 2/(B+1) floor)."""
    seed: int = 0
    """Bootstrap seed (fixed: the same data gives the same CI)."""
    min_users: int = MIN_USERS_DEFAULT
    """Cells with fewer distinct users are flagged ``too_few_users`` and get no p-value."""
    alpha: float = 0.05
    """1 - confidence level of the CIs; level of the Holm-adjusted primary tests."""
    two_way: bool = True
    """Resample items too in cells whose users share truth items (needs ``per_pair`` ranks)."""
    primary_endpoints: tuple[PrimaryEndpoint, ...] = DEFAULT_PRIMARY_ENDPOINTS
    """The confirmatory family (per protocol); every other cell is exploratory."""
    warmup_metrics: tuple[str, ...] = ("recall", "ndcg")
    """Metrics of the warm-up curves."""


def comparisons_for(arms: list[str], lm_encoders: list[str]) -> list[tuple[str, str]]:
    """(arm, baseline) pairs of EVALUATION.md that exist among ``arms``."""
    pairs = []
    present = set(arms)
    for lm in lm_encoders:
        for suffix in sorted({a.split("+", 1)[1] for a in arms if "+" in a} | {""}):
            tag = f"+{suffix}" if suffix else ""
            arm = f"ranker_{lm}{tag}"
            for base in (f"ranker_tfidf{tag}", f"ranker_no_text{tag}", "als", "popularity"):
                pairs.append((arm, base))
        pairs.append((f"content_{lm}", "content_tfidf"))
    pairs.append(("ranker_tfidf", "ranker_no_text"))
    seen, out = set(), []
    for a, b in pairs:
        if a in present and b in present and a != b and (a, b) not in seen:
            seen.add((a, b))
            out.append((a, b))
    return out


def _paired(per_user: pl.DataFrame, arm: str, base: str, keys: list[str]) -> pl.DataFrame:
    t = per_user.filter(pl.col("arm") == arm).drop("arm")
    b = per_user.filter(pl.col("arm") == base).drop("arm").rename({"value": "baseline"})
    cols = [c for c in b.columns if c in (*keys, "user_id", "baseline")]
    return t.join(b.select(cols), on=[*keys, "user_id"], how="inner")


def pair_contributions(cell_pairs: pl.DataFrame, metrics: pl.DataFrame) -> pl.DataFrame:
    """Each truth pair's contribution to its user's metric, per (metric, k) of ``metrics``.

    ``cell_pairs``: (cell keys without metric/k, user_id, item_id, rank) where the pairs of
    a (cell, user) are the user's truth in that cell. Contributions sum, per user, to the
    per-user metric of ``metrics.per_user_metrics``: recall ``hit / |T|``; ndcg ``hit /
    log2(rank + 1) / IDCG(min(K, |T|))``; hitrate 1 and mrr ``1 / rank`` on the user's
    best-ranked hit (0 elsewhere).
    """
    group = ["protocol", "scope", "segment_kind", "segment", "user_id"]
    out = []
    for metric, k in metrics.select("metric", "k").unique().sort("metric", "k").iter_rows():
        hit = pl.col("rank").is_not_null() & (pl.col("rank") <= k)
        f = cell_pairs.with_columns(_hit=hit, _n=pl.len().over(group))
        if metric == "recall":
            c = pl.when(pl.col("_hit")).then(1.0 / pl.col("_n")).otherwise(0.0)
        elif metric == "ndcg":
            m = np.arange(1, k + 1)
            idcg = np.cumsum(1.0 / np.log2(m + 1.0))
            lookup = pl.DataFrame({"_m": m.astype(np.int64), "_idcg": idcg})
            f = f.with_columns(_m=pl.min_horizontal(pl.col("_n"), pl.lit(k)).cast(pl.Int64)).join(lookup, on="_m", how="left", maintain_order="left")
            c = pl.when(pl.col("_hit")).then(1.0 / (pl.col("rank").cast(pl.Float64) + 1.0).log(2) / pl.col("_idcg")).otherwise(0.0)
        elif metric in ("hitrate", "mrr"):
            first = pl.when(pl.col("_hit")).then(pl.col("rank")).otherwise(None).min().over(group)
            is_first = pl.col("_hit") & (pl.col("rank") == first)
            c = pl.when(is_first).then(1.0 if metric == "hitrate" else 1.0 / pl.col("rank").cast(pl.Float64)).otherwise(0.0)
        else:
            continue
        out.append(f.select(*group, "item_id", pl.lit(metric).alias("metric"), pl.lit(k, pl.Int64).alias("k"), c.cast(pl.Float64).alias("c")))
    return pl.concat(out) if out else pl.DataFrame()


def _two_way_pairs(per_user_arm: pl.DataFrame, pairs_arm: pl.DataFrame, kinds, extra_cells: set[tuple[str, str, str]]) -> pl.DataFrame:
    """(protocol, scope, segment_kind, segment, user_id, item_id, rank) of the two-way cells of one arm:
    every user cell of the two-way scopes, every item cell, and ``extra_cells`` (scope, kind, segment)."""
    cells = per_user_arm.select("protocol", "scope", "segment_kind", "segment", "user_id").unique()
    parts = []
    user_kinds = [k for k in ("all", "user", "user_bucket") if k in kinds]
    extra = pl.lit(False)
    for scope, kind, seg in sorted(extra_cells):
        extra = extra | ((pl.col("scope") == scope) & (pl.col("segment_kind") == kind) & (pl.col("segment") == seg))
    scoped = cells.filter((pl.col("scope").is_in(list(TWO_WAY_SCOPES)) | extra) & pl.col("segment_kind").is_in(user_kinds))
    if scoped.height:
        parts.append(scoped.join(pairs_arm.select("protocol", "scope", "user_id", "item_id", "rank"), on=["protocol", "scope", "user_id"]))
    for kind, col in (("item", "item_segment"), ("item_bucket", "item_bucket")):
        if kind not in kinds:
            continue
        p = pairs_arm.filter(pl.col(col).is_not_null()).select(
            "protocol", "scope", pl.lit(kind).alias("segment_kind"), pl.col(col).alias("segment"), "user_id", "item_id", "rank"
        )
        parts.append(p.join(cells, on=["protocol", "scope", "segment_kind", "segment", "user_id"], how="semi"))
    return pl.concat(parts) if parts else pl.DataFrame()


def _codes(values: pl.Series) -> np.ndarray:
    """Integer codes of string ids (same id -> same code within the call)."""
    return values.rank("dense").to_numpy().astype(np.int64) - 1


def _role_table(comparisons: list[tuple[str, str]], endpoints: tuple[PrimaryEndpoint, ...]) -> dict[tuple, str]:
    resolved = resolve_endpoints(endpoints, comparisons)
    return {(e.arm, e.baseline_arm, e.scope, e.segment_kind, e.segment, e.metric, e.k): e.name for e in resolved}


def lift_rows(
    per_user: pl.DataFrame,
    comparisons: list[tuple[str, str]],
    cfg: LiftConfig,
    kinds=("all", "user", "item"),
    per_pair: pl.DataFrame | None = None,
    ranked_items: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One row per (protocol, scope, arm, baseline, segment, metric, k): lift, CI, p, role, flag.

    Args:
        per_user: per-user metrics (``evaluate.PER_USER_SCHEMA``), optionally with
            ``cluster_id`` (the user behind a pooled user-day; default ``user_id``).
        comparisons: (arm, baseline) pairs.
        per_pair: per-pair ranks (``evaluate.PER_PAIR_SCHEMA``, same ``user_id`` as
            ``per_user``); without them every cell is resampled over users only.
        ranked_items: (protocol, scope, n_ranked) of a daily report: cells with
            ``n_ranked <= k`` are flagged ``trivial``.
    """
    data = per_user.filter(pl.col("segment_kind").is_in(list(kinds)))
    if "cluster_id" not in data.columns:
        data = data.with_columns(cluster_id=pl.col("user_id"))
    data = data.with_columns(_cluster=pl.col("cluster_id").rank("dense").cast(pl.Int64))
    roles = _role_table(comparisons, cfg.primary_endpoints)
    trivial: dict[tuple[str, str], float] = {}
    if ranked_items is not None and ranked_items.height:
        trivial = {(p, s): n for p, s, n in ranked_items.select("protocol", "scope", "n_ranked").iter_rows()}
    item_codes = None
    if per_pair is not None and per_pair.height and cfg.two_way:
        item_codes = per_pair.select("item_id").unique().sort("item_id").with_row_index("_item")
    rows = []
    for arm, base in comparisons:
        paired = _paired(data.drop("bucket_order"), arm, base, _KEYS)
        if paired.height == 0:
            continue
        paired = paired.sort(*_KEYS, "user_id").with_columns(_obs=pl.int_range(pl.len()).over(_KEYS))
        two_way: dict[tuple, pl.DataFrame] = {}
        if item_codes is not None:
            # Primary cells always resample items: their users share the items they are ranked over.
            extra = {(sc, kd, sg) for (a, b, sc, kd, sg, _, _) in roles if (a, b) == (arm, base)}
            tp = _two_way_pairs(data.filter(pl.col("arm") == arm), per_pair.filter(pl.col("arm") == arm), kinds, extra)
            bp = _two_way_pairs(data.filter(pl.col("arm") == base), per_pair.filter(pl.col("arm") == base), kinds, extra)
            if tp.height and bp.height:
                metrics = paired.select("metric", "k").unique()
                ct = pair_contributions(tp, metrics)
                cb = pair_contributions(bp, metrics).rename({"c": "cb"})
                pk = [*_KEYS, "user_id", "item_id"]
                both = ct.join(cb, on=pk, how="full", coalesce=True).with_columns(pl.col("c").fill_null(0.0), pl.col("cb").fill_null(0.0))
                both = both.join(paired.select(*_KEYS, "user_id", "_obs"), on=[*_KEYS, "user_id"], how="inner").join(item_codes, on="item_id")
                # Sorted so the variance sums add in one fixed order (same bits on a rerun).
                two_way = both.sort(*_KEYS, "_obs", "_item").partition_by(_KEYS, as_dict=True, maintain_order=True)
        for key, grp in paired.partition_by(_KEYS, as_dict=True, maintain_order=True).items():
            d = dict(zip(_KEYS, key))
            pairs = two_way.get(tuple(key))
            kw = {}
            role = PRIMARY if (arm, base, d["scope"], d["segment_kind"], d["segment"], d["metric"], d["k"]) in roles else EXPLORATORY
            if pairs is not None and (d["scope"] in TWO_WAY_SCOPES or d["segment_kind"] in TWO_WAY_KINDS or role == PRIMARY):
                kw = dict(pair_obs=pairs["_obs"].to_numpy(), pair_item=pairs["_item"].to_numpy(), pair_treatment=pairs["c"].to_numpy(), pair_baseline=pairs["cb"].to_numpy())
            st = cluster_bootstrap(grp["_cluster"].to_numpy(), grp["value"].to_numpy(), grp["baseline"].to_numpy(), n_boot=cfg.n_boot, seed=cfg.seed, alpha=cfg.alpha, **kw)
            n_ranked = trivial.get((d["protocol"], d["scope"]))
            flag = TRIVIAL if n_ranked is not None and n_ranked <= d["k"] else TOO_FEW_USERS if st.n_clusters < cfg.min_users else None
            rows.append(
                {
                    **d, "arm": arm, "baseline_arm": base, "value": st.value, "baseline_value": st.baseline_value,
                    "abs_lift": st.abs_lift, "rel_lift": st.rel_lift, "ci_low": st.ci_low, "ci_high": st.ci_high,
                    "rel_ci_low": st.rel_ci_low, "rel_ci_high": st.rel_ci_high,
                    "p_value": None if flag else st.p_value, "n_users": st.n_users, "flag": flag, "se": st.se,
                    "user_ci_low": st.user_ci_low, "user_ci_high": st.user_ci_high, "n_clusters": st.n_clusters,
                    "n_items": st.n_items if st.two_way else None, "ci_method": TWO_WAY if st.two_way else USER_CLUSTER, "role": role,
                }
            )
    if not rows:
        return pl.DataFrame(schema=LIFT_SCHEMA)
    out = pl.DataFrame(rows, schema={c: v for c, v in LIFT_SCHEMA.items() if c != "p_adjusted"}).with_columns(pl.col("p_value").fill_nan(None))
    return add_holm(out).select(LIFT_COLUMNS).sort("protocol", "scope", "arm", "baseline_arm", "segment_kind", "segment", "metric", "k")


def add_holm(rows: pl.DataFrame) -> pl.DataFrame:
    """``p_adjusted``: Holm over the primary rows of each protocol (the confirmatory family); NULL elsewhere."""
    out = rows.with_row_index("_i")
    adjusted = [pl.DataFrame(schema={"_i": pl.UInt32, "p_adjusted": pl.Float64})]
    for _, grp in out.filter((pl.col("role") == PRIMARY) & pl.col("p_value").is_not_null()).group_by("protocol", maintain_order=True):
        adjusted.append(pl.DataFrame({"_i": grp["_i"], "p_adjusted": holm_adjust(grp["p_value"].to_numpy().astype(float))}, schema={"_i": pl.UInt32, "p_adjusted": pl.Float64}))
    return out.join(pl.concat(adjusted), on="_i", how="left").drop("_i")


def warmup_rows(per_user: pl.DataFrame, comparisons: list[tuple[str, str]], cfg: LiftConfig) -> pl.DataFrame:
    """Lift per history bucket (users by their events, items by theirs at the snapshot)."""
    data = per_user.filter(pl.col("segment_kind").is_in(["user_bucket", "item_bucket"]) & pl.col("metric").is_in(list(cfg.warmup_metrics)))
    if "cluster_id" not in data.columns:
        data = data.with_columns(cluster_id=pl.col("user_id"))
    data = data.with_columns(_cluster=pl.col("cluster_id").rank("dense").cast(pl.Int64))
    keys = ["protocol", "scope", "segment_kind", "segment", "bucket_order", "metric", "k"]
    rows = []
    for arm, base in comparisons:
        paired = _paired(data, arm, base, keys)
        for key, grp in paired.partition_by(keys, as_dict=True, maintain_order=True).items():
            st = cluster_bootstrap(grp["_cluster"].to_numpy(), grp["value"].to_numpy(), grp["baseline"].to_numpy(), n_boot=cfg.n_boot, seed=cfg.seed, alpha=cfg.alpha)
            d = dict(zip(keys, key))
            rows.append(
                {
                    "protocol": d["protocol"], "scope": d["scope"], "arm": arm, "baseline_arm": base,
                    "segment_kind": d["segment_kind"].removesuffix("_bucket"), "history_bucket": d["segment"],
                    "bucket_order": d["bucket_order"], "metric": d["metric"], "k": d["k"], "value": st.value,
                    "baseline_value": st.baseline_value, "abs_lift": st.abs_lift, "ci_low": st.ci_low,
                    "ci_high": st.ci_high, "n_users": st.n_users,
                }
            )
    if not rows:
        return pl.DataFrame(schema={c: pl.Float64 for c in WARMUP_COLUMNS})
    return pl.DataFrame(rows, infer_schema_length=None).select(WARMUP_COLUMNS).sort("protocol", "scope", "arm", "baseline_arm", "segment_kind", "bucket_order", "metric", "k")


def pool_days(per_user_by_day: dict) -> pl.DataFrame:
    """Concatenate daily per-user (or per-pair) frames: a user evaluated on two days is two
    observations (``user_id`` = ``day|user``) of one cluster (``cluster_id`` = the user)."""
    frames = [
        f.with_columns(cluster_id=pl.col("user_id"), user_id=pl.format("{}|{}", pl.lit(str(d)), pl.col("user_id")))
        for d, f in sorted(per_user_by_day.items())
        if f is not None
    ]
    return pl.concat(frames) if frames else pl.DataFrame()
