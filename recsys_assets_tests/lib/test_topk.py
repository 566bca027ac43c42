"""The one top-k routine: numpy and torch backends agree, -inf (excluded) entries sort last."""

from __future__ import annotations

import numpy as np
import pytest

from recsys_assets.lib import topk
from recsys_assets.lib.features.als import ALSError, resolve_use_gpu
from recsys_assets.lib.topk import dot_top_k, top_k_rows


@pytest.mark.parametrize("n_cols,k", [(50, 5), (50, 50), (50, 80), (3000, 100)])
def test_backends_agree_with_a_full_sort(n_cols, k):
    rng = np.random.default_rng(n_cols + k)
    scores = rng.permutation(40 * n_cols).astype(np.float32)[: 40 * n_cols].reshape(40, n_cols)  # distinct values
    scores[:, ::7] = -np.inf  # excluded items
    want = np.argsort(-scores, axis=1, kind="stable")[:, : min(k, n_cols)]
    for backend in ("numpy", "torch"):
        cols, vals = top_k_rows(scores, k, backend)
        finite = np.isfinite(vals)
        assert cols.shape == want.shape and cols.dtype == np.int64
        assert np.array_equal(cols[finite], want[finite]), backend
        assert np.array_equal(vals, np.take_along_axis(scores, cols, axis=1))
        assert all((row[:-1] >= row[1:]).all() for row in vals)  # best first, -inf last


def test_auto_switches_to_torch_on_wide_blocks(monkeypatch):
    calls = []
    real = topk._torch

    def spy():
        calls.append(1)
        return real()

    monkeypatch.setattr(topk, "_torch", spy)
    monkeypatch.setattr(topk, "TORCH_MIN_COLS", 100)
    scores = np.random.default_rng(0).standard_normal((3, 120)).astype(np.float32)
    a, _ = top_k_rows(scores, 10)  # wide: torch
    b, _ = top_k_rows(scores, 10, "numpy")
    assert np.array_equal(a, b) and calls


def test_als_device_setting():
    assert resolve_use_gpu("cpu") is False
    assert resolve_use_gpu("cuda") is True
    assert resolve_use_gpu("auto") in (True, False)
    with pytest.raises(ALSError, match="auto, cpu or cuda"):
        resolve_use_gpu("tpu")


@pytest.mark.parametrize("dim,n_items,k", [(64, 700, 10), (384, 3000, 50), (16, 25000, 20)])
def test_dot_top_k_gives_the_same_bits_whatever_the_block(dim, n_items, k):
    # float32 sgemm (OpenBLAS's Haswell kernels) rounded a row by the block's row count: blocks of 7
    # users served other ties than one call. Every blocking must give the one-call bits, which are the
    # exact (float64) top k, ties by column; 25,000 columns take the torch backend's float32 pass.
    rng = np.random.default_rng(dim)
    users = rng.standard_normal((301, dim)).astype(np.float32)
    items = rng.standard_normal((n_items, dim)).astype(np.float32)
    items[1::7] = items[::7][: len(items[1::7])]  # duplicated items: exact ties to break by column
    seen = rng.random((301, n_items)) < 0.05

    def top(rows):
        s = users[rows] @ items.T
        s[seen[rows]] = -np.inf
        return dot_top_k(s, users[rows], items, k)

    cols, vals = top(np.arange(301))
    exact = users.astype(np.float64) @ items.T.astype(np.float64)
    exact = np.where(seen, -np.inf, exact.astype(np.float32))
    for r in (0, 150, 300):
        order = np.lexsort((np.arange(n_items), -exact[r]))[:k]
        assert np.array_equal(cols[r], order) and np.array_equal(vals[r], exact[r, order]), r
    for size in (1, 7, 16, 100):
        parts = [top(np.arange(s, min(s + size, 301))) for s in range(0, 301, size)]
        assert np.array_equal(np.concatenate([p[0] for p in parts]), cols), size
        assert np.array_equal(np.concatenate([p[1] for p in parts]), vals), size


def test_dot_top_k_keeps_excluded_entries_out_and_pads_short_rows():
    users = np.ones((2, 4), np.float32)
    items = np.arange(12, dtype=np.float32).reshape(3, 4)
    scores = users @ items.T
    scores[0, :] = -np.inf
    scores[1, 2] = -np.inf
    cols, vals = dot_top_k(scores, users, items, 5)
    assert cols.shape == (2, 3)
    assert np.isneginf(vals[0]).all()
    assert cols[1, :2].tolist() == [1, 0] and vals[1, :2].tolist() == [22.0, 6.0] and np.isneginf(vals[1, 2])


def test_dot_top_k_with_more_ties_than_its_margin_reads_the_whole_row():
    # 200 identical (zero) items tie at the k-th score: more than TIE_MARGIN past it, so the row is re-read
    rng = np.random.default_rng(5)
    users = rng.standard_normal((40, 8)).astype(np.float32)
    items = np.vstack([rng.standard_normal((60, 8)), np.zeros((200, 8))]).astype(np.float32)
    k = 80
    cols, vals = dot_top_k(users @ items.T, users, items, k)
    exact = (users.astype(np.float64) @ items.T.astype(np.float64)).astype(np.float32)
    for r in range(40):
        order = np.lexsort((np.arange(len(items)), -exact[r]))[:k]
        assert np.array_equal(cols[r], order) and np.array_equal(vals[r], exact[r, order]), r
    one_by_one = [dot_top_k(users[r : r + 1] @ items.T, users[r : r + 1], items, k) for r in range(40)]
    assert np.array_equal(np.concatenate([c for c, _ in one_by_one]), cols)


@pytest.mark.parametrize("dtype", [None, np.float64])
def test_gathered_dots_are_one_einsum_per_pair_whatever_the_chunk(monkeypatch, dtype):
    """gathered_dots equals gathering every pair's rows at once (float32, or accumulated in float64), with chunks of
    3 pairs, the default or one chunk: each pair's dot is its own row."""
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(40, 384)).astype(np.float32), rng.normal(size=(70, 384)).astype(np.float32)
    ar, br = rng.integers(0, 40, 1000), rng.integers(0, 70, 1000)
    kw = {} if dtype is None else {"dtype": dtype, "casting": "safe"}
    once = np.einsum("ij,ij->i", a[ar], b[br], **kw)
    for rows in (3, topk.GATHER_ROWS, 10_000):
        monkeypatch.setattr(topk, "GATHER_ROWS", rows)
        got = topk.gathered_dots(a, ar, b, br, dtype)
        assert got.dtype == once.dtype and np.array_equal(got, once)
    assert len(topk.gathered_dots(a, ar[:0], b, br[:0], dtype)) == 0


@pytest.mark.parametrize("dtype", [None, np.float64])
@pytest.mark.parametrize("dim", [384, 64, 7])
def test_gathered_dots_through_the_grid_are_the_same_bits(monkeypatch, dtype, dim):
    """Pairs that fill their users x items grid (the cold scope: every judged user x every held-out item, minus the
    seen pairs), in any order and in tiles of any size, get the bits of one einsum row per pair, and do go through
    the grid's einsum."""
    rng = np.random.default_rng(dim)
    a = (rng.normal(size=(3000, dim)) * rng.random((3000, 1)) * 10).astype(np.float32)
    b = rng.normal(size=(5000, dim)).astype(np.float32)
    users, items = rng.choice(3000, 60, replace=False), rng.choice(5000, 700, replace=False)
    ar, br = np.repeat(users, len(items)), np.tile(items, len(users))
    keep = rng.random(len(ar)) > 0.02
    order = rng.permutation(int(keep.sum()))
    ar, br = ar[keep][order], br[keep][order]
    kw = {} if dtype is None else {"dtype": dtype, "casting": "safe"}
    once = np.einsum("ij,ij->i", a[ar], b[br], **kw)
    calls = []
    einsum = np.einsum
    monkeypatch.setattr(np, "einsum", lambda spec, *args, **kws: calls.append(spec) or einsum(spec, *args, **kws))
    for cells in (topk.GRID_CELLS, 5000, 1):
        monkeypatch.setattr(topk, "GRID_CELLS", cells)
        calls.clear()
        got = topk.gathered_dots(a, ar, b, br, dtype)
        assert got.dtype == once.dtype and np.array_equal(got, once), cells
        assert set(calls) == {"uj,ij->ui"}, calls[:3]
    # a served pool (a few pairs of a wide grid) is gathered pair by pair
    calls.clear()
    sparse = rng.choice(len(ar), 5000, replace=False)
    assert np.array_equal(topk.gathered_dots(a, ar[sparse], b, br[sparse], dtype), once[sparse])
    assert set(calls) == {"ij,ij->i"}
