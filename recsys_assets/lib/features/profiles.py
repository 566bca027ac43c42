"""User interest profiles in an encoder's item-vector space.

A user's profile is an exponential moving average (EMA) of the vectors of the
items in their history, in time order (``ts``, then ``event_id``)::

    u <- e_first
    u <- u + a_t * (e_t - u)        for every later event t
    profile = u / ||u||

with a strength-weighted rate ``a_t = 1 - (1 - alpha) ** s_t`` where ``s_t`` is
the event's interaction strength (interactions.py). Choice and reason: an event
of strength ``s`` moves the profile exactly as ``s`` consecutive events of
strength 1 on the same item would, so a purchase (5) is "five views", the rate
stays in (0, 1) for any strength, and strength 0 is a no-op. The first event
with a vector and a positive strength starts the profile whatever its strength.

Vectorized: the EMA unrolls to ``u_T = sum_t w_t e_t`` with
``w_t = a_t * prod_{s>t} (1 - a_s)`` (``a_first = 1``); the products are
suffix sums of ``log(1 - a)`` within each user, so one sort, one cumsum and one
sparse (users x items) @ (items x dim) product do the whole event log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys_assets.lib.confighash import config_hash
from recsys_assets.lib.errors import RecsysError
from recsys_assets.lib.features.encoders import l2_normalize
from recsys_assets.lib.interactions import InteractionConfig, interaction_strength

log = logging.getLogger(__name__)


class ProfileError(RecsysError):
    """Profiles cannot be built as asked."""


@dataclass(frozen=True)
class ProfileConfig:
    """EMA of item vectors over a user's history."""

    alpha: float = 0.3
    """EMA rate of an event of strength 1; an event of strength s uses 1 - (1 - alpha) ** s. In (0, 1)."""

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ProfileError(f"ProfileConfig.alpha must be in (0, 1), got {self.alpha}.")

    def config_hash(self) -> str:
        return config_hash(self)


def build_user_profiles(
    events: pl.DataFrame,
    item_ids: Sequence[str],
    item_vectors: np.ndarray,
    cfg: ProfileConfig,
    inter_cfg: InteractionConfig,
    *,
    return_stats: bool = False,
):
    """EMA profiles of the users of ``events``; returns ``(user_ids, float32 matrix)``.

    ``item_ids`` / ``item_vectors`` are row-aligned (an encoder's output). Events
    on items without a vector and events of strength 0 are skipped and counted
    (logged); a user with no usable event gets no profile (not returned,
    counted). Users come back sorted. With ``return_stats=True`` a third element
    gives the counts: n_events, n_used, n_skipped_no_vector,
    n_skipped_zero_strength, n_users_in_events, n_users_with_profile.
    """
    vectors = np.asarray(item_vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(item_ids):
        raise ProfileError(f"build_user_profiles: {len(item_ids)} item ids but vectors of shape {vectors.shape}.")
    dim = vectors.shape[1]
    vocab = pl.DataFrame(
        {"item_id": pl.Series("item_id", list(item_ids), dtype=pl.String), "vec_row": np.arange(len(item_ids), dtype=np.int64)}
    )
    ev = events.select(
        pl.col("user_id").cast(pl.String),
        pl.col("item_id").cast(pl.String),
        "ts",
        pl.col("event_id").cast(pl.String),
        interaction_strength(events, inter_cfg).cast(pl.Float64).alias("strength")
        if events.height
        else pl.lit(0.0, pl.Float64).alias("strength"),
    ).join(vocab, on="item_id", how="left")
    n_events = ev.height
    n_users_in = ev.get_column("user_id").n_unique() if n_events else 0
    n_no_vec = int(ev.get_column("vec_row").null_count())
    ev = ev.filter(pl.col("vec_row").is_not_null())
    n_zero = int((ev.get_column("strength") <= 0).sum())
    ev = ev.filter(pl.col("strength") > 0).sort("user_id", "ts", "event_id")

    if ev.height == 0:
        user_ids: list[str] = []
        matrix = np.zeros((0, dim), dtype=np.float32)
    else:
        users = ev.get_column("user_id")
        is_first = users.ne(users.shift(1)).fill_null(True).to_numpy()
        user_row = np.cumsum(is_first) - 1
        user_ids = users.filter(pl.Series(is_first)).to_list()
        strength = ev.get_column("strength").to_numpy()
        # log(1 - a_t) = s_t * log(1 - alpha); the first event of a user has a = 1 (its own log never enters a product)
        log_keep = strength * np.log1p(-cfg.alpha)
        rate = -np.expm1(log_keep)
        rate[is_first] = 1.0
        log_keep[is_first] = 0.0
        csum = np.cumsum(log_keep)
        # last position of each user's run
        starts = np.flatnonzero(is_first)
        ends = np.append(starts[1:], len(csum)) - 1
        suffix = csum[ends][user_row] - csum  # sum_{s>t, same user} log(1 - a_s)
        weights = (rate * np.exp(suffix)).astype(np.float32)
        w = sp.csr_matrix(
            (weights, (user_row, ev.get_column("vec_row").to_numpy())),
            shape=(len(user_ids), len(item_ids)),
            dtype=np.float32,
        )
        w.sum_duplicates()
        matrix = l2_normalize(np.asarray(w @ vectors))

    stats = {
        "n_events": n_events,
        "n_used": n_events - n_no_vec - n_zero,
        "n_skipped_no_vector": n_no_vec,
        "n_skipped_zero_strength": n_zero,
        "n_users_in_events": n_users_in,
        "n_users_with_profile": len(user_ids),
    }
    if n_no_vec or n_zero or n_users_in != len(user_ids):
        log.warning("build_user_profiles: %s", stats)
    return (user_ids, matrix, stats) if return_stats else (user_ids, matrix)


def profiles_from_text(
    user_ids: Sequence[str],
    texts: Sequence[str | None],
    encode_fn: Callable[[list[str]], np.ndarray],
) -> tuple[list[str], np.ndarray]:
    """Profiles of users without events from their profile text: ``encode_fn(texts)``, L2-normalized.

    Users whose text is missing or blank are not returned (count logged).
    """
    if len(user_ids) != len(texts):
        raise ProfileError(f"profiles_from_text: {len(user_ids)} user ids but {len(texts)} texts.")
    keep = [j for j, t in enumerate(texts) if t is not None and str(t).strip()]
    if len(keep) != len(user_ids):
        log.warning("profiles_from_text: %d of %d users have no profile text", len(user_ids) - len(keep), len(user_ids))
    if not keep:
        return [], np.zeros((0, 0), dtype=np.float32)
    vecs = np.asarray(encode_fn([str(texts[j]) for j in keep]), dtype=np.float32)
    if vecs.ndim != 2 or vecs.shape[0] != len(keep):
        raise ProfileError(
            f"profiles_from_text: encode_fn returned shape {vecs.shape} for {len(keep)} texts; expected (n, dim)."
        )
    return [user_ids[j] for j in keep], l2_normalize(vecs)


def merge_user_vectors(*parts: tuple[Sequence[str], np.ndarray]) -> tuple[list[str], np.ndarray]:
    """Concatenate (user_ids, vectors) parts; a user present in several keeps the EARLIEST part's row.

    Typical use: ``merge_user_vectors(history_profiles, profile_text_vectors)``.
    """
    ids: list[str] = []
    rows: list[np.ndarray] = []
    taken: set[str] = set()
    dim = None
    for uids, mat in parts:
        mat = np.asarray(mat, dtype=np.float32)
        if len(uids) == 0:
            continue
        dim = dim or mat.shape[1]
        keep = [j for j, u in enumerate(uids) if u not in taken]
        ids.extend(uids[j] for j in keep)
        taken.update(uids[j] for j in keep)
        rows.append(mat[keep])
    if not rows:
        return [], np.zeros((0, 0), dtype=np.float32)
    return ids, np.ascontiguousarray(np.vstack(rows), dtype=np.float32)
