"""Ranker features of (user, candidate item) pairs, with the text features kept apart.

``FEATURES_NO_TEXT`` are ID/popularity/cold-start signals every ranker arm uses;
``text_feature_names(enc)`` are the ONLY additions of ``ranker_<enc>``: the text
cosine, the content->CF score and the two text source flags. A missing signal
is NaN (LightGBM routes it), never a silent 0.

The ranker trains on a snapshot at D - w and is served at D, so every feature must
mean the same at both snapshots (docs/ranker.md): popularity enters as the item's
place in the popularity arm's list (``pop_rank_log``, ``pop_pct``; items tied on popularity share
the first one's place, :func:`popularity_place`) and as shares of
the snapshot's events (``recent_share``, ``all_share``, per 1,000), never as raw counts
that grow with the log; ALS enters as the ALS arm's own score and rank. Those
order-copying features are monotone-constrained (``RankingConfig.monotone``).

Two signals beyond those copies (round 5): ``last_cooc``, how often the users of the user's last
few items also had the candidate (returning users), and ``profile_lift``, how much more the users
sharing the user's profile attributes (MovieLens: age, gender, occupation) had it than everyone
(new users too). Both are shares and ratios of the snapshot's history, NaN without history / profile.
``profile_lift`` reads the users catalogue's profile attributes as categories (the same for every
arm); the text arms' extra is only what a text encoder makes of texts (``text_feature_names``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys_assets.lib.errors import RecsysError
from recsys_assets.lib.interactions import id_index, rows_of
from recsys_assets.lib.ranking.candidates import BASE_SOURCES, rank_column, slug, source_column, text_sources
from recsys_assets.lib.ranking.inputs import SEGMENT_ORDINAL, SnapshotFeatures
from recsys_assets.lib.topk import GATHER_ROWS, gathered_dots

FEATURES_NO_TEXT: list[str] = [
    "als_score",
    "als_rank",
    "pop_rank_log",
    "pop_pct",
    "recent_share",
    "all_share",
    "pop_trend",
    "item_age_days",
    "user_hist_len",
    "user_is_new",
    "item_is_new",
    "user_segment",
    "item_segment",
    "category_overlap",
    "last_cooc",
    "profile_lift",
    *[source_column(s) for s in BASE_SOURCES],
]
"""Features of ranker_no_text (and the shared part of every text arm)."""

LAST_ITEMS = 10
"""How many of the user's most recent distinct history items ``last_cooc`` compares a candidate with."""

PROFILE_SMOOTHING = 100.0
"""``profile_lift``'s pseudo-events (alpha): small cohorts' counts are shrunk towards no lift (100 beat
1 and 10 on the tuning days, docs/ranker.md round 5)."""

PAIR_CHUNK = GATHER_ROWS
"""Pairs per step of ``last_cooc``'s mean (and of :func:`pair_dot`'s gathers, ``topk.GATHER_ROWS``: 2^18 made
pair_dot 5x slower at dim 384, page-faulting fresh 400 MB gathers); each pair's value is the same bits."""

COOC_CELLS = 1 << 23
"""Dense cells (float32: 32 MiB) of one chunk of ``last_cooc``'s co-occurrence counts (last items x catalogue)."""

COOC_ENTRIES = 1 << 18
"""(pair, last-item slot) entries of ``last_cooc`` read from a chunk per step: its int64 index arrays stay a few
MiB (one step over a whole chunk's ~10M entries at 1M events was 2x slower, the same values)."""

COOC_KEPT_CELLS = 1 << 28
"""Cells (float32: 1 GiB) of the co-occurrence rows ``last_cooc`` keeps per snapshot (:func:`kept_cooc_rows`):
5,368 rows of a 50,000-item catalogue, every row of a catalogue up to 16,384 items."""


class FeatureError(RecsysError):
    """Ranker features cannot be computed for these candidates."""


def text_feature_names(encoder: str) -> list[str]:
    """Features ``ranker_<encoder>`` adds to FEATURES_NO_TEXT."""
    s = slug(encoder)
    return [f"text_cos_{s}", f"c2cf_score_{s}", *[source_column(src) for src in text_sources(encoder)]]


def feature_names(encoder: str | None) -> list[str]:
    """All features of an arm: FEATURES_NO_TEXT (+ the encoder's text features)."""
    return FEATURES_NO_TEXT + (text_feature_names(encoder) if encoder else [])


def pair_dot(a: np.ndarray, a_rows: np.ndarray, b: np.ndarray, b_rows: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``a[a_rows[k]] . b[b_rows[k]]`` where ``mask[k]``, NaN elsewhere (float32)."""
    out = np.full(len(a_rows), np.nan, dtype=np.float32)
    idx = np.flatnonzero(mask)
    out[idx] = gathered_dots(a, a_rows[idx], b, b_rows[idx])
    return out


def popularity_place(features: SnapshotFeatures) -> np.ndarray:
    """float64 per catalogue item: its 0-based place in the popularity list, items tied on popularity
    sharing the place of the first of them (= the number of items strictly more popular).

    The popularity arm breaks ties by a hashed item id; as a feature (``pop_rank_log``, ``pop_pct``)
    and as the ranker's prior that order is arbitrary, so tied items get one value and the trees
    (and the text features) decide among them. Every never-seen item (no events, popularity 0)
    is placed right after the last seen item. Serving still breaks exact score ties by the
    popularity list (``arms.popularity_tiebreak``).
    """
    key = "pop_place"
    if key not in features._cache:
        score = features.popularity_score
        desc = -np.sort(score)[::-1]
        features._cache[key] = np.searchsorted(desc, -score, side="left").astype(np.float64)
    return features._cache[key]


def last_items(features: SnapshotFeatures, users: Sequence[str], n: int = LAST_ITEMS) -> tuple[np.ndarray, np.ndarray]:
    """The catalogue columns of each user's ``n`` most recent distinct history items.

    Returns (cols, valid): int64 and bool arrays of shape (len(users), n), most recent first
    (ties in ts by item id); ``valid`` is False past a user's history (users without history: all False).
    Every user's list is made once per snapshot (:func:`_all_last_items`) and a block of users gathers its rows:
    making them per block read the whole history once per block (10M world: hundreds of blocks a night).
    """
    out = np.zeros((len(users), n), dtype=np.int64)
    valid = np.zeros((len(users), n), dtype=bool)
    if not len(users) or n <= 0:
        return out, valid
    index, cols, ok = _all_last_items(features, n)
    rows = rows_of(users, index, "user_id")
    has = rows >= 0
    out[has] = cols[rows[has]]
    valid[has] = ok[rows[has]]
    return out, valid


def _all_last_items(features: SnapshotFeatures, n: int) -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    """:func:`last_items` of every user with history in the view, cached per snapshot: (user index
    (``interactions.id_index``), cols, valid), the arrays one row per user. A user's list depends on its own history only."""
    key = ("last_items", n)
    if key not in features._cache:
        h = (
            features.view.history.select(pl.col("user_id").cast(pl.String), pl.col("item_id").cast(pl.String), "ts")
            .join(features.item_index, on="item_id", how="inner")
            .group_by("user_id", "icol")
            .agg(pl.col("ts").max())
            .sort(["user_id", "ts", "icol"], descending=[False, True, False])
            .with_columns(pl.int_range(pl.len()).over("user_id").alias("k"))
            .filter(pl.col("k") < n)
        )
        index = id_index(h.get_column("user_id").unique(maintain_order=True).to_list(), "user_id")
        g = h.select(pl.col("user_id").rle_id().cast(pl.Int64)).to_series().to_numpy()
        cols = np.zeros((index.height, n), dtype=np.int64)
        ok = np.zeros((index.height, n), dtype=bool)
        k = h.get_column("k").to_numpy()
        cols[g, k] = h.get_column("icol").to_numpy()
        ok[g, k] = True
        features._cache[key] = (index, cols, ok)
    return features._cache[key]


def _user_items(features: SnapshotFeatures) -> tuple[sp.csr_matrix, sp.csc_matrix]:
    """The view's history as a float32 0/1 (user, catalogue item) matrix, CSR and CSC (cached per snapshot)."""
    key = "user_item_csc"
    if key not in features._cache:
        h = (
            features.view.history.select(pl.col("user_id").cast(pl.String), pl.col("item_id").cast(pl.String))
            .unique()
            .join(features.item_index, on="item_id", how="inner")
        )
        index = id_index(h.get_column("user_id").unique().sort().to_list())
        rows = rows_of(h.get_column("user_id"), index)
        x = sp.csr_matrix(
            (np.ones(h.height, dtype=np.float32), (rows, h.get_column("icol").to_numpy())), shape=(index.height, len(features.item_ids))
        )
        features._cache[key] = (x, x.tocsc())
    return features._cache[key]


def last_cooc_values(
    x: sp.csr_matrix, xc: sp.csc_matrix, lc: np.ndarray, lv: np.ndarray, urow: np.ndarray, icol: np.ndarray, cells: int = COOC_CELLS,
    entries: int = COOC_ENTRIES, kept: Callable[[], CoocRows] | None = None,
) -> np.ndarray:
    """float32 per pair k: the mean over the valid last items j of user ``urow[k]`` (``lc``/``lv`` of
    :func:`last_items`) of P(``icol[k]`` | j) = (users who had j and icol[k]) / (users who had j), over the
    0/1 user-item matrix ``x`` (``xc`` = the same as CSC); NaN for users without a valid last item.

    Only the pairs read are computed: the last items' co-occurrence counts ``xc[:, last].T @ x`` are made
    ``cells`` dense cells (a chunk of last items x the catalogue) at a time, and each chunk is read at the
    (user, slot, candidate) entries of its last items only. When the pairs' candidates are at most half the
    catalogue (the cold scope's new items, an explained sample) the counts are made for those columns only
    (``x[:, candidates]``: the same integer counts). ``kept``: returns the co-occurrence rows made once per
    snapshot (:func:`kept_cooc_rows`), called only when the candidates span more than half the catalogue (then the
    last items among them are read there instead of being made again; with few columns their products are cheap,
    and reading a few cells of each kept row is not: the 10M cold scope). A chunk's
    (pair, slot) entries are read about ``entries`` at a time. Each share is float32(count) * float32(1 / users of j)
    and the mean sums a (pairs, last items) float32 array row by row, so the values are the bytes of the
    former full-row computation (co-occurrence rows of every last item, looked up per element; see the test).
    Memory: the chunk, plus 4 bytes per (pair, last-item slot)."""
    n, n_last = len(icol), lv.shape[1]
    out = np.full(n, np.nan, dtype=np.float32)
    uniq = np.unique(lc[lv])
    if not len(uniq):
        return out
    idx = np.flatnonzero(lv.any(axis=1)[urow])  # pairs of users with history
    by_user = np.argsort(urow[idx], kind="stable")
    idx = idx[by_user]  # ... grouped by user (pair order within a user kept)
    full_cand = icol[idx]  # the catalogue column of the co-occurrence counts each pair reads
    cols = np.unique(full_cand)
    few = 2 * len(cols) <= x.shape[1]
    rows = kept() if kept is not None and not few else None
    # the last items with kept rows first, then the others (each group in item order): ``sr`` is an item's place
    kept_pos = rows.pos[uniq] if rows is not None else np.full(len(uniq), -1, dtype=np.int64)
    uniq = np.concatenate([uniq[kept_pos >= 0], uniq[kept_pos < 0]])
    kept_pos = np.concatenate([kept_pos[kept_pos >= 0], kept_pos[kept_pos < 0]])
    n_kept = int((kept_pos >= 0).sum())
    place = np.full(x.shape[1], -1, dtype=np.int64)
    place[uniq] = np.arange(len(uniq))
    diag = np.diff(xc.indptr)[uniq].astype(np.float32)  # users of each last item = its co-occurrence with itself
    scale = np.where(diag > 0, 1.0 / np.maximum(diag, 1.0), 0.0).astype(np.float32)
    pu = urow[idx]
    first = np.searchsorted(pu, np.arange(len(lv)), side="left")
    count = np.searchsorted(pu, np.arange(len(lv)), side="right") - first
    if few:
        b = xc[:, cols].tocsr()
        cand = np.searchsorted(cols, full_cand)
    else:
        b, cand = x, full_cand
    share = np.zeros((len(idx), n_last), dtype=np.float32)  # share[q, l] for pair idx[q] and the user's slot l
    su, ss = np.nonzero(lv)  # (user, slot) of every valid last item, ordered by the item's place in ``uniq``
    sr = place[lc[su, ss]]
    o = np.argsort(sr, kind="stable")
    su, ss, sr = su[o], ss[o], sr[o]
    ends = np.cumsum(count[su])  # (pair, slot) entries up to each (user, slot), in this order

    def read(lo: int, hi: int, counts: np.ndarray, row_of: np.ndarray, col_of: np.ndarray) -> None:
        """share of the (user, slot) entries lo..hi, whose items' counts are ``counts[row_of[item place]]``."""
        start = ends[lo - 1] if lo else 0
        if hi == lo or ends[hi - 1] == start:
            return
        # ``entries`` at a time (a few MiB of index arrays, not one per entry of the chunk)
        cuts = lo + np.unique(np.searchsorted(ends[lo:hi], np.arange(start, ends[hi - 1], entries), side="right"))
        for g0, g1 in zip(cuts, [*cuts[1:], hi]):
            cnt = count[su[g0:g1]]
            e = np.cumsum(cnt)
            q = np.repeat(first[su[g0:g1]] - (e - cnt), cnt) + np.arange(e[-1])  # the users' pairs, in runs
            share[q, np.repeat(ss[g0:g1], cnt)] = counts[np.repeat(row_of[sr[g0:g1]], cnt), col_of[q]] * np.repeat(scale[sr[g0:g1]], cnt)

    if n_kept:
        read(0, int(np.searchsorted(sr, n_kept)), rows.rows, kept_pos, full_cand)
    a_rows = xc[:, uniq[n_kept:]].T.tocsr()
    step = max(1, cells // max(b.shape[1], 1))
    for a in range(n_kept, len(uniq), step):
        lo, hi = np.searchsorted(sr, [a, a + step])
        if hi > lo:
            dense = (a_rows[a - n_kept : a - n_kept + step] @ b).toarray()  # co-occurrence counts, exact in float32
            read(int(lo), int(hi), dense, np.arange(len(uniq)) - a, cand)
    vm_all = lv[pu]
    for s in range(0, len(idx), PAIR_CHUNK):
        vm = vm_all[s : s + PAIR_CHUNK]
        out[idx[s : s + PAIR_CHUNK]] = (share[s : s + PAIR_CHUNK] * vm).sum(axis=1) / vm.sum(axis=1)
    return out


@dataclass(frozen=True)
class CoocRows:
    """Co-occurrence count rows of some catalogue items, made once per snapshot (:func:`kept_cooc_rows`)."""

    pos: np.ndarray
    """int64 per catalogue item: its row in ``rows``, -1 when not kept."""
    rows: np.ndarray
    """float32 (kept items, catalogue): users who had both the kept item and each catalogue item (exact integers)."""


def kept_cooc_rows(x: sp.csr_matrix, xc: sp.csc_matrix, weight: np.ndarray, cells: int = COOC_KEPT_CELLS, chunk: int = COOC_CELLS) -> CoocRows:
    """The co-occurrence rows worth keeping for a snapshot's blocks: of the items with ``weight`` > 0 (users having
    the item among their last items), the ones whose rows cost most to make over all blocks, i.e. by weight x the
    sparse product's work for the row (the history lengths of the item's users, summed), at most ``cells`` cells.

    10M world (50,000 items, 40 blocks of 2,500 served users a protocol, ~10,400 distinct last items a block): a
    Zipf head item is a last item of almost every block, and its row is the costliest to make; the 1,000 rows
    ranked so carry 58 % of the blocks' product work, 2,000 rows 70 %. Which rows are kept changes no value."""
    n_items = x.shape[1]
    work = (xc.T @ np.diff(x.indptr).astype(np.float64)) * np.asarray(weight, dtype=np.float64)
    n = min(int((work > 0).sum()), cells // max(n_items, 1))
    top = np.sort(np.lexsort((np.arange(n_items), -work))[:n])
    pos = np.full(n_items, -1, dtype=np.int64)
    pos[top] = np.arange(n)
    rows = np.empty((n, n_items), dtype=np.float32)
    a_rows = xc[:, top].T.tocsr()
    step = max(1, chunk // max(n_items, 1))
    for a in range(0, n, step):
        rows[a : a + step] = (a_rows[a : a + step] @ x).toarray()
    return CoocRows(pos, rows)


def _last_cooc(features: SnapshotFeatures, users: list[str], urow: np.ndarray, icol: np.ndarray) -> np.ndarray:
    """``last_cooc``: the mean over the user's last ``LAST_ITEMS`` distinct history items j of
    P(candidate | j), the share of j's users who also had the candidate in the view's history
    (MovieLens users rate in sessions: what they had last predicts the next day better than the whole
    history). A share, not a count, so it means the same at D - w (training) and D (serving).
    NaN for users without history. Computed for the pairs only (:func:`last_cooc_values`), reading the rows
    kept for the snapshot (:func:`kept_cooc_rows`, weighted by how many users have the item among their last)."""
    lc, lv = last_items(features, users)
    if not lv.any():
        return np.full(len(icol), np.nan, dtype=np.float32)
    x, xc = _user_items(features)

    def kept() -> CoocRows:
        """The snapshot's kept rows, made by the first call that reads them."""
        key = ("cooc_rows", LAST_ITEMS)
        if key not in features._cache:
            _, cols, ok = _all_last_items(features, LAST_ITEMS)
            features._cache[key] = kept_cooc_rows(x, xc, np.bincount(cols[ok], minlength=x.shape[1]))
        return features._cache[key]

    return last_cooc_values(x, xc, lc, lv, urow, icol, kept=kept)


def profile_tokens(users: pl.DataFrame) -> pl.DataFrame:
    """(user_id, token): the distinct lower-cased whitespace tokens of each user's profile
    (MovieLens: age, gender, occupation words), the user's categorical attributes."""
    return (
        users.select(pl.col("user_id").cast(pl.String), pl.col("profile").str.to_lowercase().str.split(" ").alias("token"))
        .explode("token")
        .filter(pl.col("token").is_not_null() & (pl.col("token") != ""))
        .unique()
    )


PROFILE_CHUNK = 1 << 20
"""Pairs per step of :func:`_profile_lift` (its per-token temporaries are a few arrays of this length)."""


def _profile_counts(features: SnapshotFeatures) -> tuple[pl.DataFrame, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``profile_lift``'s counts over the view's history: (user_id, code) of each user's tokens that some user with
    history has (codes in sorted token order), N_t per code, the sorted ``code * n_items + icol`` keys of the
    nonzero n_tc and their counts, and each item's share of all history events.

    n_tc is (token x user incidence) @ (user x item event counts), a sparse product of integer matrices:
    the same counts as grouping every (event, token of its user) row, without building those rows."""
    n_items = len(features.item_ids)
    tok = profile_tokens(features.users.filter(pl.col("profile").is_not_null()))
    ev = features.view.history.select(pl.col("user_id").cast(pl.String), pl.col("item_id").cast(pl.String)).join(
        features.item_index, on="item_id", how="inner"
    )
    icol = ev.get_column("icol").to_numpy()
    share = np.bincount(icol, minlength=n_items).astype(np.float64) / max(ev.height, 1)
    users = id_index(ev.get_column("user_id").unique().sort().to_list())
    events = sp.csr_matrix((np.ones(ev.height, dtype=np.int64), (rows_of(ev.get_column("user_id"), users), icol)), shape=(users.height, n_items))
    del ev, icol
    tokens = tok.get_column("token").unique().sort()
    codes = pl.DataFrame({"token": tokens, "code": np.arange(len(tokens), dtype=np.int64)})
    tu = tok.join(codes, on="token", how="inner").join(users.rename({"id": "user_id"}), on="user_id", how="inner")
    incidence = sp.csr_matrix(
        (np.ones(tu.height, dtype=np.int64), (tu.get_column("code").to_numpy(), tu.get_column("id_row").to_numpy())), shape=(len(tokens), users.height)
    )
    n_tc = (incidence @ events).tocsr()
    n_tc.sum_duplicates()  # canonical: sorted columns per row, so the keys below are sorted
    n_t = np.asarray(n_tc.sum(axis=1)).ravel()
    tc_key = np.repeat(np.arange(len(tokens), dtype=np.int64) * n_items, np.diff(n_tc.indptr)) + n_tc.indices
    user_codes = tok.join(codes.filter(pl.Series(n_t > 0)), on="token", how="inner").select("user_id", "code")
    return user_codes, n_t, tc_key, n_tc.data, share


def _profile_lift(features: SnapshotFeatures, users: list[str], urow: np.ndarray, icol: np.ndarray, alpha: float = PROFILE_SMOOTHING) -> np.ndarray:
    """How much more often users sharing this user's profile attributes had the candidate than everyone:
    the sum over the user's profile tokens t (those some user with history has) of
    ``log((n_tc + alpha) / (N_t * s_c + alpha))``, with n_tc the history events on the candidate by users with t,
    N_t all their history events and s_c the candidate's share of all history events (a naive-Bayes
    log-lift: tokens every user has add 0). A ratio of shares, so it means the same at D - w and D.
    NaN for users without a profile (or whose tokens no user with history has).

    Tokens are integer codes in sorted token order, a user's tokens a row of codes and n_tc a sorted
    ``code * n_items + icol`` key array: each pair's terms are added in token order, one token slot at a
    time (the same sums as a (pair, token) table sorted by pair and token, without that table)."""
    n = len(icol)
    if features.users is None or "profile" not in features.users.columns:
        return np.full(n, np.nan, dtype=np.float32)
    key = "profile_lift"
    if key not in features._cache:
        features._cache[key] = _profile_counts(features)
    user_codes, n_t, tc_key, tc_n, share = features._cache[key]
    uidx = pl.DataFrame({"user_id": pl.Series(users, dtype=pl.String), "urow": np.arange(len(users), dtype=np.int64)})
    ut = user_codes.join(uidx, on="user_id", how="inner").select("urow", "code").sort("urow", "code")
    if ut.height == 0:
        return np.full(n, np.nan, dtype=np.float32)
    u, c = ut.get_column("urow").to_numpy(), ut.get_column("code").to_numpy()
    slot = np.arange(len(u)) - np.searchsorted(u, u, side="left")  # a user's tokens in code (= token) order
    slots = np.full((len(users), int(slot.max()) + 1), -1, dtype=np.int64)
    slots[u, slot] = c
    k_all = np.flatnonzero(slots[urow, 0] >= 0)  # pairs of users with a token
    out = np.full(n, np.nan, dtype=np.float64)
    n_items = len(features.item_ids)
    for s in range(0, len(k_all), PROFILE_CHUNK):
        k = k_all[s : s + PROFILE_CHUNK]
        ic = icol[k]
        ur = urow[k]
        acc = np.zeros(len(k), dtype=np.float64)
        for t in range(slots.shape[1]):
            m = np.flatnonzero(slots[ur, t] >= 0)
            code = slots[ur[m], t]
            q = code * n_items + ic[m]
            pos = np.minimum(np.searchsorted(tc_key, q), max(len(tc_key) - 1, 0))
            n_tc = np.where(tc_key[pos] == q, tc_n[pos], 0) if len(tc_key) else np.zeros(len(q), dtype=tc_n.dtype)
            acc[m] = acc[m] + np.log((n_tc + alpha) / (n_t[code] * share[ic[m]] + alpha))
        out[k] = acc
    return out.astype(np.float32)


def _category_overlap(features: SnapshotFeatures, users: list[str], urow: np.ndarray, icol: np.ndarray) -> np.ndarray:
    """Share of the item's categories that appear among the categories of the user's history items.

    Categories are bits of one uint64 per item and per user with history (cached per snapshot:
    :func:`_category_masks`), so a pair's count is the popcount of the two masks' intersection: per block
    only the block's users are looked up (a join with every user's (user, category) rows per block grew with
    the world). Catalogues with more than 64 categories fall back to that join."""
    n = len(icol)
    if "categories" not in features.view.catalog.columns:
        return np.full(n, np.nan, dtype=np.float32)
    masks = _category_masks(features)
    if masks is None:
        return _category_overlap_join(features, users, urow, icol)
    index, user_mask, item_mask, n_cat_arr = masks
    rows = rows_of(users, index, "user_id")
    block_mask = np.where(rows >= 0, user_mask[np.maximum(rows, 0)], np.uint64(0))
    out = np.bitwise_count(block_mask[urow] & item_mask[icol]).astype(np.float32)
    denom = n_cat_arr[icol]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, out / denom, np.nan).astype(np.float32)


def _category_tables(features: SnapshotFeatures) -> tuple[pl.DataFrame, pl.DataFrame, np.ndarray, int]:
    """(icol, c) of every catalogue item's categories, (user_id, c) of every user's history categories (codes
    ``c`` in sorted category order), categories per item and the number of categories; cached per snapshot."""
    key = "item_categories"
    if key not in features._cache:
        view = features.view
        ic = (
            view.catalog.select("item_id", pl.col("categories").alias("cat"))
            .explode("cat")
            .drop_nulls()
            .unique()
            .join(features.item_index, on="item_id", how="inner")
            .select("icol", "cat")
        )
        cats = ic.get_column("cat").unique().sort()
        cat_index = pl.DataFrame({"cat": cats, "c": np.arange(len(cats), dtype=np.int64)})
        ic = ic.join(cat_index, on="cat").select("icol", "c")
        uc = (
            view.history.select("user_id", "item_id")
            .unique()
            .join(features.item_index, on="item_id", how="inner")
            .join(ic, on="icol", how="inner")
            .select(pl.col("user_id").cast(pl.String), "c")
            .unique()
        )
        n_cats = ic.group_by("icol").len()
        n_cat_arr = np.zeros(len(features.item_ids), dtype=np.float32)
        n_cat_arr[n_cats.get_column("icol").to_numpy()] = n_cats.get_column("len").to_numpy()
        features._cache[key] = (ic, uc, n_cat_arr, len(cats))
    return features._cache[key]


def _category_masks(features: SnapshotFeatures) -> tuple[pl.DataFrame, np.ndarray, np.ndarray, np.ndarray] | None:
    """(user index (``interactions.id_index``), a uint64 category mask per user row, per catalogue item, categories per item), or
    None with more than 64 categories; cached per snapshot."""
    key = "category_masks"
    if key not in features._cache:
        ic, uc, n_cat_arr, n_cats = _category_tables(features)
        if n_cats > 64:
            features._cache[key] = None
        else:
            item_mask = np.zeros(len(features.item_ids), dtype=np.uint64)
            np.bitwise_or.at(item_mask, ic.get_column("icol").to_numpy(), np.left_shift(np.uint64(1), ic.get_column("c").to_numpy().astype(np.uint64)))
            index = id_index(uc.get_column("user_id").unique().sort().to_list(), "user_id")
            rows = rows_of(uc.get_column("user_id"), index, "user_id")
            user_mask = np.zeros(index.height, dtype=np.uint64)
            np.bitwise_or.at(user_mask, rows, np.left_shift(np.uint64(1), uc.get_column("c").to_numpy().astype(np.uint64)))
            features._cache[key] = (index, user_mask, item_mask, n_cat_arr)
    return features._cache[key]


def _category_overlap_join(features: SnapshotFeatures, users: list[str], urow: np.ndarray, icol: np.ndarray) -> np.ndarray:
    """:func:`_category_overlap` by joining the pairs with every (user, category) row (any number of categories)."""
    ic, uc, n_cat_arr, _ = _category_tables(features)
    p = pl.DataFrame({"user_id": pl.Series(users, dtype=pl.String).gather(urow), "icol": icol}).with_row_index("k")
    hits = (
        p.join(ic, on="icol", how="inner")
        .join(uc, on=["user_id", "c"], how="semi")
        .group_by("k")
        .len()
    )
    out = np.zeros(len(icol), dtype=np.float32)
    out[hits.get_column("k").to_numpy()] = hits.get_column("len").to_numpy()
    denom = n_cat_arr[icol]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, out / denom, np.nan).astype(np.float32)


def ranker_features(features: SnapshotFeatures, candidates: pl.DataFrame, encoder: str | None, *, text_encoders: Sequence[str] = ()) -> pl.DataFrame:
    """Feature frame (same rows and order as ``candidates``): user_id, item_id + ``feature_names(encoder)``.

    ``candidates`` needs user_id and item_id; ``source_*`` flags and ``rank_als``
    are taken from it when present (missing flags are False, missing ranks NaN).
    Items must be in the view's catalogue. ``text_encoders`` adds the text features of more
    encoders (serving computes the features of every ranker arm once, each arm reads its own).
    """
    for c in ("user_id", "item_id"):
        if c not in candidates.columns:
            raise FeatureError(f"ranker_features: candidates lack column {c!r}; got {candidates.columns}.")
    pairs = candidates.select(pl.col("user_id").cast(pl.String), pl.col("item_id").cast(pl.String)).join(
        features.item_index, on="item_id", how="left", maintain_order="left"
    )
    if pairs.get_column("icol").null_count():
        bad = pairs.filter(pl.col("icol").is_null()).get_column("item_id").head(3).to_list()
        raise FeatureError(
            f"ranker_features: {pairs.get_column('icol').null_count()} candidates name items outside the view's "
            f"catalogue (e.g. {bad}); generate candidates from the same SnapshotFeatures."
        )
    icol = pairs.get_column("icol").to_numpy()
    users = pairs.get_column("user_id").unique(maintain_order=True).to_list()
    uidx = pl.DataFrame({"user_id": pl.Series(users, dtype=pl.String), "urow": np.arange(len(users), dtype=np.int64)})
    urow = pairs.join(uidx, on="user_id", how="left", maintain_order="left").get_column("urow").to_numpy()

    ut = features.user_table(users)
    n_events = ut.get_column("n_events").to_numpy().astype(np.float32)[urow]
    user_seg = ut.get_column("user_segment").replace_strict(SEGMENT_ORDINAL, return_dtype=pl.Int8).to_numpy()[urow]

    als_u = features.als_user_rows(users)[urow]
    itf, known = features.als_items()
    has_als_user = als_u >= 0
    uf = features.als.user_factors if features.als is not None else np.zeros((0, itf.shape[1]), np.float32)
    als_score = pair_dot(uf, als_u, itf, icol, has_als_user & known[icol])

    def col_or(name: str) -> pl.Series | None:
        return candidates.get_column(name) if name in candidates.columns else None

    rank = col_or(rank_column("als"))
    als_rank = rank.cast(pl.Float32).fill_null(np.nan).to_numpy() if rank is not None else np.full(len(icol), np.nan, np.float32)

    item_seg = features.item_array("item_segment")  # per catalogue item (strings): compared once, then gathered per pair
    age = features.item_table.get_column("age_days").cast(pl.Float32).fill_null(np.nan).to_numpy()[icol]
    n_recent = features.item_array("n_recent").astype(np.float64)
    n_all = features.item_array("n_interactions").astype(np.float64)
    pos = popularity_place(features)[icol].astype(np.float64)
    cols: dict[str, np.ndarray] = {
        "als_score": als_score,
        "als_rank": als_rank.astype(np.float32),
        "pop_rank_log": np.log1p(pos).astype(np.float32),
        "pop_pct": (1.0 - pos / max(len(features.item_ids), 1)).astype(np.float32),
        "recent_share": (1000.0 * n_recent[icol] / max(n_recent.sum(), 1.0)).astype(np.float32),
        "all_share": (1000.0 * n_all[icol] / max(n_all.sum(), 1.0)).astype(np.float32),
        "pop_trend": (n_recent[icol] / (n_all[icol] + 1.0)).astype(np.float32),
        "item_age_days": age,
        "user_hist_len": n_events,
        "user_is_new": (n_events == 0).astype(np.float32),
        "item_is_new": (item_seg == "new").astype(np.float32)[icol],
        "user_segment": user_seg.astype(np.float32),
        "item_segment": _segment_codes(item_seg).astype(np.float32)[icol],
        "category_overlap": _category_overlap(features, users, urow, icol),
        "last_cooc": _last_cooc(features, users, urow, icol),
        "profile_lift": _profile_lift(features, users, urow, icol),
    }
    encoders = list(dict.fromkeys(([encoder] if encoder else []) + list(text_encoders)))
    flag_sources = list(BASE_SOURCES) + [src for enc in encoders for src in text_sources(enc)]
    for src in flag_sources:
        f = col_or(source_column(src))
        cols[source_column(src)] = f.cast(pl.Float32).fill_null(0.0).to_numpy() if f is not None else np.zeros(len(icol), np.float32)
    for enc in encoders:
        s = slug(enc)
        al = features.aligned(enc)
        er = features.encoder_user_rows(enc, users)[urow]
        uv = features.encoder(enc).user_vectors
        cols[f"text_cos_{s}"] = pair_dot(uv, er, al.vectors, icol, (er >= 0) & al.has_vector[icol])
        if al.pseudo is not None:
            cols[f"c2cf_score_{s}"] = pair_dot(uf, als_u, al.pseudo, icol, has_als_user & al.has_vector[icol])
        else:
            cols[f"c2cf_score_{s}"] = np.full(len(icol), np.nan, np.float32)
    names = list(dict.fromkeys(n for enc in (encoders or [None]) for n in feature_names(enc)))
    return pl.DataFrame(
        [pairs.get_column("user_id"), pairs.get_column("item_id")] + [pl.Series(n, cols[n], dtype=pl.Float32) for n in names]
    )


def _segment_codes(seg: np.ndarray) -> np.ndarray:
    codes = np.zeros(len(seg), dtype=np.int64)
    for s, v in SEGMENT_ORDINAL.items():
        codes[seg == s] = v
    return codes
