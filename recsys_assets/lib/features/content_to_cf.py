"""Content -> CF bridge: predict an item's ALS factors from its text embedding.

A ridge regression from the (L2-normalized) text vector to the ALS item factor,
fit on warm items only (enough interactions for a trustworthy factor). New and
cold items then get pseudo factors, so ALS user factors can score them.

Fit quality is reported on a held-out share of the warm items: R^2 and the mean
cosine between predicted and true factors, next to the same numbers for a
mean-vector baseline (every item predicted as the mean training factor). A
bridge that does not beat that baseline carries no text signal. After the
holdout report the final model is refit on all warm items.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import polars as pl
from upath import UPath

from recsys_assets.lib.artifacts import read_artifact, write_artifact
from recsys_assets.lib.confighash import config_hash
from recsys_assets.lib.errors import RecsysError
from recsys_assets.lib.features.als import ALSModel

WEIGHTS_FILE = "content_to_cf.npz"
META_FILE = "content_to_cf.json"
MIN_WARM_ITEMS = 10


class ContentToCFError(RecsysError):
    """The content->CF bridge cannot be fit, loaded or applied as asked."""


@dataclass(frozen=True)
class ContentToCFConfig:
    """How the text -> ALS-factor regression is fit and checked."""

    min_item_interactions: int = 5
    """An item is warm (used for fitting) when it has at least this many interactions."""
    ridge_alpha: float = 1.0
    """L2 penalty of the ridge regression (sklearn ``Ridge(alpha=...)``)."""
    holdout_fraction: float = 0.2
    """Share of warm items held out to report R^2 / cosine before the final refit on all."""
    seed: int = 42
    """Seed of the holdout split."""

    def __post_init__(self) -> None:
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ContentToCFError(f"ContentToCFConfig.holdout_fraction must be in (0, 1), got {self.holdout_fraction}.")
        if self.ridge_alpha < 0:
            raise ContentToCFError(f"ContentToCFConfig.ridge_alpha must be >= 0, got {self.ridge_alpha}.")

    def config_hash(self) -> str:
        return config_hash(self)


@dataclass
class ContentToCFModel:
    """Linear map ``factor = vector @ coef.T + intercept`` with its holdout report."""

    coef: np.ndarray
    """float32 (n_factors, dim)."""
    intercept: np.ndarray
    """float32 (n_factors,)."""
    config_hash: str
    """Hash of (ContentToCFConfig, the ALS model's config hash)."""
    metrics: dict[str, float] = field(default_factory=dict)
    """Holdout report: r2, mean_cosine, baseline_r2, baseline_mean_cosine, n_train, n_holdout, n_warm, ..."""

    def __post_init__(self) -> None:
        self.coef = np.ascontiguousarray(self.coef, dtype=np.float32)
        self.intercept = np.ascontiguousarray(self.intercept, dtype=np.float32)

    @property
    def dim(self) -> int:
        return int(self.coef.shape[1])

    def predict(self, vectors: np.ndarray) -> np.ndarray:
        """Pseudo ALS factors (float32, n x n_factors) for text vectors (n x dim)."""
        v = np.asarray(vectors, dtype=np.float32)
        if v.ndim != 2 or v.shape[1] != self.dim:
            raise ContentToCFError(
                f"ContentToCFModel.predict: expected vectors of shape (n, {self.dim}), got {v.shape}; "
                "use the same encoder the bridge was fit with."
            )
        return v @ self.coef.T + self.intercept

    def save(self, directory: UPath) -> None:
        """Write ``content_to_cf.npz`` then ``content_to_cf.json`` (atomically) under ``directory``."""
        buf = io.BytesIO()
        np.savez(buf, coef=self.coef, intercept=self.intercept)
        meta = {"format": "recsys_assets.content_to_cf/1", "config_hash": self.config_hash, "metrics": self.metrics}
        write_artifact(directory, WEIGHTS_FILE, buf.getvalue(), META_FILE, meta)

    @classmethod
    def load(cls, directory: UPath) -> "ContentToCFModel":
        data, meta = read_artifact(directory, WEIGHTS_FILE, META_FILE, ContentToCFError, "content->CF model", "refit the bridge (content_to_cf asset)")
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return cls(coef=z["coef"], intercept=z["intercept"], config_hash=meta["config_hash"], metrics=meta["metrics"])


def _r2(true: np.ndarray, pred: np.ndarray) -> float:
    """Pooled R^2 over all factor dimensions (sum of squares around the holdout's own mean)."""
    ss_res = float(((true - pred) ** 2).sum())
    ss_tot = float(((true - true.mean(axis=0)) ** 2).sum())
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")


def _mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    denom = np.maximum(na * nb, 1e-12)
    return float(((a * b).sum(axis=1) / denom).mean())


def _ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.linear_model import Ridge

    reg = Ridge(alpha=alpha, fit_intercept=True)
    reg.fit(x.astype(np.float64), y.astype(np.float64))
    return np.atleast_2d(reg.coef_), np.atleast_1d(reg.intercept_)


def _counts_map(item_counts: Mapping[str, int] | pl.DataFrame) -> dict[str, int]:
    if isinstance(item_counts, pl.DataFrame):
        cols = item_counts.columns
        count_col = next((c for c in cols if c != "item_id"), None)
        if "item_id" not in cols or count_col is None:
            raise ContentToCFError(
                f"item_counts frame needs columns item_id and one count column; got {cols}."
            )
        return dict(zip(item_counts.get_column("item_id").to_list(), item_counts.get_column(count_col).to_list()))
    return dict(item_counts)


def fit_content_to_cf(
    item_ids: Sequence[str],
    item_vectors: np.ndarray,
    als_model: ALSModel,
    item_counts: Mapping[str, int] | pl.DataFrame,
    cfg: ContentToCFConfig | None = None,
) -> ContentToCFModel:
    """Fit the text -> ALS factor ridge on warm items; report a holdout against the mean baseline.

    ``item_ids`` / ``item_vectors``: the encoder's items and vectors (row-aligned).
    ``item_counts``: interactions per item before the snapshot, as a mapping or a
    frame (``item_id`` + one count column). Warm = has a vector, has ALS factors
    and at least ``min_item_interactions`` interactions.
    """
    cfg = cfg or ContentToCFConfig()
    vectors = np.asarray(item_vectors, dtype=np.float32)
    item_ids = list(item_ids)
    if vectors.ndim != 2 or vectors.shape[0] != len(item_ids):
        raise ContentToCFError(
            f"fit_content_to_cf: {len(item_ids)} item ids but vectors of shape {vectors.shape}."
        )
    counts = _counts_map(item_counts)
    als_index = {it: i for i, it in enumerate(als_model.item_ids)}
    rows, frows = [], []
    for r, it in enumerate(item_ids):
        j = als_index.get(it)
        if j is not None and counts.get(it, 0) >= cfg.min_item_interactions:
            rows.append(r)
            frows.append(j)
    n_warm = len(rows)
    if n_warm < MIN_WARM_ITEMS:
        raise ContentToCFError(
            f"fit_content_to_cf: only {n_warm} warm items (vector + ALS factors + >= "
            f"{cfg.min_item_interactions} interactions); need >= {MIN_WARM_ITEMS}. "
            "Lower ContentToCFConfig.min_item_interactions or supply more history."
        )
    x = vectors[rows]
    y = als_model.item_factors[frows]

    rng = np.random.default_rng(cfg.seed)
    perm = rng.permutation(n_warm)
    n_hold = max(1, int(round(cfg.holdout_fraction * n_warm)))
    hold, train = perm[:n_hold], perm[n_hold:]
    coef, intercept = _ridge(x[train], y[train], cfg.ridge_alpha)
    pred = x[hold] @ coef.T + intercept
    train_mean = y[train].mean(axis=0)
    base = np.broadcast_to(train_mean, y[hold].shape)
    metrics = {
        "r2": _r2(y[hold], pred),
        "mean_cosine": _mean_cosine(pred, y[hold]),
        "baseline_r2": _r2(y[hold], base),
        "baseline_mean_cosine": _mean_cosine(base, y[hold]),
        "n_warm": n_warm,
        "n_train": int(len(train)),
        "n_holdout": int(n_hold),
        "n_items_without_factors_or_cold": len(item_ids) - n_warm,
    }
    coef, intercept = _ridge(x, y, cfg.ridge_alpha)  # final fit on every warm item
    return ContentToCFModel(
        coef=coef,
        intercept=intercept,
        config_hash=config_hash(cfg, als_model.config_hash),
        metrics=metrics,
    )
