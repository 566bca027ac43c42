"""Implicit-feedback ALS (collaborative factors): trainer, fold-in and scorer.

Thin layer over ``implicit.als.AlternatingLeastSquares`` (implicit 0.7: ``fit``
takes a users x items CSR whose values are confidences). The CSR values are the
summed interaction strengths of :mod:`recsys_assets.lib.interactions`;
implicit multiplies them by ``alpha`` (confidence ``c = alpha * strength``,
preference 1 where ``c > 0``), exactly as a raw ``implicit`` fit would.

- :func:`fit_als` trains; users with too few events are folded in afterwards.
- :func:`fold_in` computes factors for users from their history against fixed
  item factors (one exact least-squares solve per user, no refit):
  ``u = (Y^T C_u Y + reg I)^-1 Y^T C_u p_u``.
- :class:`ALSScorer` scores pairs and ranks the full catalogue. Users or items
  the model does not know are never scored as zeros: ``score`` returns NaN plus a
  ``known`` mask, ``top_n`` raises :class:`UnknownUserError` unless told to skip
  them (and then the skipped users are logged).
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
from dataclasses import dataclass, field
from typing import Iterable, Literal, Mapping, Sequence

import numpy as np
import polars as pl
import scipy.sparse as sp
from upath import UPath

from recsys_assets.lib.artifacts import read_artifact, write_artifact
from recsys_assets.lib.confighash import config_hash
from recsys_assets.lib.errors import RecsysError
from recsys_assets.lib.interactions import InteractionConfig, build_matrix, interaction_strength
from recsys_assets.lib.topk import dot_top_k

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

log = logging.getLogger(__name__)

FACTORS_FILE = "als_factors.npz"
META_FILE = "als_model.json"


class ALSError(RecsysError):
    """ALS cannot be fit, loaded or used as asked."""


class UnknownUserError(ALSError):
    """Users were asked for that the model has no factors for (fold them in first)."""


@dataclass(frozen=True)
class ALSConfig:
    """Hyper-parameters of the implicit ALS trainer."""

    factors: int = 64
    """Number of latent factors."""
    regularization: float = 0.05
    """L2 regularization of user and item factors (implicit's ``regularization``)."""
    alpha: float = 1.0
    """Confidence scale: confidence = alpha * summed interaction strength (implicit's ``alpha``)."""
    iterations: int = 15
    """ALS sweeps (each solves users, then items)."""
    seed: int = 42
    """Random state of the factor initialization (implicit's ``random_state``)."""
    use_gpu: bool = False
    """Fit with implicit's CUDA solver (needs an implicit build with CUDA); factors come back as numpy."""
    min_user_events_for_fit: int = 1
    """Users with fewer (positive-strength) events than this are folded in after the fit, not fitted."""
    num_threads: int = 0
    """Threads of implicit's solver; 0 lets implicit use every core."""

    def __post_init__(self) -> None:
        if self.factors < 1 or self.iterations < 1 or self.min_user_events_for_fit < 1:
            raise ALSError(
                f"ALSConfig: factors, iterations and min_user_events_for_fit must be >= 1 "
                f"(got {self.factors}, {self.iterations}, {self.min_user_events_for_fit})."
            )
        if self.regularization < 0 or self.alpha <= 0:
            raise ALSError(
                f"ALSConfig: regularization must be >= 0 and alpha > 0 (got {self.regularization}, {self.alpha})."
            )

    def config_hash(self) -> str:
        return config_hash(self)


@dataclass
class ALSModel:
    """Fitted factors with their id vocabularies and the configs that produced them."""

    user_ids: list[str]
    """Row ids of ``user_factors``."""
    item_ids: list[str]
    """Row ids of ``item_factors``: the items seen in the fit (others are unknown)."""
    user_factors: np.ndarray
    """float32 (n_users, factors)."""
    item_factors: np.ndarray
    """float32 (n_items, factors)."""
    config_hash: str
    """Hash of (ALSConfig, InteractionConfig)."""
    als_config: ALSConfig = field(default_factory=ALSConfig)
    """Trainer config (fold-in reuses its alpha and regularization)."""
    interaction_config: InteractionConfig = field(default_factory=InteractionConfig)
    """How events became confidences (fold-in must use the same)."""
    user_folded: np.ndarray | None = None
    """bool (n_users,): True where the user's factors were folded in rather than fitted."""

    def __post_init__(self) -> None:
        self.user_ids = list(self.user_ids)
        self.item_ids = list(self.item_ids)
        self.user_factors = np.ascontiguousarray(self.user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(self.item_factors, dtype=np.float32)
        if self.user_folded is None:
            self.user_folded = np.zeros(len(self.user_ids), dtype=bool)
        if self.user_factors.shape[0] != len(self.user_ids) or self.item_factors.shape[0] != len(self.item_ids):
            raise ALSError(
                f"ALSModel: {len(self.user_ids)} user ids for {self.user_factors.shape[0]} user rows, "
                f"{len(self.item_ids)} item ids for {self.item_factors.shape[0]} item rows."
            )

    @property
    def n_factors(self) -> int:
        return int(self.item_factors.shape[1])

    def with_users(self, user_ids: Sequence[str], factors: np.ndarray, folded: bool = True) -> "ALSModel":
        """A copy where ``user_ids`` get ``factors`` (replacing existing rows, appending new ones)."""
        factors = np.asarray(factors, dtype=np.float32)
        index = {u: i for i, u in enumerate(self.user_ids)}
        uf = self.user_factors.copy()
        fl = self.user_folded.copy()
        new_ids, new_rows = [], []
        for j, u in enumerate(user_ids):
            i = index.get(u)
            if i is None:
                new_ids.append(u)
                new_rows.append(j)
            else:
                uf[i] = factors[j]
                fl[i] = folded
        if new_ids:
            uf = np.vstack([uf, factors[new_rows]])
            fl = np.concatenate([fl, np.full(len(new_ids), folded)])
        return dataclasses.replace(
            self, user_ids=self.user_ids + new_ids, user_factors=uf, user_folded=fl
        )

    # --- persistence ---------------------------------------------------------
    def save(self, directory: UPath) -> None:
        """Write ``als_factors.npz`` then ``als_model.json`` (each atomically) under ``directory``."""
        buf = io.BytesIO()
        np.savez(
            buf,
            user_ids=np.asarray(self.user_ids, dtype=str),
            item_ids=np.asarray(self.item_ids, dtype=str),
            user_factors=self.user_factors,
            item_factors=self.item_factors,
            user_folded=self.user_folded,
        )
        meta = {
            "format": "recsys_assets.als/1",
            "config_hash": self.config_hash,
            "als_config": dataclasses.asdict(self.als_config),
            "interaction_config": dataclasses.asdict(self.interaction_config),
            "n_users": len(self.user_ids),
            "n_items": len(self.item_ids),
            "n_folded": int(self.user_folded.sum()),
        }
        write_artifact(directory, FACTORS_FILE, buf.getvalue(), META_FILE, meta)

    @classmethod
    def load(cls, directory: UPath) -> "ALSModel":
        """Read a model written by :meth:`save`; fails if the two files do not belong together."""
        data, meta = read_artifact(directory, FACTORS_FILE, META_FILE, ALSError, "ALS model", "refit the model (als_model asset)")
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        ic = dict(meta["interaction_config"])
        ic["positive_event_types"] = tuple(ic["positive_event_types"])
        return cls(
            user_ids=arrays["user_ids"].tolist(),
            item_ids=arrays["item_ids"].tolist(),
            user_factors=arrays["user_factors"],
            item_factors=arrays["item_factors"],
            config_hash=meta["config_hash"],
            als_config=ALSConfig(**meta["als_config"]),
            interaction_config=InteractionConfig(**ic),
            user_folded=arrays["user_folded"],
        )


# --- training ------------------------------------------------------------------


def _single_blas_thread():
    """implicit parallelizes over users itself; BLAS threads inside it oversubscribe the cores.

    The env var set in ``recsys_assets/__init__`` only helps when it precedes numpy's
    import, so the limit is also applied at run time here.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, "blas")


def gpu_available() -> bool:
    """Whether implicit can fit on a GPU here: its CUDA extension loaded (needs ``rmm-cu13``) and sees a device."""
    try:
        import implicit.gpu
    except ImportError:
        return False
    return bool(implicit.gpu.HAS_CUDA)


def resolve_use_gpu(setting: str) -> bool:
    """``auto`` -> :func:`gpu_available`; ``cpu`` -> False; ``cuda`` -> True (``fit_matrix`` then fails loudly without one)."""
    if setting not in ("auto", "cpu", "cuda"):
        raise ALSError(f"ALS device {setting!r}: choose auto, cpu or cuda.")
    return gpu_available() if setting == "auto" else setting == "cuda"


def _implicit_model(cfg: ALSConfig, use_gpu: bool = False):
    from implicit.als import AlternatingLeastSquares

    return AlternatingLeastSquares(
        factors=cfg.factors,
        regularization=cfg.regularization,
        alpha=cfg.alpha,
        iterations=cfg.iterations,
        random_state=cfg.seed,
        use_gpu=use_gpu,
        num_threads=cfg.num_threads,
        calculate_training_loss=False,
    )


def fit_matrix(user_items: sp.csr_matrix, cfg: ALSConfig) -> tuple[np.ndarray, np.ndarray]:
    """Raw fit on a users x items confidence CSR; returns float32 (user_factors, item_factors)."""
    if cfg.use_gpu:
        import implicit.gpu

        if not implicit.gpu.HAS_CUDA:
            raise ALSError(
                "ALSConfig.use_gpu=True but this implicit build has no CUDA support; "
                "set use_gpu=False or install implicit with CUDA."
            )
    with _single_blas_thread():
        model = _implicit_model(cfg, use_gpu=cfg.use_gpu)
        model.fit(user_items, show_progress=False)
    if cfg.use_gpu:
        model = model.to_cpu()
    return (
        np.ascontiguousarray(model.user_factors, dtype=np.float32),
        np.ascontiguousarray(model.item_factors, dtype=np.float32),
    )


def fit_als(events: pl.DataFrame, als_cfg: ALSConfig, inter_cfg: InteractionConfig) -> ALSModel:
    """Fit ALS on ``events`` (normalized EVENT_SCHEMA rows, already cut at the snapshot).

    Users with at least ``min_user_events_for_fit`` positive-strength events are
    fitted; the others are folded in against the fitted item factors. The item
    vocabulary is the items of the fitted users' events; items only the
    folded-in users touched stay unknown to the model (logged). Users whose every
    event has strength 0 get no factors (logged).
    """
    strength = interaction_strength(events, inter_cfg)
    ev = events.select("user_id", "item_id", "event_type", "value").with_columns(strength)
    ev = ev.filter(pl.col("strength") > 0)
    if ev.height == 0:
        raise ALSError(
            f"fit_als: none of the {events.height} events has a positive interaction strength; "
            "check the events partition and InteractionConfig.event_weights."
        )
    n_dropped_users = events.get_column("user_id").n_unique() - ev.get_column("user_id").n_unique()
    if n_dropped_users:
        log.warning("fit_als: %d users have only zero-strength events and get no factors", n_dropped_users)

    light = pl.DataFrame(schema={"user_id": pl.String})
    fit_ev = ev
    if als_cfg.min_user_events_for_fit > 1:
        counts = ev.group_by("user_id").agg(pl.len().alias("n"))
        light = counts.filter(pl.col("n") < als_cfg.min_user_events_for_fit).select("user_id")
        if light.height:
            fit_ev = ev.join(light, on="user_id", how="anti")
    if fit_ev.height == 0:
        raise ALSError(
            f"fit_als: no user has >= {als_cfg.min_user_events_for_fit} events "
            "(ALSConfig.min_user_events_for_fit); lower it or supply more history."
        )

    matrix, user_ids, item_ids = build_matrix(fit_ev, inter_cfg)
    user_factors, item_factors = fit_matrix(matrix, als_cfg)
    model = ALSModel(
        user_ids=user_ids,
        item_ids=item_ids,
        user_factors=user_factors,
        item_factors=item_factors,
        config_hash=config_hash(als_cfg, inter_cfg),
        als_config=als_cfg,
        interaction_config=inter_cfg,
    )
    if light.height:
        light_ev = events.join(light, on="user_id", how="semi")
        f_users, f_factors = fold_in(model, light_ev)
        model = model.with_users(f_users, f_factors, folded=True)
        log.info("fit_als: fitted %d users, folded in %d", len(user_ids), len(f_users))
    return model


def fold_in(model: ALSModel, events_of_users: pl.DataFrame) -> tuple[list[str], np.ndarray]:
    """Factors for the users of ``events_of_users`` from their history, item factors fixed.

    Solves implicit's own least-squares step for each user (identical to one ALS
    user sweep), with the model's InteractionConfig, alpha and regularization.
    Events on items the model does not know are ignored (count logged); users
    left with no known item are NOT returned (count logged): check membership of
    the returned ids. Returns (user_ids, float32 factors) in sorted user order.
    """
    if events_of_users.height == 0:
        return [], np.zeros((0, model.n_factors), dtype=np.float32)
    matrix, user_ids, _ = build_matrix(
        events_of_users, model.interaction_config, item_ids=model.item_ids, on_unknown="drop"
    )
    has_history = np.diff(matrix.indptr) > 0
    if not has_history.all():
        log.warning(
            "fold_in: %d of %d users have no event on an item known to the model and get no factors",
            int((~has_history).sum()),
            len(user_ids),
        )
        matrix = matrix[has_history]
        user_ids = [u for u, keep in zip(user_ids, has_history) if keep]
    if not user_ids:
        return [], np.zeros((0, model.n_factors), dtype=np.float32)
    with _single_blas_thread():
        imp = _implicit_model(model.als_config, use_gpu=False)
        imp.item_factors = model.item_factors
        factors = imp.recalculate_user(np.arange(len(user_ids)), matrix)
    return user_ids, np.ascontiguousarray(factors, dtype=np.float32)


# --- scoring -------------------------------------------------------------------


def _index_of(ids: Sequence[str], vocab: pl.DataFrame) -> np.ndarray:
    """Row index in the vocabulary for each id (-1 where unknown), order kept."""
    q = pl.DataFrame({"id": pl.Series("id", list(ids), dtype=pl.String)})
    out = q.join(vocab, on="id", how="left", maintain_order="left").get_column("idx")
    return out.fill_null(-1).to_numpy().astype(np.int64, copy=False)


def _vocab(ids: Sequence[str]) -> pl.DataFrame:
    return pl.DataFrame(
        {"id": pl.Series("id", list(ids), dtype=pl.String), "idx": np.arange(len(ids), dtype=np.int64)}
    )


Exclude = Mapping[str, Iterable[str]] | pl.DataFrame | sp.spmatrix | sp.sparray


class ALSScorer:
    """Scores (user, item) pairs and ranks the catalogue for users of an :class:`ALSModel`.

    ``backend``: "numpy" (matmul + argpartition), "torch" (matmul + torch.topk), or "auto"
    (by catalogue width, :mod:`recsys_assets.lib.topk`); all go through :func:`top_k_rows`.
    """

    def __init__(
        self,
        model: ALSModel,
        backend: Literal["auto", "numpy", "torch"] = "auto",
        max_chunk_cells: int = 1 << 25,
    ) -> None:
        self.model = model
        self._users = _vocab(model.user_ids)
        self._items = _vocab(model.item_ids)
        self._item_series = pl.Series("item_id", model.item_ids, dtype=pl.String)
        self.max_chunk_cells = max_chunk_cells
        self.backend = backend

    def known_users(self, user_ids: Sequence[str]) -> np.ndarray:
        """bool per id: the model has factors for this user."""
        return _index_of(user_ids, self._users) >= 0

    def known_items(self, item_ids: Sequence[str]) -> np.ndarray:
        """bool per id: the model has factors for this item."""
        return _index_of(item_ids, self._items) >= 0

    def score(self, user_ids: Sequence[str], item_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Dot-product scores of aligned pairs ``(user_ids[k], item_ids[k])``.

        Returns ``(scores float32, known bool)``; ``known[k]`` is False when the
        user or the item has no factors, and then ``scores[k]`` is NaN (never 0).
        """
        if len(user_ids) != len(item_ids):
            raise ALSError(f"score: {len(user_ids)} user ids but {len(item_ids)} item ids; pass aligned pairs.")
        u = _index_of(user_ids, self._users)
        i = _index_of(item_ids, self._items)
        known = (u >= 0) & (i >= 0)
        scores = np.full(len(u), np.nan, dtype=np.float32)
        ku, ki = u[known], i[known]
        pos = np.flatnonzero(known)
        step = 1 << 20
        for s in range(0, len(pos), step):
            uf = self.model.user_factors[ku[s : s + step]]
            itf = self.model.item_factors[ki[s : s + step]]
            scores[pos[s : s + step]] = np.einsum("ij,ij->i", uf, itf)
        return scores, known

    def _exclusions(self, user_ids: Sequence[str], exclude: Exclude | None) -> sp.csr_matrix | None:
        if exclude is None:
            return None
        if sp.issparse(exclude):
            want = (len(user_ids), len(self.model.item_ids))
            if exclude.shape != want:
                raise ALSError(
                    f"top_n: a sparse exclude must be aligned to (user_ids, model.item_ids), shape {want}; "
                    f"got {exclude.shape}. Pass a frame or dict to exclude by id instead."
                )
            return sp.csr_matrix(exclude)
        if isinstance(exclude, pl.DataFrame):
            pairs = exclude.select(pl.col("user_id").cast(pl.String), pl.col("item_id").cast(pl.String))
        else:
            us, its = [], []
            for u, items in exclude.items():
                for it in items:
                    us.append(u)
                    its.append(it)
            pairs = pl.DataFrame({"user_id": us, "item_id": its}, schema={"user_id": pl.String, "item_id": pl.String})
        req = pl.DataFrame(
            {"user_id": pl.Series("user_id", list(user_ids), dtype=pl.String), "row": np.arange(len(user_ids))}
        )
        items = self._items.rename({"id": "item_id", "idx": "col"})
        # Items unknown to the model cannot be recommended anyway: nothing to exclude.
        hit = pairs.join(req, on="user_id", how="inner").join(items, on="item_id", how="inner")
        rows = hit.get_column("row").to_numpy()
        cols = hit.get_column("col").to_numpy()
        mat = sp.csr_matrix(
            (np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(len(user_ids), len(self.model.item_ids))
        )
        return mat  # duplicates are harmless: they only set -inf twice

    def top_n(
        self,
        user_ids: Sequence[str],
        n: int,
        exclude: Exclude | None = None,
        *,
        skip_unknown: bool = False,
    ) -> pl.DataFrame:
        """The ``n`` best items of the full catalogue per user (dot product), best first.

        ``exclude``: items not to recommend per user, as ``{user: {items}}``, a
        frame with ``user_id`` / ``item_id`` columns (e.g. the users' past events),
        or (fastest, no id mapping) a sparse matrix whose rows follow ``user_ids``
        and columns ``model.item_ids``; nonzeros are excluded. A user left with
        fewer than ``n`` items gets fewer rows.
        Users unknown to the model raise :class:`UnknownUserError`, or with
        ``skip_unknown=True`` get no rows (count logged).
        Returns ``user_id, item_id, score (f32), rank (u32, 1 = best)`` in the
        order of ``user_ids``.
        """
        user_ids = list(user_ids)
        uidx = _index_of(user_ids, self._users)
        unknown = uidx < 0
        excl = self._exclusions(user_ids, exclude)
        if unknown.any():
            examples = [user_ids[j] for j in np.flatnonzero(unknown)[:5]]
            if not skip_unknown:
                raise UnknownUserError(
                    f"top_n: {int(unknown.sum())} of {len(user_ids)} users have no ALS factors (e.g. {examples}); "
                    "fold them in with fold_in(), or pass skip_unknown=True."
                )
            log.warning("top_n: skipping %d users unknown to the model (e.g. %s)", int(unknown.sum()), examples)
            user_ids = [u for u, unk in zip(user_ids, unknown) if not unk]
            uidx = uidx[~unknown]
            if excl is not None:
                excl = excl[np.flatnonzero(~unknown)]
        n_items = len(self.model.item_ids)
        n = int(min(n, n_items))
        schema = {"user_id": pl.String, "item_id": pl.String, "score": pl.Float32, "rank": pl.UInt32}
        if n <= 0 or not user_ids:
            return pl.DataFrame(schema=schema)
        chunk = max(1, min(len(user_ids), self.max_chunk_cells // max(n_items, 1)))
        top_items = np.empty((len(user_ids), n), dtype=np.int64)
        top_scores = np.empty((len(user_ids), n), dtype=np.float32)
        for s in range(0, len(user_ids), chunk):
            e = min(s + chunk, len(user_ids))
            sub = excl[s:e] if excl is not None else None
            top_items[s:e], top_scores[s:e] = self._topk(uidx[s:e], n, sub)

        valid = np.isfinite(top_scores).ravel()
        users_col = pl.Series("user_id", user_ids, dtype=pl.String).gather(np.repeat(np.arange(len(user_ids)), n))
        out = pl.DataFrame(
            {
                "user_id": users_col,
                "item_id": self._item_series.gather(top_items.ravel()),
                "score": top_scores.ravel(),
                "rank": np.tile(np.arange(1, n + 1, dtype=np.uint32), len(user_ids)),
            }
        )
        if not valid.all():
            out = out.filter(pl.Series(valid))
        return out

    def _topk(self, uidx: np.ndarray, n: int, excl: sp.csr_matrix | None) -> tuple[np.ndarray, np.ndarray]:
        users, items = self.model.user_factors[uidx], self.model.item_factors
        scores = users @ items.T
        if excl is not None and excl.nnz:
            rows = np.repeat(np.arange(excl.shape[0]), np.diff(excl.indptr))
            scores[rows, excl.indices] = -np.inf
        return dot_top_k(scores, users, items, n, self.backend)
