"""The one top-k routine: the k best columns of each row of a score block, best first.

Every "rank the catalogue for these users" in the project (ALS top-N, the candidate
sources, the scoring of arms) computes a (users x items) score block a few thousand
rows at a time (never the dense users x items matrix) and calls :func:`top_k_rows` on it.

Backend, chosen by the block's width only (so a rerun takes the same path and gives the same
bits): numpy ``argpartition`` + a stable sort below ``TORCH_MIN_COLS`` columns, ``torch.topk``
from there on (or on a GPU block). Measured on 2 cores, 16M-cell blocks, k=100:
50,000 columns numpy 1.03 s vs torch 0.105 s (9.8x); 15,000 columns 0.21 vs 0.24 s (0.9x);
5,000 columns 0.21 vs 0.35 s (0.6x): torch wins on wide catalogues only.
"""

from __future__ import annotations

import numpy as np

TORCH_MIN_COLS = 20_000
"""Blocks at least this wide use ``torch.topk`` (when torch is importable)."""


TIE_MARGIN = 16
"""Extra float32 candidates per row that :func:`dot_top_k` takes before it looks at the whole block."""


GATHER_ROWS = 1 << 12
"""Pairs per gather-and-dot step of :func:`gathered_dots`: two 4,096 x dim blocks stay in cache, where one gather
of every pair's rows page-faulted fresh hundreds of MB per call (``dot_top_k``'s 247,000 cells of dim 384 at 1M
events: 1.6 s for the first block of a process, 0.24 s once the pages were the allocator's)."""


GRID_DENSITY = 0.5
""":func:`gathered_dots` computes its pairs through their grid (every distinct ``a`` row x every distinct ``b`` row)
when at least this share of the grid's cells are pairs. The ``cold_only`` scope scores every held-out item for
every judged user (a grid minus the seen pairs, density ~1), where gathering two rows per pair was the cost: 10M
world, item_holdout, 10,575 items x 94 users a block, 1M pairs of dim 384: gathered 1.18 CPU s, the grid's einsum
~0.1 s. A served block's candidate pool is ~1 % of its grid, and is gathered pair by pair."""
GRID_CELLS = 1 << 22
"""Grid cells per einsum of :func:`gathered_dots`' grid path (16 MB of float32)."""


def _distinct_rows(rows: np.ndarray, n: int) -> np.ndarray:
    """The distinct values of ``rows`` (ints in [0, n)), sorted: a count, no sort."""
    return np.flatnonzero(np.bincount(rows, minlength=n))


def _places(distinct: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """Each entry of ``rows``' place among ``distinct`` (:func:`_distinct_rows` of them): a lookup."""
    place = np.zeros(n, np.int64)
    place[distinct] = np.arange(len(distinct))
    return place[rows]


def gathered_dots(a: np.ndarray, a_rows: np.ndarray, b: np.ndarray, b_rows: np.ndarray, dtype=None) -> np.ndarray:
    """``a[a_rows[k]] . b[b_rows[k]]`` for every ``k``, :data:`GATHER_ROWS` pairs at a time; ``dtype``: the
    accumulation and result type (None: the inputs'). Each dot is its own row of one ``einsum``, so the values do
    not depend on the chunk.

    Pairs that fill their grid (:data:`GRID_DENSITY`) are computed as ``einsum("uj,ij->ui")`` of the distinct rows,
    :data:`GRID_CELLS` cells at a time, and read from it: numpy reduces each cell over ``j`` with the same
    contiguous kernel as ``"ij,ij->i"``, so the values are the same bits (``test_topk.py`` checks it)."""
    kw = {} if dtype is None else {"dtype": dtype, "casting": "safe"}
    out = np.empty(len(a_rows), dtype=dtype or np.result_type(a, b))
    if len(a_rows) >= GATHER_ROWS:
        ua, ub = _distinct_rows(a_rows, len(a)), _distinct_rows(b_rows, len(b))
        if len(a_rows) >= GRID_DENSITY * len(ua) * len(ub):
            # the lookups only for the grid: a served pool (~1 % of its grid) is gathered without them
            ia, ib = _places(ua, a_rows, len(a)), _places(ub, b_rows, len(b))
            bb, per = b[ub], max(1, GRID_CELLS // len(ub))
            for start in range(0, len(ua), per):
                # the pairs of this tile's rows (all of them when one tile holds the grid)
                sel = np.flatnonzero((ia >= start) & (ia < start + per)) if len(ua) > per else slice(None)
                grid = np.einsum("uj,ij->ui", a[ua[start : start + per]], bb, **kw)
                out[sel] = grid[ia[sel] - start, ib[sel]]
            return out
    for s in range(0, len(a_rows), GATHER_ROWS):
        out[s : s + GATHER_ROWS] = np.einsum("ij,ij->i", a[a_rows[s : s + GATHER_ROWS]], b[b_rows[s : s + GATHER_ROWS]], **kw)
    return out


def dot_top_k(scores: np.ndarray, users: np.ndarray, items: np.ndarray, k: int, backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """:func:`top_k_rows` of a dot-product block ``scores = users @ items.T`` (float32; entries the caller set
    to -inf stay excluded), with bits that do not depend on the block: each row's top ``k`` holds the
    float32-rounded float64 dot products, ties broken by column.

    Why: OpenBLAS's float32 kernels (the Haswell ones numpy ships, on an AMD EPYC here) round a row's dot
    products differently depending on how many rows are multiplied with it and where the row sits, so users
    served in blocks of 7 got other last bits (other ties, other lists) than in one call. Computing the whole
    block in float64 costs about 2.4x the matmul (1,000 x 50,000 x 384: 0.58 -> 1.40 CPU s). Instead the
    float32 block only chooses the cells that can be in the top ``k``: a float32 dot product of ``d`` terms is
    within ``(d + 2) 2^-24 |u| |v|`` of the exact one, so every cell whose exact score reaches the exact k-th
    is within twice that bound of the float32 k-th score; those few cells per row are recomputed in float64.
    ``backend``: :func:`top_k_rows`' backend for the float32 pass.
    """
    n_rows, n_cols = scores.shape
    k = min(k, n_cols)
    cols = np.zeros((n_rows, max(k, 0)), np.int64)
    vals = np.full((n_rows, max(k, 0)), -np.inf, np.float32)
    if k <= 0 or n_rows == 0:
        return cols, vals
    # the float32 top k plus a margin: a row's near-ties past its k-th score are usually among them
    wide = min(n_cols, k + TIE_MARGIN)
    cand, approx = top_k_rows(scores, wide, backend)
    kth = approx[:, k - 1].astype(np.float64)
    # norms in float32 are within a few ulps: the bound's factor 2 covers them
    item_norm = float(np.sqrt(np.einsum("ij,ij->i", items, items).max(initial=0.0)))
    bound = 2.0 * (users.shape[1] + 2) * 2.0**-24 * np.sqrt(np.einsum("ij,ij->i", users, users).astype(np.float64)) * item_norm
    # a row with fewer than k finite scores keeps them all (never its -inf entries)
    threshold = np.where(np.isfinite(kth), kth - 2.0 * bound, np.finfo(np.float32).min).astype(np.float32)
    inside = approx >= threshold[:, None]
    r, c = np.nonzero(inside)
    c = cand[r, c]
    # rows whose whole margin is inside the window (many near-ties) take every such cell of the block
    spill = np.flatnonzero(inside[:, -1]) if wide < n_cols else np.zeros(0, np.int64)
    if len(spill):
        sr, sc = np.nonzero(scores[spill] >= threshold[spill, None])
        keep = ~np.isin(r, spill)
        r, c = np.concatenate([r[keep], spill[sr]]), np.concatenate([c[keep], sc])
    exact = gathered_dots(users, r, items, c, np.float64).astype(np.float32)
    order = np.lexsort((c, -exact, r))  # by row, best first, ties by column
    r, c, exact = r[order], c[order], exact[order]
    starts = np.searchsorted(r, np.arange(n_rows))
    place = np.arange(len(r)) - starts[r]
    keep = place < k
    cols[r[keep], place[keep]] = c[keep]
    vals[r[keep], place[keep]] = exact[keep]
    return cols, vals


def _torch():
    try:
        import torch
    except ImportError:  # torch is a pinned dependency; keep numpy working without it
        return None
    return torch


def top_k_rows(scores, k: int, backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """(columns int64, values float32) of the ``k`` largest entries of each row, best first.

    ``scores``: a float32 numpy block, or a torch tensor (e.g. on a GPU; always torch.topk).
    ``backend``: ``auto`` (by width, see the module docstring), ``numpy`` or ``torch`` (forced).
    ``k`` is clipped to the number of columns. -inf entries (excluded items) sort last; the
    caller drops them. Ties inside the top k keep the selection's order (stable sort).
    """
    torch = _torch()
    if torch is not None and isinstance(scores, torch.Tensor):
        k = min(k, scores.shape[1])
        with torch.no_grad():
            vals, idx = torch.topk(scores, k, dim=1, largest=True, sorted=True)
        return idx.cpu().numpy().astype(np.int64, copy=False), vals.float().cpu().numpy()
    n_cols = scores.shape[1]
    k = min(k, n_cols)
    if k <= 0 or scores.shape[0] == 0:
        return np.zeros((scores.shape[0], 0), np.int64), np.zeros((scores.shape[0], 0), np.float32)
    use_torch = backend == "torch" or (backend == "auto" and n_cols >= TORCH_MIN_COLS)
    if torch is not None and use_torch:
        with torch.no_grad():
            vals, idx = torch.topk(torch.from_numpy(np.ascontiguousarray(scores)), k, dim=1, largest=True, sorted=True)
        return idx.numpy().astype(np.int64, copy=False), vals.numpy()
    if k < n_cols:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(n_cols), scores.shape).copy()
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1).astype(np.int64, copy=False), np.take_along_axis(vals, order, axis=1)
