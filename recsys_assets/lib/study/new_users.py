"""New users' profile attributes as plain categorical features: the no-language-model baseline.

A user with no events has only a profile ("24 year old male technician" on MovieLens). The
text arms encode it with a language model (``content_<enc>``: the kNN of the encoded
profile; ``ranker_<enc>``: the same vector as a ranker feature). This module serves the same
attributes without any model of language: ``content_attributes`` (attribute popularity) ranks, for a new user,
items by their popularity among the users who share each of the user's attribute values,
averaged over the values (demographic popularity). Attribute values are the profile's word
tokens, lower-cased, with numbers bucketed to their decade (``24`` -> ``20s``); values that
more than ``max_share`` of users have (``year``, ``old``) carry no information and are dropped.
A user with no usable value gets the global popularity list; ties go to the globally more
popular item, then the item id. Everything is counted on the snapshot's model-input history
(events before D; item_holdout's hidden items have none), like the ``popularity`` arm.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import polars as pl

from recsys_assets.lib.confighash import config_hash
from recsys_assets.lib.errors import RecsysError
from recsys_assets.lib.evaluation.evaluate import PER_PAIR_SCHEMA, PER_USER_SCHEMA, pair_ranks
from recsys_assets.lib.evaluation.metrics import per_user_metrics
from recsys_assets.lib.interactions import InteractionConfig, positive_mask_expr

ATTRIBUTE_ARM = "content_attributes"
"""Arm name of the categorical-attribute baseline in the study's tables (its "encoder" ``attributes``
is registered as no language model, so the lift statistics never take it for the headline's LM)."""
_TOKEN_RE = re.compile(r"[a-z]+|\d+")


@dataclass(frozen=True)
class AttributeConfig:
    """How profile text becomes categorical attribute values."""

    max_share: float = 0.5
    """Values held by more than this share of the users with a profile are dropped (no information)."""
    number_bucket: int = 10
    """Numbers are bucketed to this width (24 -> '20s')."""

    def __post_init__(self) -> None:
        if not 0.0 < self.max_share <= 1.0:
            raise RecsysError(f"AttributeConfig.max_share={self.max_share}: must be in (0, 1]")
        if self.number_bucket < 1:
            raise RecsysError(f"AttributeConfig.number_bucket={self.number_bucket}: must be >= 1")

    def config_hash(self) -> str:
        return config_hash(self)


def attribute_values(profile: str | None, cfg: AttributeConfig) -> list[str]:
    """The categorical values of one profile text: word tokens, numbers as buckets (sorted, distinct)."""
    if not profile:
        return []
    out = set()
    for tok in _TOKEN_RE.findall(profile.lower()):
        if tok.isdigit():
            lo = int(tok) // cfg.number_bucket * cfg.number_bucket
            out.add(f"{lo}s")
        else:
            out.add(tok)
    return sorted(out)


def user_attributes(users: pl.DataFrame, cfg: AttributeConfig) -> pl.DataFrame:
    """(user_id, attr) of every user with a profile, without the too-common values."""
    if "profile" not in users.columns:
        return pl.DataFrame(schema={"user_id": pl.String, "attr": pl.String})
    rows = [(u, a) for u, p in users.select(pl.col("user_id").cast(pl.String), "profile").iter_rows() for a in attribute_values(p, cfg)]
    frame = pl.DataFrame(rows, schema={"user_id": pl.String, "attr": pl.String}, orient="row")
    n_users = frame["user_id"].n_unique()
    if n_users == 0:
        return frame
    share = frame.group_by("attr").agg((pl.col("user_id").n_unique() / n_users).alias("share"))
    keep = share.filter(pl.col("share") <= cfg.max_share).select("attr")
    return frame.join(keep, on="attr", how="semi").sort("user_id", "attr")


def attribute_popularity_recs(
    history: pl.DataFrame,
    catalog_ids: list[str],
    users: pl.DataFrame,
    new_users: list[str],
    k: int,
    interactions: InteractionConfig,
    cfg: AttributeConfig,
) -> pl.DataFrame:
    """Top-``k`` (user_id, item_id, rank, score) of ``content_attributes`` for ``new_users``."""
    catalog = pl.DataFrame({"item_id": pl.Series(catalog_ids, dtype=pl.String)})
    pos = (
        history.filter(positive_mask_expr(interactions))
        .select(pl.col("user_id").cast(pl.String), pl.col("item_id").cast(pl.String))
        .unique()
        .join(catalog, on="item_id", how="semi")
    )
    glob = pos.group_by("item_id").len().with_columns(g=pl.col("len") / pl.col("len").sum()).select("item_id", "g")
    attrs = user_attributes(users, cfg)
    per_attr = (
        pos.join(attrs, on="user_id")
        .group_by("attr", "item_id")
        .len()
        .with_columns(share=pl.col("len") / pl.col("len").sum().over("attr"))
        .select("attr", "item_id", "share")
    )
    targets = pl.DataFrame({"user_id": pl.Series(sorted(set(new_users)), dtype=pl.String)})
    mine = targets.join(attrs, on="user_id", how="left").join(per_attr.select("attr").unique(), on="attr", how="semi")
    n_attr = mine.group_by("user_id").len().rename({"len": "n_attr"})
    scored = (
        mine.join(per_attr, on="attr")
        .group_by("user_id", "item_id")
        .agg(pl.col("share").sum())
        .join(n_attr, on="user_id")
        .with_columns(score=pl.col("share") / pl.col("n_attr"))
        .select("user_id", "item_id", "score")
    )
    # Users without a usable attribute value: the global popularity list.
    fallback = targets.join(n_attr, on="user_id", how="anti").join(glob.select("item_id", pl.col("g").alias("score")), how="cross")
    pool = pl.concat([scored, fallback.select("user_id", "item_id", "score")])
    return (
        pool.join(glob, on="item_id", how="left")
        .with_columns(pl.col("g").fill_null(0.0))
        .sort(["user_id", "score", "g", "item_id"], descending=[False, True, True, False])
        .with_columns(rank=pl.int_range(1, pl.len() + 1).over("user_id").cast(pl.Int64))
        .filter(pl.col("rank") <= k)
        .select("user_id", "item_id", "rank", pl.col("score").cast(pl.Float64))
    )


def attribute_arm_eval(
    per_user: pl.DataFrame,
    per_pair: pl.DataFrame,
    history: pl.DataFrame,
    catalog_ids: list[str],
    users: pl.DataFrame,
    protocol: str,
    interactions: InteractionConfig,
    cfg: AttributeConfig,
    ks: tuple[int, ...] = (10, 20),
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per-user metrics and per-pair ranks of ``content_attributes`` in the new-user cell of one protocol-day.

    ``per_user`` / ``per_pair``: the day's evaluation files (``cold_start_eval``); the cell's users
    and their truth are read from the ``popularity`` arm's rows, so every arm is judged on the
    same users, truth and K.
    """
    cell = per_user.filter(
        (pl.col("protocol") == protocol) & (pl.col("scope") == "full") & (pl.col("arm") == "popularity")
        & (pl.col("segment_kind") == "user") & (pl.col("segment") == "new")
    )
    users_in = cell["user_id"].unique().sort().to_list()
    if not users_in:
        return pl.DataFrame(schema=PER_USER_SCHEMA), pl.DataFrame(schema=PER_PAIR_SCHEMA)
    pairs = per_pair.filter(
        (pl.col("protocol") == protocol) & (pl.col("scope") == "full") & (pl.col("arm") == "popularity") & pl.col("user_id").is_in(users_in)
    )
    truth = pairs.select("user_id", "item_id").unique()
    recs = attribute_popularity_recs(history, catalog_ids, users, users_in, max(ks), interactions, cfg)
    metrics = per_user_metrics(recs, truth, users_in, ks).with_columns(
        protocol=pl.lit(protocol), scope=pl.lit("full"), arm=pl.lit(ATTRIBUTE_ARM), segment_kind=pl.lit("user"), segment=pl.lit("new"),
        bucket_order=pl.lit(None, pl.Int32),
    )
    item_info = pairs.select("item_id", "item_segment", "item_bucket").unique("item_id", keep="first")
    ranks = pair_ranks(recs, truth, item_info, max(ks)).with_columns(protocol=pl.lit(protocol), scope=pl.lit("full"), arm=pl.lit(ATTRIBUTE_ARM))
    return (
        metrics.select(list(PER_USER_SCHEMA)).cast(PER_USER_SCHEMA).sort("metric", "k", "user_id"),
        ranks.select(list(PER_PAIR_SCHEMA)).cast(PER_PAIR_SCHEMA).sort("user_id", "item_id"),
    )
