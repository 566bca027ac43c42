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
from recsys_assets.lib.evaluation.stats import MIN_USERS_DEFAULT, TOO_FEW_USERS, TRIVIAL, cell_lifts, holm_adjust
from recsys_assets.lib.ranking.arm_spec import NO_TEXT, parse_arm

LIFT_COLUMNS = [
    "protocol", "scope", "arm", "baseline_arm", "segment_kind", "segment", "metric", "k", "value", "baseline_value",
    "abs_lift", "rel_lift", "ci_low", "ci_high", "rel_ci_low", "rel_ci_high", "p_value", "p_adjusted", "n_users", "flag",
    "se", "user_ci_low", "user_ci_high", "n_clusters", "n_items", "ci_method", "role",
]
_STRING_COLUMNS = ("protocol", "scope", "arm", "baseline_arm", "segment_kind", "segment", "metric", "flag", "ci_method", "role")
_INT_COLUMNS = ("k", "n_users", "n_clusters", "n_items")
LIFT_SCHEMA = {c: (pl.String if c in _STRING_COLUMNS else pl.Int64 if c in _INT_COLUMNS else pl.Float64) for c in LIFT_COLUMNS}
_UNADJUSTED_SCHEMA = {c: t for c, t in LIFT_SCHEMA.items() if c != "p_adjusted"}
"""``lift_rows(..., holm=False)``: every column but ``p_adjusted`` (``with_holm`` adds it)."""
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
    """Unused by ``lift_rows`` (its variances are the closed-form variances of the bootstraps, so no
    resamples are drawn); kept so callers that pass it (benchmarks, the ``n_boot`` resource) still work."""
    seed: int = 0
    """Unused for the same reason (the statistics are deterministic)."""
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
    """(arm, baseline) pairs of docs/protocol.md that exist among ``arms``."""
    pairs = []
    present = set(arms)
    slot_policies = sorted({parse_arm(a).slots for a in arms} | {0})
    for lm in lm_encoders:
        for n in slot_policies:
            arm = parse_arm(f"ranker_{lm}").with_slots(n).name
            for base in (parse_arm("ranker_tfidf").with_slots(n).name, parse_arm(NO_TEXT).with_slots(n).name, "als", "popularity"):
                pairs.append((arm, base))
        pairs.append((f"content_{lm}", "content_tfidf"))
    pairs.append(("ranker_tfidf", "ranker_no_text"))
    seen, out = set(), []
    for a, b in pairs:
        if a in present and b in present and a != b and (a, b) not in seen:
            seen.add((a, b))
            out.append((a, b))
    return out


def pair_contributions(cell_pairs: pl.DataFrame, metrics: pl.DataFrame, rank_columns: list[str] | None = None, group: list[str] | None = None) -> pl.DataFrame:
    """Each truth pair's contribution to its user's metric, per (metric, k) of ``metrics``.

    ``cell_pairs``: the ``group`` columns (default: protocol, scope, segment_kind, segment,
    user_id: one cell's user), ``item_id`` and the rank columns (``rank_columns``, default
    ``["rank"]``: each arm's rank of the item, null beyond the largest K), where the pairs of
    a group are the user's truth in that cell. Returns ``group``, ``item_id``, ``metric``,
    ``k`` and one contribution column per rank column (``c`` for the default, else
    ``c_<rank column>``). Per user they sum to the per-user metric of
    ``metrics.per_user_metrics``: recall ``hit / |T|``; ndcg ``hit / log2(rank + 1) /
    IDCG(min(K, |T|))``; hitrate 1 and mrr ``1 / rank`` on the user's best-ranked hit.
    """
    group = group or ["protocol", "scope", "segment_kind", "segment", "user_id"]
    ranks = rank_columns or ["rank"]
    names = ["c"] if rank_columns is None else [f"c_{r}" for r in ranks]
    base = cell_pairs.with_columns(_n=pl.len().over(group))
    out = []
    for metric, k in metrics.select("metric", "k").unique().sort("metric", "k").iter_rows():
        f = base
        exprs = []
        if metric == "ndcg":
            m = np.arange(1, k + 1)
            lookup = pl.DataFrame({"_m": m.astype(np.int64), "_idcg": np.cumsum(1.0 / np.log2(m + 1.0))})
            f = f.with_columns(_m=pl.min_horizontal(pl.col("_n"), pl.lit(k)).cast(pl.Int64)).join(lookup, on="_m", how="left", maintain_order="left")
        for r, name in zip(ranks, names):
            hit = pl.col(r).is_not_null() & (pl.col(r) <= k)
            if metric == "recall":
                c = pl.when(hit).then(1.0 / pl.col("_n")).otherwise(0.0)
            elif metric == "ndcg":
                c = pl.when(hit).then(1.0 / (pl.col(r).cast(pl.Float64) + 1.0).log(2) / pl.col("_idcg")).otherwise(0.0)
            elif metric in ("hitrate", "mrr"):
                first = pl.when(hit).then(pl.col(r)).otherwise(None).min().over(group)
                is_first = hit & (pl.col(r) == first)
                c = pl.when(is_first).then(1.0 if metric == "hitrate" else 1.0 / pl.col(r).cast(pl.Float64)).otherwise(0.0)
            else:
                c = None
            if c is not None:
                exprs.append(c.cast(pl.Float64).alias(name))
        if exprs:
            out.append(f.select(*group, "item_id", pl.lit(metric).alias("metric"), pl.lit(k, pl.Int64).alias("k"), *exprs))
    return pl.concat(out) if out else pl.DataFrame()


def _two_way_cell_pairs(cells: pl.DataFrame, per_pair: pl.DataFrame, kinds, extra_cells: set[tuple[str, str, str]], arms: list[str]) -> pl.DataFrame:
    """(protocol, scope, segment_kind, segment, user_id, item_id, rank_<arm>...) of the two-way cells:
    every user cell of the two-way scopes, every item cell, and ``extra_cells`` (scope, kind,
    segment) where primary endpoints sit. ``cells``: the (cell, user_id) rows that exist."""
    present = set(per_pair["arm"].unique().to_list())
    ranks = (
        per_pair.filter(pl.col("arm").is_in(arms))
        .pivot(on="arm", index=["protocol", "scope", "user_id", "item_id", "item_segment"], values="rank", sort_columns=True)
        .rename({a: f"rank_{a}" for a in arms if a in present})
        .with_columns([pl.lit(None, pl.Int32).alias(f"rank_{a}") for a in arms if a not in present])
    )
    user_kinds = [k for k in ("all", "user", "user_bucket") if k in kinds]
    extra = pl.lit(False)
    for scope, kind, seg in sorted(extra_cells):
        extra = extra | ((pl.col("scope") == scope) & (pl.col("segment_kind") == kind) & (pl.col("segment") == seg))
    cols = ["protocol", "scope", "segment_kind", "segment", "user_id", "item_id", *[f"rank_{a}" for a in arms]]
    parts = []
    scoped = cells.filter((pl.col("scope").is_in(list(TWO_WAY_SCOPES)) | extra) & pl.col("segment_kind").is_in(user_kinds))
    if scoped.height:
        parts.append(scoped.join(ranks, on=["protocol", "scope", "user_id"]).select(cols))
    if "item" in kinds:
        item = ranks.filter(pl.col("item_segment").is_not_null()).with_columns(segment_kind=pl.lit("item"), segment=pl.col("item_segment"))
        parts.append(item.join(cells, on=["protocol", "scope", "segment_kind", "segment", "user_id"], how="semi").select(cols))
    return pl.concat(parts) if parts else pl.DataFrame()


def _role_table(comparisons: list[tuple[str, str]], endpoints: tuple[PrimaryEndpoint, ...]) -> dict[tuple, str]:
    resolved = resolve_endpoints(endpoints, comparisons)
    return {(e.arm, e.baseline_arm, e.scope, e.segment_kind, e.segment, e.metric, e.k): e.name for e in resolved}


def _comparison_lifts(data: pl.DataFrame, comparisons: list[tuple[str, str]], keys: list[str], alpha: float, pairs_of=None) -> pl.DataFrame:
    """``cell_lifts`` of every comparison over the cells ``keys`` of ``data`` (per-user rows).

    Cells, users and clusters are coded as integers first (the statistics group by them);
    ``pairs_of(cell_codes, user_codes)`` may return the two-way contributions: (cell, user_id,
    item_id, metric-free) rows with one ``c_rank_<arm>`` column per arm.
    """
    if "cluster_id" not in data.columns:
        data = data.with_columns(cluster_id=pl.col("user_id"))
    arms = sorted({a for c in comparisons for a in c} & set(data["arm"].unique().to_list()))
    data = data.filter(pl.col("arm").is_in(arms))
    cell_codes = data.select(keys).unique().sort(keys, nulls_last=True).with_row_index("cell")
    user_codes = data.select("user_id", "cluster_id").unique().sort("user_id").with_row_index("uid").with_columns(cid=pl.col("cluster_id").rank("dense").cast(pl.UInt32))
    coded = data.join(cell_codes, on=keys, nulls_equal=True).join(user_codes.select("user_id", "uid", "cid"), on="user_id")
    wide = coded.pivot(on="arm", index=["cell", "uid", "cid"], values="value", sort_columns=True)
    pair_frame = pairs_of(cell_codes, user_codes) if pairs_of is not None else None
    frames = []
    for arm, base in comparisons:
        if arm not in wide.columns or base not in wide.columns:
            continue
        obs = wide.select("cell", pl.col("uid").alias("user_id"), pl.col("cid").alias("cluster"), pl.col(arm).alias("t"), pl.col(base).alias("b")).drop_nulls(["t", "b"])
        pairs = None
        if pair_frame is not None and f"c_rank_{arm}" in pair_frame.columns and f"c_rank_{base}" in pair_frame.columns:
            pairs = pair_frame.select("cell", "user_id", "item_id", pl.col(f"c_rank_{arm}").alias("ct"), pl.col(f"c_rank_{base}").alias("cb")).join(
                obs.select("cell", "user_id"), on=["cell", "user_id"], how="semi"
            )
        frames.append(cell_lifts(obs, ["cell"], pairs, alpha).with_columns(arm=pl.lit(arm), baseline_arm=pl.lit(base)))
    if not frames:
        return pl.DataFrame()
    return pl.concat(frames).join(cell_codes, on="cell").drop("cell")


def lift_rows(
    per_user: pl.DataFrame,
    comparisons: list[tuple[str, str]],
    cfg: LiftConfig,
    kinds=("all", "user", "item"),
    per_pair: pl.DataFrame | None = None,
    ranked_items: pl.DataFrame | None = None,
    holm: bool = True,
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
        holm: False for one part of a protocol's rows (e.g. one scope): the rows come
            without ``p_adjusted``, which :func:`with_holm` adds over all the parts.
    """
    data = per_user.filter(pl.col("segment_kind").is_in(list(kinds))).drop("bucket_order", strict=False)
    roles = _role_table(comparisons, cfg.primary_endpoints)
    pairs_of = None
    if per_pair is not None and per_pair.height and cfg.two_way:
        arms = sorted({a for c in comparisons for a in c})
        # Primary cells always resample items: their users share the items they are ranked over.
        extra = {(sc, kd, sg) for (_, _, sc, kd, sg, _, _) in roles}

        def pairs_of(cell_codes: pl.DataFrame, user_codes: pl.DataFrame) -> pl.DataFrame | None:
            cells = data.select("protocol", "scope", "segment_kind", "segment", "user_id").unique()
            cell_pairs = _two_way_cell_pairs(cells, per_pair, kinds, extra, arms)
            if cell_pairs.height == 0:
                return None
            cell2 = cell_pairs.select("protocol", "scope", "segment_kind", "segment").unique().with_row_index("cell2")
            items = cell_pairs.select("item_id").unique().sort("item_id").with_row_index("iid")
            coded = (
                cell_pairs.join(cell2, on=["protocol", "scope", "segment_kind", "segment"])
                .join(user_codes.select("user_id", "uid"), on="user_id")
                .join(items, on="item_id")
                .select("cell2", "uid", pl.col("iid").alias("item_id"), *[f"rank_{a}" for a in arms])
            )
            contrib = pair_contributions(coded, data.select("metric", "k").unique(), [f"rank_{a}" for a in arms], group=["cell2", "uid"])
            to_cell = cell2.join(cell_codes, on=["protocol", "scope", "segment_kind", "segment"]).select("cell2", "metric", "k", "cell")
            return contrib.join(to_cell, on=["cell2", "metric", "k"]).drop("cell2", "metric", "k").rename({"uid": "user_id"})

    st = _comparison_lifts(data, comparisons, _KEYS, cfg.alpha, pairs_of)
    if st.height == 0:
        return pl.DataFrame(schema=LIFT_SCHEMA if holm else _UNADJUSTED_SCHEMA)
    trivial = ranked_items.rename({"n_ranked": "_n_ranked"}) if ranked_items is not None and ranked_items.height else pl.DataFrame(schema={"protocol": pl.String, "scope": pl.String, "_n_ranked": pl.Float64})
    role_frame = pl.DataFrame(
        list(roles),
        schema={"arm": pl.String, "baseline_arm": pl.String, "scope": pl.String, "segment_kind": pl.String, "segment": pl.String, "metric": pl.String, "k": pl.Int64},
        orient="row",
    ).with_columns(role=pl.lit(PRIMARY))
    out = (
        st.join(trivial, on=["protocol", "scope"], how="left")
        .join(role_frame, on=["arm", "baseline_arm", "scope", "segment_kind", "segment", "metric", "k"], how="left")
        .with_columns(
            role=pl.col("role").fill_null(EXPLORATORY),
            flag=pl.when(pl.col("_n_ranked").is_not_null() & (pl.col("_n_ranked") <= pl.col("k")))
            .then(pl.lit(TRIVIAL))
            .when(pl.col("n_clusters") < cfg.min_users)
            .then(pl.lit(TOO_FEW_USERS))
            .otherwise(pl.lit(None, pl.String)),
            ci_method=pl.when(pl.col("two_way")).then(pl.lit(TWO_WAY)).otherwise(pl.lit(USER_CLUSTER)),
            n_items=pl.when(pl.col("two_way")).then(pl.col("n_items")),
        )
        .with_columns(p_value=pl.when(pl.col("flag").is_null()).then(pl.col("p_value")))
    )
    out = out.select(list(_UNADJUSTED_SCHEMA)).cast(_UNADJUSTED_SCHEMA)
    return with_holm([out]) if holm else out


def with_holm(parts: list[pl.DataFrame]) -> pl.DataFrame:
    """``lift_rows(..., holm=False)`` of parts of one report (e.g. one per protocol x scope: no cell spans
    two, and cell statistics code users and items by their sorted ids, so the rows are the bits one call
    over all of them gives) together: Holm over each protocol's primary rows, sorted by cell."""
    rows = [p for p in parts if p.height]
    if not rows:
        return pl.DataFrame(schema=LIFT_SCHEMA)
    return add_holm(pl.concat(rows)).select(LIFT_COLUMNS).sort("protocol", "scope", "arm", "baseline_arm", "segment_kind", "segment", "metric", "k")


def add_holm(rows: pl.DataFrame) -> pl.DataFrame:
    """``p_adjusted``: Holm over the primary rows of each protocol (the confirmatory family); NULL elsewhere."""
    out = rows.with_row_index("_i")
    adjusted = [pl.DataFrame(schema={"_i": pl.UInt32, "p_adjusted": pl.Float64})]
    for _, grp in out.filter((pl.col("role") == PRIMARY) & pl.col("p_value").is_not_null()).group_by("protocol", maintain_order=True):
        adjusted.append(pl.DataFrame({"_i": grp["_i"], "p_adjusted": holm_adjust(grp["p_value"].to_numpy().astype(float))}, schema={"_i": pl.UInt32, "p_adjusted": pl.Float64}))
    return out.join(pl.concat(adjusted), on="_i", how="left").drop("_i")


def warmup_rows(per_user: pl.DataFrame, comparisons: list[tuple[str, str]], cfg: LiftConfig) -> pl.DataFrame:
    """Lift per history bucket (users by their events, items by theirs at the snapshot); users as clusters."""
    data = per_user.filter(pl.col("segment_kind").is_in(["user_bucket", "item_bucket"]) & pl.col("metric").is_in(list(cfg.warmup_metrics)))
    keys = ["protocol", "scope", "segment_kind", "segment", "bucket_order", "metric", "k"]
    st = _comparison_lifts(data, comparisons, keys, cfg.alpha) if data.height else pl.DataFrame()
    if st.height == 0:
        return pl.DataFrame(schema={c: pl.Float64 for c in WARMUP_COLUMNS})
    out = st.with_columns(segment_kind=pl.col("segment_kind").str.strip_suffix("_bucket"), history_bucket=pl.col("segment"))
    return out.select(WARMUP_COLUMNS).sort("protocol", "scope", "arm", "baseline_arm", "segment_kind", "bucket_order", "metric", "k")


def pool_days(per_user_by_day: dict) -> pl.DataFrame:
    """Concatenate daily per-user (or per-pair) frames: a user evaluated on two days is two
    observations (``user_id`` = ``day|user``) of one cluster (``cluster_id`` = the user)."""
    frames = [
        f.with_columns(cluster_id=pl.col("user_id"), user_id=pl.format("{}|{}", pl.lit(str(d)), pl.col("user_id")))
        for d, f in sorted(per_user_by_day.items())
        if f is not None
    ]
    return pl.concat(frames) if frames else pl.DataFrame()
