"""Full-catalogue ranking metrics per user (docs/protocol.md "Metrics"), vectorized in polars.

Definitions (binary relevance; ``T_u`` = the user's positives of day D, ``r(i)`` = 1-based rank):

- ``recall@K  = |top-K ∩ T_u| / |T_u|``. The denominator is the full ``|T_u|``, NOT
  ``min(K, |T_u|)``: this is the standard Recall@K of the literature (and of the prototype
  numbers quoted in docs/protocol.md), so values stay comparable across papers and a user with
  more positives than K slots simply cannot reach 1. (Capping at ``min(K, |T_u|)`` would be a
  different, R-precision-like metric.)
- ``ndcg@K    = DCG@K / IDCG@K`` with ``DCG@K = sum over hits with r <= K of 1/log2(r + 1)`` and
  ``IDCG@K = sum_{j=1..min(K, |T_u|)} 1/log2(j + 1)`` (all positives ranked first).
- ``hitrate@K = 1`` if any positive is in the top K, else ``0``.
- ``mrr@K     = 1 / r_first`` for the first hit within K, else ``0``.

Users and items are compared as strings (the lake's ``user_id`` / ``item_id`` are ``pl.String``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

from recsys_assets.lib.errors import RecsysError

METRICS: tuple[str, ...] = ("recall", "ndcg", "hitrate", "mrr")
"""Metric names of ``per_user_metrics`` output, in output order."""

DEFAULT_KS: tuple[int, ...] = (10, 20)

UNKNOWN_SEGMENT = "unknown"
"""Segment key ``slot_share`` uses for recommended items missing from ``item_segment``."""


class EvaluationError(RecsysError):
    """Metric inputs are inconsistent (missing columns, bad ranks, users without truth)."""


# --------------------------------------------------------------------------- helpers


def _require(df: pl.DataFrame, cols: Sequence[str], name: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise EvaluationError(
            f"{name} frame lacks column(s) {missing}; it has {df.columns}. "
            f"Pass a frame with columns {list(cols)}."
        )


def _ids(df: pl.DataFrame, cols: Sequence[str]) -> pl.DataFrame:
    """Select ``cols`` with user_id/item_id cast to String."""
    exprs = []
    for c in cols:
        if c in ("user_id", "item_id"):
            exprs.append(pl.col(c).cast(pl.String))
        else:
            exprs.append(pl.col(c))
    return df.select(exprs)


def _ks(ks: Iterable[int]) -> tuple[int, ...]:
    out = tuple(int(k) for k in ks)
    if not out or any(k < 1 for k in out):
        raise EvaluationError(f"ks must be a non-empty list of positive integers, got {out!r}.")
    if len(set(out)) != len(out):
        raise EvaluationError(f"ks contains duplicates: {out!r}.")
    return out


def _clean_recs(recs: pl.DataFrame, max_rank: int | None) -> pl.DataFrame:
    """Validated (user_id, item_id, rank:int64) with one row per (user, item), rank <= max_rank.

    A duplicated (user, item) keeps its best rank. Ranks must be >= 1, non-null and unique per
    user (ties from ``rank("min")`` would let more than K items into a top K).
    """
    _require(recs, ("user_id", "item_id", "rank"), "recs")
    r = _ids(recs, ("user_id", "item_id", "rank")).with_columns(pl.col("rank").cast(pl.Int64))
    bad = r.filter(pl.col("rank").is_null() | (pl.col("rank") < 1) | pl.col("user_id").is_null()
                   | pl.col("item_id").is_null())
    if bad.height:
        row = bad.row(0, named=True)
        raise EvaluationError(
            f"recs has {bad.height} row(s) with a null id or a rank < 1 (ranks are 1-based), "
            f"e.g. {row}. Fix the arm's ranking output."
        )
    if max_rank is not None:
        r = r.filter(pl.col("rank") <= max_rank)
    r = r.group_by("user_id", "item_id").agg(pl.col("rank").min())
    dup = r.group_by("user_id", "rank").len().filter(pl.col("len") > 1)
    if dup.height:
        row = dup.row(0, named=True)
        raise EvaluationError(
            f"recs has {dup.height} (user_id, rank) pair(s) shared by several items, e.g. "
            f"user_id={row['user_id']!r} rank={row['rank']}. Ranks must be positions "
            "(use rank('ordinal') / a row number per user)."
        )
    return r


@dataclass(frozen=True)
class RankedLists:
    """An arm's ranked lists, validated and deduplicated once (:func:`ranked_lists`).

    The evaluation scores the same lists of a block of users against ~20 truth cells (segments and
    buckets); passing this to :func:`per_user_metrics` checks the lists once instead of once per cell
    (10M world: the checks were ~15 % of ``cold_start_eval``'s CPU)."""

    frame: pl.DataFrame
    """(user_id: String, item_id: String, rank: Int64): one row per (user, item), its best rank."""
    max_rank: int | None
    """Ranks above it were dropped (None: none dropped)."""


def ranked_lists(recs: pl.DataFrame, max_rank: int | None) -> RankedLists:
    """``recs`` (user_id, item_id, rank) checked as :func:`per_user_metrics` checks them, ranks <= ``max_rank`` kept."""
    return RankedLists(_clean_recs(recs, max_rank), max_rank)


def _clean_truth(truth: pl.DataFrame) -> pl.DataFrame:
    _require(truth, ("user_id", "item_id"), "truth")
    t = _ids(truth, ("user_id", "item_id")).drop_nulls().unique()
    return t


# --------------------------------------------------------------------------- metrics


def per_user_metrics(
    recs: pl.DataFrame | RankedLists,
    truth: pl.DataFrame,
    users: list[str] | pl.Series,
    ks: Sequence[int] = DEFAULT_KS,
    *,
    missing_truth: Literal["raise", "drop"] = "raise",
) -> pl.DataFrame:
    """Recall/NDCG/HitRate/MRR at each K for every user in ``users`` (long format).

    Args:
        recs: (user_id, item_id, rank) -- one arm's ranked list, rank 1-based, any length
            (only ranks <= max(ks) matter). Rows of users outside ``users`` are ignored. Or the
            same already checked (:func:`ranked_lists`, with ``max_rank`` None or >= max(ks)).
        truth: (user_id, item_id) positives of day D (duplicates are ignored).
        users: the evaluated users. Each gets one row per metric and K, value 0 when it has no
            recs. Every user must have at least one truth row: metrics are undefined otherwise.
        ks: cut-offs.
        missing_truth: ``"raise"`` (default) raises ``EvaluationError`` when a user in
            ``users`` has no truth row; ``"drop"`` excludes such users from the output
            (explicitly; the caller should then report the smaller n_users).

    Returns:
        Frame (user_id: String, metric: String, k: Int64, value: Float64), sorted by metric
        (in ``METRICS`` order), then k (in ``ks`` order), then user (in ``users`` order).
    """
    ks = _ks(ks)
    kmax = max(ks)
    users_s = pl.Series("user_id", users).cast(pl.String)
    if users_s.null_count():
        raise EvaluationError("users contains null user ids.")
    if users_s.n_unique() != users_s.len():
        raise EvaluationError("users contains duplicate user ids; pass each evaluated user once.")
    users_df = pl.DataFrame({"user_id": users_s}).with_row_index("_order")

    t = _clean_truth(truth).join(users_df.select("user_id"), on="user_id", how="semi")
    n_truth = t.group_by("user_id").agg(pl.len().cast(pl.Int64).alias("n_truth"))
    no_truth = users_df.join(n_truth, on="user_id", how="anti")
    if no_truth.height:
        if missing_truth == "raise":
            raise EvaluationError(
                f"{no_truth.height} of {users_df.height} users have no truth rows "
                f"(e.g. {no_truth['user_id'].head(3).to_list()}); metrics are undefined for "
                "them. Pass only users with positives (e.g. truth['user_id'].unique()), or "
                "missing_truth='drop'."
            )
        if missing_truth != "drop":
            raise EvaluationError(f"missing_truth must be 'raise' or 'drop', got {missing_truth!r}.")
        users_df = users_df.join(n_truth, on="user_id", how="semi")

    lists = recs if isinstance(recs, RankedLists) else ranked_lists(recs, kmax)
    if lists.max_rank is not None and lists.max_rank < kmax:
        raise EvaluationError(f"recs were checked with max_rank={lists.max_rank}, below max(ks)={kmax}: ranks up to {kmax} are needed.")
    # rows ranked past kmax add no hit at any k (each k filters rank <= k)
    r = lists.frame.join(users_df.select("user_id"), on="user_id", how="semi")
    # Sorted: the DCG sums then add in rank order whatever order the join returned, so a
    # rerun gives the same floating-point bits (byte-identical per_user.parquet).
    hits = r.join(t, on=["user_id", "item_id"], how="inner").with_columns(
        (1.0 / (pl.col("rank").cast(pl.Float64) + 1.0).log(2)).alias("_disc")
    ).sort("user_id", "rank")

    # IDCG lookup: idcg[m] = sum_{j=1..m} 1/log2(j+1), m = min(K, |T_u|) >= 1.
    m = np.arange(1, kmax + 1)
    idcg = pl.DataFrame({"_m": m.astype(np.int64), "_idcg": np.cumsum(1.0 / np.log2(m + 1.0))})

    base = users_df.join(n_truth, on="user_id", how="left", maintain_order="left")
    parts: list[pl.DataFrame] = []
    for k in ks:
        agg = (
            hits.filter(pl.col("rank") <= k)
            .group_by("user_id")
            .agg(
                pl.len().cast(pl.Int64).alias("_hits"),
                pl.col("_disc").sum().alias("_dcg"),
                pl.col("rank").min().alias("_first"),
            )
        )
        f = (
            base.join(agg, on="user_id", how="left")
            .with_columns(
                pl.col("_hits").fill_null(0),
                pl.col("_dcg").fill_null(0.0),
                pl.min_horizontal(pl.col("n_truth"), pl.lit(k, pl.Int64)).alias("_m"),
            )
            .join(idcg, on="_m", how="left")
            .select(
                "user_id",
                "_order",
                (pl.col("_hits").cast(pl.Float64) / pl.col("n_truth")).alias("recall"),
                (pl.col("_dcg") / pl.col("_idcg")).alias("ndcg"),
                (pl.col("_hits") > 0).cast(pl.Float64).alias("hitrate"),
                (1.0 / pl.col("_first").cast(pl.Float64)).fill_null(0.0).alias("mrr"),
            )
            .unpivot(index=["user_id", "_order"], on=list(METRICS), variable_name="metric",
                     value_name="value")
            .with_columns(pl.lit(k, pl.Int64).alias("k"))
        )
        parts.append(f)

    metric_order = pl.DataFrame(
        {"metric": list(METRICS), "_mo": list(range(len(METRICS)))}
    )
    k_order = pl.DataFrame({"k": list(ks), "_ko": list(range(len(ks)))}, schema={"k": pl.Int64, "_ko": pl.Int64})
    out = (
        pl.concat(parts)
        .join(metric_order, on="metric", how="left")
        .join(k_order, on="k", how="left")
        .sort("_mo", "_ko", "_order")
        .select(
            pl.col("user_id"),
            pl.col("metric").cast(pl.String),
            pl.col("k"),
            pl.col("value").cast(pl.Float64),
        )
    )
    return out


def candidate_recall(
    candidates: pl.DataFrame,
    truth: pl.DataFrame,
    users: list[str] | pl.Series | None = None,
) -> pl.DataFrame:
    """Share of each user's positives that are inside the candidate pool (before ranking).

    Args:
        candidates: (user_id, item_id) candidate pool (order and extra columns ignored).
        truth: (user_id, item_id) positives.
        users: users to report; default every user with a truth row. Each listed user must have
            truth (same rule as ``per_user_metrics``).

    Returns:
        (user_id: String, value: Float64) = |candidates ∩ T_u| / |T_u|, 0 for a user without
        candidates; sorted by user_id (or in ``users`` order when given).
    """
    _require(candidates, ("user_id", "item_id"), "candidates")
    t = _clean_truth(truth)
    c = _ids(candidates, ("user_id", "item_id")).drop_nulls().unique()
    if users is None:
        users_df = t.select("user_id").unique().sort("user_id").with_row_index("_order")
    else:
        users_df = pl.DataFrame({"user_id": pl.Series("user_id", users).cast(pl.String)}).with_row_index("_order")
        if users_df["user_id"].n_unique() != users_df.height:
            raise EvaluationError("users contains duplicate user ids; pass each evaluated user once.")
        t = t.join(users_df.select("user_id"), on="user_id", how="semi")
        missing = users_df.join(t, on="user_id", how="anti")
        if missing.height:
            raise EvaluationError(
                f"{missing.height} users have no truth rows (e.g. "
                f"{missing['user_id'].head(3).to_list()}); candidate recall is undefined for them."
            )
    per = t.join(c.with_columns(pl.lit(1).alias("_in")), on=["user_id", "item_id"], how="left").group_by(
        "user_id"
    ).agg(pl.col("_in").fill_null(0).sum().alias("_hits"), pl.len().alias("_n"))
    return (
        users_df.join(per, on="user_id", how="left")
        .sort("_order")
        .select("user_id", (pl.col("_hits").cast(pl.Float64) / pl.col("_n")).alias("value"))
    )


def coverage(recs: pl.DataFrame, catalog_size: int, k: int) -> float:
    """Share of the catalogue (``catalog_size`` items) appearing in at least one user's top K.

    ``catalog_size`` is the size of the catalogue the arm ranked over (the full catalogue for
    scope ``full``, the new items for ``cold_only``). Raises if more distinct items are
    recommended than the catalogue holds (a mismatched catalogue size).
    """
    if catalog_size <= 0:
        raise EvaluationError(f"catalog_size must be positive, got {catalog_size}.")
    (k,) = _ks((k,))
    r = _clean_recs(recs, k)
    n_items = r["item_id"].n_unique()
    if n_items > catalog_size:
        raise EvaluationError(
            f"{n_items} distinct items in the top-{k} lists but catalog_size={catalog_size}; "
            "pass the size of the catalogue the arm ranked over."
        )
    return n_items / catalog_size


def slot_share(recs: pl.DataFrame, item_segment: pl.DataFrame, k: int) -> dict[str, float]:
    """Share of all top-K slots (over all users) taken by items of each segment.

    Args:
        recs: (user_id, item_id, rank).
        item_segment: (item_id, segment) as assigned at the snapshot.
        k: cut-off.

    Returns:
        {segment: share}; every segment of ``item_segment`` is a key (0.0 when unused); items
        missing from ``item_segment`` are counted under ``UNKNOWN_SEGMENT`` (key present only
        when such slots exist). Shares sum to 1; all NaN when there are no slots.
    """
    (k,) = _ks((k,))
    _require(item_segment, ("item_id", "segment"), "item_segment")
    seg = _ids(item_segment, ("item_id", "segment")).with_columns(pl.col("segment").cast(pl.String))
    dup = seg.group_by("item_id").agg(pl.col("segment").n_unique().alias("n")).filter(pl.col("n") > 1)
    if dup.height:
        raise EvaluationError(
            f"item_segment gives several segments to {dup.height} item(s), e.g. "
            f"{dup['item_id'][0]!r}; assign one segment per item."
        )
    seg = seg.unique(subset=["item_id"])
    segments = sorted(s for s in seg["segment"].unique().to_list() if s is not None)
    r = _clean_recs(recs, k)
    counts = (
        r.join(seg, on="item_id", how="left")
        .with_columns(pl.col("segment").fill_null(UNKNOWN_SEGMENT))
        .group_by("segment")
        .len()
    )
    total = r.height
    got = dict(zip(counts["segment"].to_list(), counts["len"].to_list(), strict=True))
    keys = segments + ([UNKNOWN_SEGMENT] if UNKNOWN_SEGMENT in got and UNKNOWN_SEGMENT not in segments else [])
    if total == 0:
        return {s: float("nan") for s in keys}
    return {s: got.get(s, 0) / total for s in keys}


def restrict_truth(truth: pl.DataFrame, item_segments: pl.DataFrame, segment: str) -> pl.DataFrame:
    """Truth rows whose item is in ``segment`` (item-segment metrics, docs/protocol.md "Segments").

    Only the truth is restricted: rank over the FULL catalogue and pass the restricted truth to
    ``per_user_metrics`` with the users that still have positives
    (``restrict_truth(...)['user_id'].unique()``). Other columns of ``truth`` are kept.
    """
    _require(truth, ("user_id", "item_id"), "truth")
    _require(item_segments, ("item_id", "segment"), "item_segments")
    keep = item_segments.filter(pl.col("segment").cast(pl.String) == segment).select(
        pl.col("item_id").cast(pl.String)
    ).unique()
    return truth.with_columns(pl.col("item_id").cast(pl.String)).join(keep, on="item_id", how="semi")
