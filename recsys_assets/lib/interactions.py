"""From normalized events to interaction strengths, positives and a user x item matrix.

One place decides how much an event says about a user's interest; ALS, the
interest profiles and the ranker all read it from here so that they agree.

- ``interaction_strength``: one weight per event (view 1, click 2, ...; a
  rating's weight grows with its value).
- ``positives``: the (user, item) pairs that count as truth.
- ``build_matrix``: strengths summed per (user, item) into a CSR matrix.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys_assets.lib.confighash import config_hash
from recsys_assets.lib.errors import RecsysError
from recsys_assets.lib.schema import EVENT_TYPES

log = logging.getLogger(__name__)


class InteractionConfigError(RecsysError):
    """An InteractionConfig names an unknown event type or an impossible weight."""


class UnknownIdError(RecsysError):
    """Events name users or items outside a fixed vocabulary."""


def _default_weights() -> dict[str, float]:
    return {"view": 1.0, "click": 2.0, "cart": 3.0, "purchase": 5.0}


@dataclass(frozen=True)
class InteractionConfig:
    """How events turn into interaction strengths and truth positives."""

    event_weights: dict[str, float] = field(default_factory=_default_weights)
    """Strength of one event of each non-rating type; a type left out weighs 0 (ignored)."""
    rating_offset: float = 2.0
    """A rating's strength is ``max(value - rating_offset, rating_floor)`` (5 stars -> 3)."""
    rating_floor: float = 0.5
    """Smallest strength of a rating (also used when a rating has no value)."""
    positive_event_types: tuple[str, ...] = ("click", "cart", "purchase")
    """Non-rating event types that count as a positive (truth) interaction."""
    positive_min_rating: float = 4.0
    """A rating counts as positive when its value is at least this."""

    def __post_init__(self) -> None:
        allowed = set(EVENT_TYPES) - {"rating"}
        bad = sorted(set(self.event_weights) - allowed)
        if bad:
            raise InteractionConfigError(
                f"InteractionConfig.event_weights has unknown event types {bad}; allowed keys are "
                f"{sorted(allowed)} (a rating's weight comes from rating_offset / rating_floor)."
            )
        neg = sorted(k for k, v in self.event_weights.items() if not v >= 0)
        if neg or not self.rating_floor >= 0:
            raise InteractionConfigError(
                f"InteractionConfig weights must be >= 0; got event_weights={dict(self.event_weights)}, "
                f"rating_floor={self.rating_floor}."
            )
        bad_pos = sorted(set(self.positive_event_types) - set(EVENT_TYPES))
        if bad_pos:
            raise InteractionConfigError(
                f"InteractionConfig.positive_event_types has unknown event types {bad_pos}; "
                f"allowed: {list(EVENT_TYPES)}."
            )

    def config_hash(self) -> str:
        return config_hash(self)


def _strength_expr(cfg: InteractionConfig) -> pl.Expr:
    et = pl.col("event_type").cast(pl.String)
    rating = pl.max_horizontal(
        (pl.col("value").cast(pl.Float64) - cfg.rating_offset).fill_null(cfg.rating_floor),
        pl.lit(cfg.rating_floor, dtype=pl.Float64),
    )
    weights = {k: float(v) for k, v in cfg.event_weights.items()}
    other = et.replace_strict(weights, default=0.0, return_dtype=pl.Float64)
    return pl.when(et == "rating").then(rating).otherwise(other).cast(pl.Float32)


def interaction_strength(events: pl.DataFrame, cfg: InteractionConfig) -> pl.Series:
    """One float32 strength per event row (same order), named ``strength``."""
    if events.height == 0:
        return pl.Series("strength", [], dtype=pl.Float32)
    return events.select(_strength_expr(cfg).alias("strength")).to_series()


def positive_mask_expr(cfg: InteractionConfig) -> pl.Expr:
    """Boolean expression: the event is a truth positive under ``cfg``."""
    et = pl.col("event_type").cast(pl.String)
    is_rating_pos = (et == "rating") & (pl.col("value") >= cfg.positive_min_rating).fill_null(False)
    return is_rating_pos | et.is_in(list(cfg.positive_event_types))


def positives(events: pl.DataFrame, cfg: InteractionConfig) -> pl.DataFrame:
    """Distinct (user_id, item_id) pairs with at least one positive event, sorted."""
    return (
        events.filter(positive_mask_expr(cfg))
        .select("user_id", "item_id")
        .unique()
        .sort("user_id", "item_id")
    )


def id_index(ids: Sequence[str], name: str = "id") -> pl.DataFrame:
    """The vocabulary ``ids`` as a frame to join on: ``name`` (String) and ``<name>_row`` (Int64, its
    position). The one id -> row mapping (matrices, ALS factors, embeddings, profiles)."""
    return pl.DataFrame({name: pl.Series(name, list(ids), dtype=pl.String), f"{name}_row": np.arange(len(ids), dtype=np.int64)})


def rows_of(ids: Sequence[str] | pl.Series, index: pl.DataFrame, name: str = "id") -> np.ndarray:
    """Row of each of ``ids`` in ``index`` (an :func:`id_index`), in order; -1 where unknown."""
    q = pl.DataFrame({name: pl.Series(name, ids if isinstance(ids, pl.Series) else list(ids), dtype=pl.String)})
    return q.join(index, on=name, how="left", maintain_order="left").get_column(f"{name}_row").fill_null(-1).to_numpy()


def build_matrix(
    events: pl.DataFrame,
    cfg: InteractionConfig,
    user_ids: Sequence[str] | None = None,
    item_ids: Sequence[str] | None = None,
    *,
    on_unknown: Literal["raise", "drop"] = "raise",
) -> tuple[sp.csr_matrix, list[str], list[str]]:
    """Strengths summed per (user, item) as a float32 CSR matrix (users x items).

    Without ``user_ids`` / ``item_ids`` the vocabularies are the sorted distinct
    ids of ``events``. With a fixed vocabulary, events naming an id outside it
    raise :class:`UnknownIdError` (``on_unknown="raise"``, default) or are dropped
    with a logged warning that gives the counts (``on_unknown="drop"``).
    Events of strength 0 are left out; a (user, item) pair appears only if some
    event has a positive strength. Vocabulary ids without events give empty rows /
    columns.
    """
    frame = events.select(
        pl.col("user_id").cast(pl.String),
        pl.col("item_id").cast(pl.String),
        _strength_expr(cfg).alias("strength") if events.height else pl.lit(0.0, pl.Float32).alias("strength"),
    )
    if user_ids is None:
        user_ids = frame.get_column("user_id").unique().sort().to_list()
    if item_ids is None:
        item_ids = frame.get_column("item_id").unique().sort().to_list()
    user_ids = list(user_ids)
    item_ids = list(item_ids)
    if len(set(user_ids)) != len(user_ids) or len(set(item_ids)) != len(item_ids):
        raise UnknownIdError("build_matrix: user_ids / item_ids must not contain duplicates.")

    joined = frame.join(id_index(user_ids, "user_id"), on="user_id", how="left").join(
        id_index(item_ids, "item_id"), on="item_id", how="left"
    )
    unknown = joined.filter(pl.col("user_id_row").is_null() | pl.col("item_id_row").is_null())
    if unknown.height:
        n_u = unknown.filter(pl.col("user_id_row").is_null()).get_column("user_id").n_unique()
        n_i = unknown.filter(pl.col("item_id_row").is_null()).get_column("item_id").n_unique()
        msg = (
            f"build_matrix: {unknown.height} of {events.height} events name ids outside the given "
            f"vocabulary ({n_u} unknown users, {n_i} unknown items; e.g. "
            f"{unknown.head(3).select('user_id', 'item_id').rows()})"
        )
        if on_unknown == "raise":
            raise UnknownIdError(msg + ". Pass on_unknown='drop' to leave them out, or widen the vocabulary.")
        log.warning("%s; dropped.", msg)
        joined = joined.filter(pl.col("user_id_row").is_not_null() & pl.col("item_id_row").is_not_null())
    joined = joined.filter(pl.col("strength") > 0)

    rows = joined.get_column("user_id_row").to_numpy()
    cols = joined.get_column("item_id_row").to_numpy()
    vals = joined.get_column("strength").to_numpy().astype(np.float32, copy=False)
    mat = sp.csr_matrix((vals, (rows, cols)), shape=(len(user_ids), len(item_ids)), dtype=np.float32)
    mat.sum_duplicates()  # also sorts indices
    return mat, user_ids, item_ids


def events_per_user(events: pl.DataFrame) -> pl.DataFrame:
    """(user_id, n_events) for every user of ``events``."""
    return events.group_by("user_id").agg(pl.len().alias("n_events"))
