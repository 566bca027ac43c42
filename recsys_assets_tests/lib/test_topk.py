"""The one top-k routine: numpy and torch backends agree, -inf (excluded) entries sort last."""

from __future__ import annotations

import numpy as np
import pytest

from recsys_assets.lib import topk
from recsys_assets.lib.features.als import ALSError, resolve_use_gpu
from recsys_assets.lib.topk import block_scores, top_k_rows


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


def test_block_scores_of_a_row_do_not_depend_on_the_rows_beside_it():
    # float32 sgemm (OpenBLAS's Haswell kernels) rounded a row by the block's row count: blocks of 7
    # users served other ties than one call. Every blocking must give the one-call bits.
    rng = np.random.default_rng(3)
    users = rng.standard_normal((301, 64)).astype(np.float32)
    items = rng.standard_normal((700, 64)).astype(np.float32)
    whole = block_scores(users, items)
    assert whole.dtype == np.float32 and whole.shape == (301, 700)
    np.testing.assert_allclose(whole, users @ items.T, rtol=1e-5, atol=1e-5)
    for size in (1, 7, 16, 100):
        blocked = np.concatenate([block_scores(users[s : s + size], items) for s in range(0, 301, size)])
        assert np.array_equal(blocked, whole), size
