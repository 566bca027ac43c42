"""Candidate sources of the two-stage recommender (stage 1), vectorized.

Sources (``cfg.pool_size(source)`` candidates per user each):

- ``als``: top-N ALS dot product over catalogue items with factors; users
  without factors (brand-new users) get none.
- ``content:<enc>``: kNN of the user's interest vector against the catalogue's
  item vectors (cosine); users without a vector get none.
- ``c2cf:<enc>``: user ALS factors x pseudo factors (content->CF bridge) of the
  items that are NEW at the snapshot (``item_segment == "new"``).
- ``popular``: most popular by ``n_recent`` then ``n_interactions`` (ties by
  hashed item id).
- ``new``: youngest items (``age_days``) of segment new or cold.

Every source excludes the user's seen items (``view.seen``) and only returns
catalogue items. The merged frame has one row per (user, item) with a bool
``source_<slug>`` flag, a ``score_<slug>`` and a ``rank_<slug>`` (1 = best,
null where the source did not propose the item) for every requested source.
"""

from __future__ import annotations

import re
from typing import Callable, Sequence

import numpy as np
import polars as pl
import pyarrow as pa
import scipy.sparse as sp

from recsys_assets.lib.errors import RecsysError
from recsys_assets.lib.topk import dot_top_k, top_k_rows
from recsys_assets.lib.ranking.arm_spec import parse_arm
from recsys_assets.lib.ranking.config import RankingConfig
from recsys_assets.lib.ranking.inputs import SnapshotFeatures

BASE_SOURCES: tuple[str, ...] = ("als", "popular", "new")
"""Sources of every ranker arm (ID and popularity signals only)."""

MAX_CHUNK_CELLS = 1 << 24
"""Users per matmul chunk are sized so that a chunk's score block stays below this many cells."""


POOL_BLOCK_USERS = 5_000
"""Default users per block of the nightly candidate pool and of its evaluation (``ModelsResource.block_users``)."""


class CandidateError(RecsysError):
    """A candidate source cannot be generated as asked."""


def slug(name: str) -> str:
    """Column-safe form of a source or encoder name (``content:minilm-l6`` -> ``content_minilm_l6``)."""
    return re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower()


def source_column(source: str) -> str:
    return f"source_{slug(source)}"


def score_column(source: str) -> str:
    return f"score_{slug(source)}"


def rank_column(source: str) -> str:
    return f"rank_{slug(source)}"


def text_sources(encoder: str) -> tuple[str, ...]:
    """The text-derived sources an arm with ``encoder`` adds."""
    return (f"content:{encoder}", f"c2cf:{encoder}")


def arm_sources(arm: str) -> tuple[str, ...]:
    """Candidate sources of a ranker arm: ``ranker_no_text`` or ``ranker_<enc>`` (a ``+slots`` suffix is ignored)."""
    spec = parse_arm(arm)
    if spec.is_ranker:
        return BASE_SOURCES + (text_sources(spec.encoder) if spec.encoder else ())
    raise CandidateError(f"arm_sources: {arm!r} is not a ranker arm (ranker_no_text or ranker_<encoder>).")


def default_arm_sources(cfg: RankingConfig | None = None) -> dict[str, tuple[str, ...]]:
    """``{ranker arm: sources}`` for the encoders of ``cfg`` (arms differ ONLY in the text sources)."""
    cfg = cfg or RankingConfig()
    out = {"ranker_no_text": BASE_SOURCES}
    out.update({f"ranker_{e}": arm_sources(f"ranker_{e}") for e in cfg.encoders})
    return out


ARM_SOURCES: dict[str, tuple[str, ...]] = default_arm_sources()
"""Sources per ranker arm for the default encoders; use :func:`arm_sources` for any other encoder."""


# --- the top-N kernel ----------------------------------------------------------------


def topn_block(
    n: int,
    seen: sp.csr_matrix,
    user_rows: np.ndarray,
    col_ids: np.ndarray,
    score_fn: Callable[[np.ndarray], np.ndarray],
    n_catalog: int,
    item_vectors: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Top ``n`` of ``col_ids`` per user row by ``score_fn(rows) -> (len(rows), len(col_ids))``, seen excluded.

    With ``item_vectors`` (one row per ``col_ids`` entry), ``score_fn(rows)`` gives the rows' user vectors
    and the scores are their dot products, ranked by :func:`topk.dot_top_k` (the same bits whatever the block).

    Returns flat ``(user_row, catalogue_col, score, rank)``; -inf scores are never returned.
    """
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.int32))
    if n <= 0 or len(user_rows) == 0 or len(col_ids) == 0:
        return empty
    pos = np.full(n_catalog, -1, dtype=np.int64)
    pos[col_ids] = np.arange(len(col_ids))
    chunk = max(1, MAX_CHUNK_CELLS // len(col_ids))
    k = min(n, len(col_ids))
    out_u, out_c, out_s, out_r = [], [], [], []
    ranks = np.arange(1, k + 1, dtype=np.int32)
    for s in range(0, len(user_rows), chunk):
        rows = user_rows[s : s + chunk]
        if item_vectors is None:
            scores = np.array(score_fn(rows), dtype=np.float32, copy=True)
        else:
            user_vectors = score_fn(rows)
            scores = np.asarray(user_vectors @ item_vectors.T, dtype=np.float32)
        sub = seen[rows]
        if sub.nnz:
            rr = np.repeat(np.arange(len(rows)), np.diff(sub.indptr))
            cc = pos[sub.indices]
            keep = cc >= 0
            scores[rr[keep], cc[keep]] = -np.inf
        part, ps = top_k_rows(scores, k) if item_vectors is None else dot_top_k(scores, user_vectors, item_vectors, k)
        valid = np.isfinite(ps).ravel()
        out_u.append(np.repeat(rows, k)[valid])
        out_c.append(col_ids[part.ravel()][valid])
        out_s.append(ps.ravel()[valid])
        out_r.append(np.tile(ranks, len(rows))[valid])
    return np.concatenate(out_u), np.concatenate(out_c), np.concatenate(out_s), np.concatenate(out_r)


def _ordered_list_source(
    order: np.ndarray, values: np.ndarray, n: int, seen: sp.csr_matrix, user_rows: np.ndarray, n_catalog: int
):
    """Same global list for every user (popular, new): each user's first ``n`` unseen entries of ``order``.

    What :func:`topn_block` gives on the list's first ``n + max(seen)`` entries scored by strictly decreasing
    list position (seen excluded), without a (users x entries) score block: a user with ``s`` seen entries
    among them needs only the first ``n + s`` (one row per user and entry read, plus one per seen pair)."""
    if len(user_rows) == 0 or n <= 0 or len(order) == 0:
        return topn_block(0, seen, user_rows, order, lambda r: None, n_catalog)
    max_seen = int(np.diff(seen.indptr).max(initial=0))
    cols = order[: n + max_seen]
    k = min(n, len(cols))
    pos = np.full(n_catalog, -1, dtype=np.int64)
    pos[cols] = np.arange(len(cols))
    sub = seen[user_rows]
    sp_row = np.repeat(np.arange(len(user_rows), dtype=np.int64), np.diff(sub.indptr))
    sp_pos = pos[sub.indices]
    hit = sp_pos >= 0
    seen_key = np.unique(sp_row[hit] * len(cols) + sp_pos[hit])  # (user, list position) of the seen entries
    n_hit = np.bincount(sp_row[hit], minlength=len(user_rows))
    m = np.minimum(k + n_hit, len(cols))  # entries read per user: its first k unseen are among them
    starts = np.cumsum(m) - m
    row = np.repeat(np.arange(len(user_rows), dtype=np.int64), m)
    p = np.arange(len(row), dtype=np.int64) - starts[row]
    key = row * len(cols) + p
    at = np.minimum(np.searchsorted(seen_key, key), max(len(seen_key) - 1, 0))
    keep = seen_key[at] != key if len(seen_key) else np.ones(len(key), dtype=bool)
    row, p = row[keep], p[keep]
    per_user = np.bincount(row, minlength=len(user_rows))
    rank = np.arange(len(row), dtype=np.int64) - (np.cumsum(per_user) - per_user)[row] + 1
    top = rank <= k
    c = cols[p[top]]
    return user_rows[row[top]], c, values[c].astype(np.float32), rank[top].astype(np.int32)


def source_topn(
    features: SnapshotFeatures, source: str, n: int, user_ids: Sequence[str], seen: sp.csr_matrix
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One source's top ``n`` per user as flat arrays (user_row into ``user_ids``, catalogue col, score, rank)."""
    n_cat = len(features.item_ids)
    all_rows = np.arange(len(user_ids))
    kind, _, enc = source.partition(":")
    if kind == "als":
        urow = features.als_user_rows(user_ids)
        items, known = features.als_items()
        cols = np.flatnonzero(known)
        uf = features.als.user_factors if features.als is not None else None
        itf = items[cols]
        return topn_block(n, seen, all_rows[urow >= 0], cols, lambda r: uf[urow[r]], n_cat, itf)
    if kind == "content":
        al = features.aligned(enc)
        urow = features.encoder_user_rows(enc, user_ids)
        cols = np.flatnonzero(al.has_vector)
        iv = al.vectors[cols]
        uv = features.encoder(enc).user_vectors
        return topn_block(n, seen, all_rows[urow >= 0], cols, lambda r: uv[urow[r]], n_cat, iv)
    if kind == "c2cf":
        al = features.aligned(enc)
        if al.pseudo is None:
            return topn_block(0, seen, all_rows, np.zeros(0, np.int64), lambda r: None, n_cat)
        urow = features.als_user_rows(user_ids)
        is_new = features.item_array("item_segment") == "new"
        cols = np.flatnonzero(is_new & al.has_vector)
        pf = al.pseudo[cols]
        uf = features.als.user_factors
        return topn_block(n, seen, all_rows[urow >= 0], cols, lambda r: uf[urow[r]], n_cat, pf)
    if kind == "popular":
        return _ordered_list_source(features.popularity_order, features.popularity_score, n, seen, all_rows, n_cat)
    if kind == "new":
        seg = features.item_array("item_segment")
        age = features.item_table.get_column("age_days").cast(pl.Float64).fill_null(np.nan).to_numpy()
        eligible = np.flatnonzero(np.isin(seg, ["new", "cold"]))
        age_key = np.where(np.isnan(age[eligible]), np.inf, age[eligible])
        order = eligible[np.lexsort((features.item_array("tiebreak")[eligible], age_key))]
        return _ordered_list_source(order, -age, n, seen, all_rows, n_cat)
    raise CandidateError(f"Unknown candidate source {source!r}; choose from als, content:<enc>, c2cf:<enc>, popular, new.")


def source_inputs_digest(features: SnapshotFeatures, source: str) -> str:
    """The digest of the inputs :func:`source_topn` reads for ``source`` (``SnapshotFeatures.inputs_digest``: the
    view and ALS, plus the encoder of a ``content:`` / ``c2cf:`` source): equal digests, equal candidates."""
    kind, _, enc = source.partition(":")
    return features.inputs_digest(enc if kind in ("content", "c2cf") else None)


def generate_candidates(
    features: SnapshotFeatures,
    user_ids: Sequence[str],
    sources: tuple[str, ...],
    cfg: RankingConfig,
    *,
    pool_sizes: dict[str, int] | None = None,
) -> pl.DataFrame:
    """Candidates of ``sources`` for ``user_ids``: one row per (user, item), every source's flag/score/rank.

    ``pool_sizes`` overrides ``cfg.pool_size(source)`` per source. Rows are sorted
    by user (in ``user_ids`` order) and catalogue item id.
    """
    users = list(dict.fromkeys(user_ids))
    seen = features.seen_matrix(users)
    n_cat = len(features.item_ids)
    found = []
    for src in sources:
        n = (pool_sizes or {}).get(src, cfg.pool_size(src))
        u, c, s, r = source_topn(features, src, n, users, seen)
        found.append((src, u.astype(np.int64) * n_cat + c.astype(np.int64), s.astype(np.float32), r.astype(np.int32)))
    keys, at = _merge_pairs([key for _, key, _, _ in found])
    user_series = pl.Series("user_id", users, dtype=pl.String)
    item_series = pl.Series("item_id", features.item_ids, dtype=pl.String)
    scores, ranks = {}, {}
    for (src, _, s, r), where in zip(found, at):
        scores[src] = _scattered(s, where, len(keys), score_column(src))
        ranks[src] = _scattered(r, where, len(keys), rank_column(src))
    return pl.DataFrame(
        [
            user_series.gather(keys // max(n_cat, 1)),
            item_series.gather(keys % max(n_cat, 1)),
            *[ranks[src].is_not_null().alias(source_column(src)) for src in sources],
            *[scores[src] for src in sources],
            *[ranks[src] for src in sources],
        ]
    )


def _merge_pairs(keys: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """The sorted union of the sources' pair keys (``user_row * n_catalog + col``) and, per source, where each
    of its keys sits in it. A source proposes a pair at most once (a top-N or a list's first N unseen entries),
    so one row per pair holds every source's score and rank (what a group-by would give, at a sort's cost:
    polars' group_by + sort of a 10M-world block was 5x slower)."""
    if not keys:
        return np.zeros(0, np.int64), []
    union, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    bounds = np.cumsum([0, *[len(k) for k in keys]])
    return union, [inverse[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def _scattered(values: np.ndarray, where: np.ndarray, n: int, name: str) -> pl.Series:
    """``values`` placed at rows ``where`` of an ``n``-row column, null elsewhere (dtype kept)."""
    full = np.zeros(n, values.dtype)
    full[where] = values
    valid = np.zeros(n, bool)
    valid[where] = True
    return pl.Series(name, pa.array(full, mask=~valid))


def candidate_recall(candidates: pl.DataFrame, truth: pl.DataFrame) -> float:
    """Share of ``truth`` (user_id, item_id) pairs inside the candidate pool (NaN without truth)."""
    if truth.height == 0:
        return float("nan")
    hit = truth.select("user_id", "item_id").unique().join(candidates.select("user_id", "item_id"), on=["user_id", "item_id"], how="semi")
    return hit.height / truth.select("user_id", "item_id").unique().height
