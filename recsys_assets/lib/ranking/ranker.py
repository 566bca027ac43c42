"""LightGBM lambdarank ranker (stage 2): training, persistence, scoring and explanations.

Training groups rows into ranking queries: one per user, or one per (snapshot, user) when
the frame has a ``snapshot`` column (several nights' examples, lib/ranking/examples.py: a
user active on two nights is two queries). Queries with no positive candidate carry no
ranking signal and are dropped from the fit (counted in ``meta``). Early stopping watches
NDCG@ks on a validation slice: the queries of the latest snapshot (``validation="last_night"``:
the night closest to the served day, as a forecast would be checked) or users chosen by a
salted hash of user_id (``"hash"``); either split is the same on every run and on every arm.

A ranker boosts from a baseline prior (``RankingConfig.prior``, LightGBM ``init_score``): the
trees learn corrections to the popularity arm's order, and the scorer (``RankerModel.predict``)
adds the same prior, recorded in the model's meta, to the trees' raw score.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import polars as pl
from upath import UPath

from recsys_assets.lib.artifacts import read_artifact, write_artifact
from recsys_assets.lib.errors import RecsysError
from recsys_assets.lib.lake import read_parquet, scan_parquet
from recsys_assets.lib.ranking.config import RankingConfig
from recsys_assets.lib.ranking.inputs import hash_u64

log = logging.getLogger(__name__)

SNAPSHOT_COL = "snapshot"
"""Column of a multi-night training frame: the day of the snapshot a row was computed at."""

MODEL_FILE = "ranker.txt"
META_FILE = "ranker.json"


class RankerError(RecsysError):
    """The ranker cannot be trained, loaded or applied as asked."""


def _matrix(frame: pl.DataFrame, feature_names: Sequence[str]) -> np.ndarray:
    missing = [f for f in feature_names if f not in frame.columns]
    if missing:
        raise RankerError(f"Frame lacks ranker features {missing}; compute them with ranker_features() for the same arm.")
    return frame.select([pl.col(f).cast(pl.Float32) for f in feature_names]).to_numpy()


PRIOR_FEATURE = {"popularity": "pop_rank_log"}
"""The feature each prior is a function of (every arm has it: FEATURES_NO_TEXT)."""


PRIOR_TERMS = {"profile": "profile_lift", "profile_new": "profile_lift", "cooc": "last_cooc"}
"""Optional additive terms of the popularity prior (``RankingConfig.prior_profile`` /
``prior_cooc``) and the feature each is a function of; a missing value (no profile, no history)
adds 0."""

COOC_FLOOR = 0.01
"""``last_cooc`` enters the prior as ``log(last_cooc + COOC_FLOOR) - log(COOC_FLOOR)``: 0 for a
candidate none of the user's last items' users had, growing with the log of the share."""


def _prior_term(frame: pl.DataFrame, name: str) -> np.ndarray:
    col = PRIOR_TERMS[name]
    if col not in frame.columns:
        raise RankerError(f"Ranker prior term {name!r} needs column {col!r}; compute it with ranker_features().")
    x = frame.get_column(col).cast(pl.Float64).to_numpy()
    if name == "cooc":
        x = np.log(x + COOC_FLOOR) - np.log(COOC_FLOOR)
    if name == "profile_new":
        x = np.where(frame.get_column("user_is_new").cast(pl.Float64).to_numpy() > 0, x, 0.0)
    return np.where(np.isfinite(x), x, 0.0)


def prior_scores(frame: pl.DataFrame, prior: dict | None) -> np.ndarray | None:
    """The baseline score of each row (float64), or None for no prior.

    ``prior`` = ``{"kind": "popularity", "scale": s}``: ``-s * pop_rank_log`` (= -s log(1 + place in
    the popularity list)), which orders the rows as the popularity arm does except that items tied on
    popularity (every never-seen item among them) share one value (``features.popularity_place``).
    With ``"profile": b`` and/or ``"cooc": c`` (``PRIOR_TERMS``) the prior adds ``b * profile_lift``
    and ``c * log-share of last_cooc`` (0 where the feature is missing): popularity among the users
    like this one / after this user's last items, which the trees then correct.
    """
    if not prior or prior.get("kind", "none") == "none":
        return None
    kind = prior["kind"]
    if kind not in PRIOR_FEATURE:
        raise RankerError(f"Unknown ranker prior {kind!r}; known: {sorted(PRIOR_FEATURE)} or none.")
    col = PRIOR_FEATURE[kind]
    if col not in frame.columns:
        raise RankerError(f"Ranker prior {kind!r} needs column {col!r}; compute it with ranker_features().")
    x = frame.get_column(col).cast(pl.Float64).to_numpy()
    # An item without a popularity place (NaN) gets the weakest prior of the frame.
    worst = np.nanmax(x) if np.isfinite(x).any() else 0.0
    out = -float(prior.get("scale", 1.0)) * np.where(np.isfinite(x), x, worst)
    for term in PRIOR_TERMS:
        w = float(prior.get(term, 0.0))
        if w:
            out = out + w * _prior_term(frame, term)
    return out


def prior_of(cfg: RankingConfig) -> dict:
    """The prior a config trains with, as recorded in the model meta (``prior_profile_new`` resolved: :func:`resolve_prior`)."""
    if cfg.prior_profile_new is None:
        raise RankerError("prior_profile_new is None (chosen on the training frame): resolve it first with resolve_prior().")
    out = {"kind": cfg.prior, "scale": float(cfg.prior_scale)}
    # Terms only when set: a model trained without them keeps the meta (and bytes) it had.
    for term, w in (("profile", cfg.prior_profile), ("profile_new", cfg.prior_profile_new), ("cooc", cfg.prior_cooc)):
        if w and cfg.prior != "none":
            out[term] = float(w)
    return out


def choose_prior_profile_new(frame: pl.DataFrame, cfg: RankingConfig, label_col: str = "label") -> tuple[float, dict]:
    """The ``prior_profile_new`` weight of one night's rankers, chosen on their training frame.

    Only brand-new users' queries move with the weight, so only they are compared: each weight of
    ``cfg.prior_profile_new_choices`` ranks the candidates of every new-user query with a positive by
    the prior alone (``prior_scores``; exact ties by item_id) and is scored by the queries' mean
    NDCG@max(ks) (``evaluation.metrics.per_user_metrics``, the evaluation's own definition, the
    query's labelled candidates as truth). The best weight wins if its paired gain over 0 exceeds
    ``prior_choice_min_se`` standard errors; otherwise, or with fewer than
    ``prior_choice_min_queries`` queries, the weight is 0. The frame holds nights before the served
    day only (``nightly.training_window``), so nothing of the evaluated days chooses it.
    Returns (weight, record for the model meta: choices, per-choice NDCG, queries, gain and its se).
    """
    from recsys_assets.lib.evaluation.metrics import per_user_metrics

    choices = sorted({0.0, *(float(w) for w in cfg.prior_profile_new_choices)})
    k = cfg.k
    keys = query_keys(frame.columns)
    record: dict = {"term": "profile_new", "choices": choices, "metric": f"ndcg@{k}", "chosen": 0.0}
    if cfg.prior == "none" or len(choices) == 1:
        return 0.0, {**record, "n_queries": 0, "reason": "no popularity prior or no weight to choose"}
    if "user_is_new" not in frame.columns:
        raise RankerError("choose_prior_profile_new: the training frame lacks user_is_new; compute it with ranker_features().")
    new = frame.filter(pl.col("user_is_new") > 0).with_columns(
        pl.concat_str([pl.col(c).cast(pl.String) for c in keys], separator="|").alias("_query")
    )
    truth = new.filter(pl.col(label_col) > 0).select(pl.col("_query").alias("user_id"), "item_id")
    queries = truth.get_column("user_id").unique(maintain_order=True).to_list()
    record["n_queries"] = len(queries)
    if len(queries) < cfg.prior_choice_min_queries:
        return 0.0, {**record, "reason": f"fewer than {cfg.prior_choice_min_queries} new-user queries with a positive"}
    new = new.filter(pl.col("_query").is_in(queries))
    base = prior_of(replace(cfg, prior_profile_new=0.0))
    ndcg = {}
    for w in choices:
        score = prior_scores(new, {**base, "profile_new": w})  # prior_scores adds nothing for w = 0
        recs = (
            new.select(pl.col("_query").alias("user_id"), "item_id", pl.Series("_score", score))
            .sort(["user_id", "_score", "item_id"], descending=[False, True, False])
            .with_columns(pl.int_range(1, pl.len() + 1).over("user_id").alias("rank"))
            .filter(pl.col("rank") <= k)
        )
        per_user = per_user_metrics(recs, truth, queries, ks=(k,)).filter(pl.col("metric") == "ndcg")
        ndcg[w] = per_user.get_column("value").to_numpy()
    gains = {w: ndcg[w] - ndcg[0.0] for w in choices if w}
    se = {w: float(g.std(ddof=1) / np.sqrt(len(g))) if len(g) > 1 else float("inf") for w, g in gains.items()}
    eligible = [w for w in gains if gains[w].mean() > cfg.prior_choice_min_se * se[w]]
    chosen = max(eligible, key=lambda w: (float(gains[w].mean()), -w)) if eligible else 0.0
    record.update(
        chosen=chosen,
        ndcg={str(w): float(v.mean()) for w, v in ndcg.items()},
        gain={str(w): float(g.mean()) for w, g in gains.items()},
        gain_se={str(w): v for w, v in se.items()},
    )
    return chosen, record


def resolve_prior(frame: pl.DataFrame, cfg: RankingConfig, label_col: str = "label") -> tuple[RankingConfig, dict | None]:
    """``cfg`` with ``prior_profile_new`` set: as given, or chosen on ``frame`` when it is None (+ the choice's record)."""
    if cfg.prior_profile_new is not None:
        return cfg, None
    weight, record = choose_prior_profile_new(frame, cfg, label_col)
    return replace(cfg, prior_profile_new=weight), record


@dataclass
class LgbData:
    """Matrices of one training run, as handed to ``lightgbm.train`` (the benchmark reuses them)."""

    x_train: np.ndarray | list
    """Feature rows: one float32 matrix, or ``lightgbm.Sequence`` row blocks (:func:`prepare_lgb_file`)."""
    y_train: np.ndarray
    group_train: np.ndarray
    x_valid: np.ndarray | list | None
    y_valid: np.ndarray | None
    group_valid: np.ndarray | None
    stats: dict = field(default_factory=dict)
    init_train: np.ndarray | None = None
    """Prior scores of the training rows (LightGBM ``init_score``); None = boost from 0."""
    init_valid: np.ndarray | None = None
    """Prior scores of the validation rows."""


def query_keys(columns: Sequence[str]) -> list[str]:
    """Columns that identify a ranking query: (snapshot, user_id) for multi-night frames, else user_id."""
    return [SNAPSHOT_COL, "user_id"] if SNAPSHOT_COL in columns else ["user_id"]


def _validation_mask(queries: pl.DataFrame, cfg: RankingConfig) -> tuple[np.ndarray, str]:
    """Which queries validate (early stopping), and how they were chosen ("none" when too few)."""
    n = queries.height
    none = np.zeros(n, dtype=bool)
    if cfg.early_stopping_rounds <= 0 or cfg.validation == "none":
        return none, "none"
    if cfg.validation == "last_night" and SNAPSHOT_COL in queries.columns:
        snaps = queries.get_column(SNAPSHOT_COL)
        mask = (snaps == snaps.max()).to_numpy()
        if snaps.n_unique() > 1 and mask.sum() >= cfg.min_valid_users:
            return mask, "last_night"
        return none, "none"
    if cfg.validation_fraction <= 0:
        return none, "none"
    # By user, not by query: a user's queries of several nights are all in or all out.
    h = hash_u64(queries.get_column("user_id").to_list(), cfg.validation_salt)
    mask = (h.astype(np.float64) / 2.0**64) < cfg.validation_fraction
    if mask.all() or mask.sum() < cfg.min_valid_users:
        return none, "none"
    return mask, "hash"


def _split_queries(per_q: pl.DataFrame, cfg: RankingConfig) -> tuple[pl.DataFrame, dict]:
    """The queries that train (``per_q``: keys, ``n`` rows, ``pos`` positives, in row order): those with a
    positive, with ``_valid`` (the early-stopping slice), and their counts for the model meta."""
    n_queries = per_q.height
    keep = per_q.filter(pl.col("pos") > 0)
    if keep.height == 0:
        raise RankerError(
            f"train_ranker: none of the {n_queries} training queries has a positive among their candidates; "
            "check the labels and the candidate sources (candidate_recall is 0)."
        )
    valid_mask, how = _validation_mask(keep, cfg)
    keep = keep.with_columns(pl.Series("_valid", valid_mask))
    gt, gv = (keep.filter(pl.col("_valid") == v).get_column("n") for v in (False, True))
    stats = {
        "n_users": n_queries,
        "n_users_no_positive": n_queries - keep.height,
        "n_train_users": gt.len(),
        "n_valid_users": gv.len(),
        "n_train_rows": int(gt.sum()),
        "n_valid_rows": int(gv.sum()),
        "positive_rate": float(keep.get_column("pos").sum() / keep.get_column("n").sum()),
        "validation": how,
    }
    return keep, stats


def prepare_lgb_data(train_frame: pl.DataFrame, feature_names: Sequence[str], cfg: RankingConfig, label_col: str = "label") -> LgbData:
    """Group rows into queries, drop queries without a positive, split train/validation queries."""
    keys = query_keys(train_frame.columns)
    for c in (*keys, label_col):
        if c not in train_frame.columns:
            raise RankerError(f"train_ranker: training frame lacks column {c!r}; build it with training_frame_from_nights().")
    frame = train_frame.sort(keys, maintain_order=True)
    per_q = frame.group_by(keys, maintain_order=True).agg(pl.len().alias("n"), (pl.col(label_col) > 0).sum().alias("pos"))
    keep, stats = _split_queries(per_q, cfg)
    frame = frame.join(keep.select(*keys, "_valid"), on=keys, how="inner", maintain_order="left")
    tr = frame.filter(~pl.col("_valid"))
    va = frame.filter(pl.col("_valid"))
    gt = keep.filter(~pl.col("_valid")).get_column("n").to_numpy()
    gv = keep.filter(pl.col("_valid")).get_column("n").to_numpy()
    if SNAPSHOT_COL in frame.columns:
        stats["nights"] = int(frame.get_column(SNAPSHOT_COL).n_unique())
    prior = prior_of(cfg)
    return LgbData(
        init_train=prior_scores(tr, prior),
        init_valid=prior_scores(va, prior) if len(gv) else None,
        x_train=_matrix(tr, feature_names),
        y_train=tr.get_column(label_col).cast(pl.Float32).to_numpy(),
        group_train=gt,
        x_valid=_matrix(va, feature_names) if len(gv) else None,
        y_valid=va.get_column(label_col).cast(pl.Float32).to_numpy() if len(gv) else None,
        group_valid=gv if len(gv) else None,
        stats=stats,
    )


def _stored_paths(stored: UPath | Sequence[UPath]) -> list[UPath]:
    """A stored training frame as its list of Parquet files (one file, or the files whose rows follow each other)."""
    paths = [stored] if hasattr(stored, "open") else list(stored)
    if not paths:
        raise RankerError("train_ranker: no training file; build them with nightly.build_ranker_datasets().")
    return paths


def new_user_rows(stored: UPath | Sequence[UPath]) -> pl.DataFrame:
    """The rows of a stored training frame (one Parquet file or its night files in order) whose user is brand new
    (``user_is_new`` > 0): all that :func:`choose_prior_profile_new` reads, without the other users' rows."""
    return pl.concat([scan_parquet(p).filter(pl.col("user_is_new") > 0).collect() for p in _stored_paths(stored)])


class _RowGroups:
    """The feature columns of Parquet files (read one after the other) as float32 matrices, one row group at a
    time (the last one decoded is kept: LightGBM reads the rows in order, for its binning sample and then to bin
    them). Row group ``i`` counts over the files."""

    def __init__(self, paths: list[UPath], feature_names: list[str]) -> None:
        import pyarrow.parquet as pq

        self.files = [pq.ParquetFile(p.open("rb")) for p in paths]
        self.groups = [(f, i) for f in self.files for i in range(f.num_row_groups)]
        self.names = feature_names
        sizes = [f.metadata.row_group(i).num_rows for f, i in self.groups]
        self.starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        self._index, self._matrix = -1, None

    def matrix(self, i: int) -> np.ndarray:
        if i != self._index:
            f, g = self.groups[i]
            # The cast prepare_lgb_data makes (_matrix), so the values LightGBM bins are the same.
            self._matrix = _matrix(pl.from_arrow(f.read_row_group(g, columns=self.names)), self.names)
            self._index = i
        return self._matrix


def _row_sequences(groups: _RowGroups, row_mask: np.ndarray) -> list:
    """``lightgbm.Sequence`` blocks of the file's rows where ``row_mask`` is True, in file order (float64 rows
    of the float32 values, as LightGBM's binning sample wants them)."""
    import lightgbm as lgb

    class RowGroupRows(lgb.Sequence):
        def __init__(self, index: int, rows: np.ndarray) -> None:
            self.index, self.rows, self.batch_size = index, rows, len(rows)

        def __len__(self) -> int:
            return len(self.rows)

        def __getitem__(self, idx):
            return groups.matrix(self.index)[self.rows[idx]].astype(np.float64)

    seqs = []
    for i in range(len(groups.starts) - 1):
        rows = np.flatnonzero(row_mask[groups.starts[i] : groups.starts[i + 1]])
        if len(rows):
            seqs.append(RowGroupRows(i, rows))
    return seqs


def prepare_lgb_file(stored: UPath | Sequence[UPath], feature_names: Sequence[str], cfg: RankingConfig, label_col: str = "label") -> LgbData:
    """:func:`prepare_lgb_data` of a training frame stored as Parquet (one file, or files whose rows follow each
    other: ``nightly.build_ranker_datasets`` writes one per night), sorted by its query keys: the same queries,
    labels, prior and rows, but the features stay in the files and reach LightGBM as row-group sequences
    (``lightgbm.Sequence``). Memory holds the keys, labels and prior columns, one decoded row group and
    LightGBM's binned copy (about one byte per feature and row), instead of the frame and its float32 matrix."""
    import pyarrow.parquet as pq

    feature_names = list(feature_names)
    paths = _stored_paths(stored)
    where = str(paths[0]) if len(paths) == 1 else f"{paths[0].parent} ({len(paths)} files)"
    schemas = []
    for p in paths:
        with p.open("rb") as fh:
            schemas.append(pq.read_schema(fh).names)
    columns = schemas[0]
    if any(names != columns for names in schemas):
        raise RankerError(f"train_ranker: the files of {where} have different columns; rebuild them with nightly.build_ranker_datasets().")
    keys = query_keys(columns)
    missing = [c for c in (*keys, label_col, *feature_names) if c not in columns]
    if missing:
        raise RankerError(f"train_ranker: {where} lacks columns {missing}; build it with training_frame_from_nights().")
    q = pl.concat([read_parquet(p, [*keys, label_col]) for p in paths])
    per_q = q.group_by(keys, maintain_order=True).agg(pl.len().alias("n"), (pl.col(label_col) > 0).sum().alias("pos"))
    runs = q.select(pl.struct(keys).rle_id().max()).item() + 1 if q.height else 0
    if runs != per_q.height or not per_q.select(keys).equals(per_q.select(keys).sort(keys)):
        raise RankerError(f"train_ranker: {where} is not sorted by {keys}; write it with nightly.build_ranker_datasets().")
    del q
    keep, stats = _split_queries(per_q, cfg)
    # Per query 0 = dropped (no positive), 1 = trains, 2 = validates; then per row (a query's rows are consecutive).
    status = per_q.select(*keys, "n").join(keep.select(*keys, "_valid"), on=keys, how="left", maintain_order="left")
    code = status.get_column("_valid").cast(pl.Int8).fill_null(-1).to_numpy() + 1
    row_code = np.repeat(code.astype(np.int8), status.get_column("n").to_numpy())
    prior = prior_of(cfg)
    prior_cols = [c for c in dict.fromkeys([*PRIOR_FEATURE.values(), *PRIOR_TERMS.values(), "user_is_new"]) if c in columns]
    labelled = pl.concat([read_parquet(p, [label_col, *prior_cols]) for p in paths])
    if SNAPSHOT_COL in keys:
        stats["nights"] = int(per_q.filter(pl.col("pos") > 0).get_column(SNAPSHOT_COL).n_unique())
    groups = _RowGroups(paths, feature_names)
    parts = {}
    for name, c in (("train", 1), ("valid", 2)):
        mask = row_code == c
        rows = labelled.filter(pl.Series(mask))
        sizes = keep.filter(pl.col("_valid") == (c == 2)).get_column("n").to_numpy()
        parts[name] = (
            (_row_sequences(groups, mask), rows.get_column(label_col).cast(pl.Float32).to_numpy(), sizes, prior_scores(rows, prior))
            if len(sizes)
            else (None, None, None, None)
        )
    (xt, yt, gt, it), (xv, yv, gv, iv) = parts["train"], parts["valid"]
    return LgbData(x_train=xt, y_train=yt, group_train=gt, x_valid=xv, y_valid=yv, group_valid=gv, stats=stats, init_train=it, init_valid=iv)


def lgb_data_seed(seed: int) -> int:
    """The ``data_random_seed`` LightGBM derives from ``seed``: the first ``Random(seed).NextShort(0, 32767)``
    of its ``Config::Set`` (a 32-bit linear congruential step, bits 16-30).

    A Dataset built from row sequences (``lightgbm.Sequence``) draws its binning sample in Python with
    the Dataset's own parameters, which leave ``seed`` out; given this seed it draws the rows the matrix
    path draws, so both build the same bins and train the same model (test_ranker_file.py checks it)."""
    x = (214013 * (seed & 0xFFFFFFFF) + 2531011) & 0xFFFFFFFF
    return ((x >> 16) & 0x7FFF) % 32767


_DATASET_LOCK = threading.Lock()


def fit_lgb(data: LgbData, feature_names: Sequence[str], cfg: RankingConfig):
    """The lightgbm.train call itself (Dataset construction included); rows as one matrix or as row sequences."""
    import lightgbm as lgb

    params = cfg.lgb_params(list(feature_names))
    # The Dataset gets the training parameters lgb.train would give it (the same bins), and is constructed here.
    dtrain = lgb.Dataset(
        data.x_train,
        label=data.y_train,
        group=data.group_train,
        init_score=data.init_train,
        feature_name=list(feature_names),
        free_raw_data=False,
        params={**params, "data_random_seed": lgb_data_seed(cfg.seed)},
    )
    valid_sets, callbacks = [], []
    if data.x_valid is not None:
        dvalid = lgb.Dataset(data.x_valid, label=data.y_valid, group=data.group_valid, init_score=data.init_valid, reference=dtrain, params=dtrain.params)
        valid_sets = [dvalid]
        callbacks = [lgb.early_stopping(cfg.early_stopping_rounds, first_metric_only=True, verbose=False)]
    # One Dataset construction at a time in this process: two fits side by side (nightly.train_rankers) binning
    # row sequences at once crashed the process (LGBM_DatasetPushRows in one thread while the other was in
    # LGBM_DatasetCreateFromSampledColumn). Likely cause, not verified: a Dataset's per-thread row buffers are sized
    # from a process-wide OpenMP thread count that Dataset calls (no num_threads among their parameters) reset.
    # The boosting rounds still run side by side.
    with _DATASET_LOCK:
        for ds in (dtrain, *valid_sets):
            ds.construct()
    rounds = cfg.num_boost_round if valid_sets else min(cfg.num_boost_round, cfg.rounds_without_validation)
    return lgb.train(params, dtrain, num_boost_round=rounds, valid_sets=valid_sets, callbacks=callbacks)


@dataclass
class RankerModel:
    """A fitted LightGBM ranker with the feature list it expects."""

    booster: object
    """lightgbm.Booster."""
    feature_names: list[str]
    """Columns read from a feature frame, in this order."""
    meta: dict = field(default_factory=dict)
    """config_hash, best_iteration, training stats (users, rows, dropped users), fit seconds, arm,
    ``prior`` (the baseline the trees were boosted from; absent = none)."""

    @property
    def best_iteration(self) -> int:
        return int(self.meta.get("best_iteration") or 0) or int(self.booster.current_iteration())

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        """Scores (float64) of the frame's rows; higher = better: the prior + the trees' raw score."""
        if frame.height == 0:
            return np.zeros(0, dtype=np.float64)
        raw = self.booster.predict(
            _matrix(frame, self.feature_names), num_iteration=self.best_iteration, raw_score=True, num_threads=self.meta.get("num_threads", 0) or 0
        )
        prior = prior_scores(frame, self.meta.get("prior"))
        return np.asarray(raw, dtype=np.float64) if prior is None else raw + prior

    def feature_importance(self) -> pl.DataFrame:
        """(feature, gain, split) sorted by gain, descending."""
        gain = self.booster.feature_importance("gain", iteration=self.best_iteration)
        split = self.booster.feature_importance("split", iteration=self.best_iteration)
        return pl.DataFrame({"feature": self.feature_names, "gain": gain.astype(np.float64), "split": split.astype(np.int64)}).sort(
            "gain", descending=True, maintain_order=True
        )

    def explain(self, frame_sample: pl.DataFrame) -> pl.DataFrame:
        """Per-row contributions (``pred_contrib``): id columns, score, ``prior``, ``bias`` and one ``contrib_<feature>`` per feature.

        ``prior`` (the baseline boosted from, 0 without one), ``bias`` and the contributions of a
        row sum to its score (LightGBM's SHAP values of the trees).
        """
        ids = [c for c in ("user_id", "item_id") if c in frame_sample.columns]
        if frame_sample.height == 0:
            schema = {c: pl.String for c in ids} | {"score": pl.Float64, "prior": pl.Float64, "bias": pl.Float64}
            schema |= {f"contrib_{f}": pl.Float64 for f in self.feature_names}
            return pl.DataFrame(schema=schema)
        contrib = self.booster.predict(_matrix(frame_sample, self.feature_names), num_iteration=self.best_iteration, pred_contrib=True)
        contrib = np.asarray(contrib, dtype=np.float64)
        prior = prior_scores(frame_sample, self.meta.get("prior"))
        prior = np.zeros(frame_sample.height) if prior is None else prior
        out = frame_sample.select(ids).with_columns(
            pl.Series("score", contrib.sum(axis=1) + prior),
            pl.Series("prior", prior),
            pl.Series("bias", contrib[:, -1]),
            *[pl.Series(f"contrib_{f}", contrib[:, j]) for j, f in enumerate(self.feature_names)],
        )
        return out

    # --- persistence -----------------------------------------------------------
    def save(self, directory: UPath) -> None:
        """Write ``ranker.txt`` (booster.model_to_string) then ``ranker.json`` (meta + sha256), each atomically."""
        text = self.booster.model_to_string(num_iteration=-1).encode()
        # Measured times describe a run, not the model: left out so a rerun writes the same bytes.
        kept = {k: v for k, v in self.meta.items() if k not in RUN_TIMINGS}
        meta = dict(kept, feature_names=self.feature_names, format="recsys_assets.ranker/1")
        write_artifact(directory, MODEL_FILE, text, META_FILE, meta)

    @classmethod
    def load(cls, directory: UPath) -> "RankerModel":
        import lightgbm as lgb

        text, meta = read_artifact(directory, MODEL_FILE, META_FILE, RankerError, "ranker", "retrain it (rankers asset)")
        booster = lgb.Booster(model_str=text.decode())
        names = list(meta.pop("feature_names"))
        if booster.feature_name() != names:
            raise RankerError(f"{directory}: booster features {booster.feature_name()} differ from its meta {names}.")
        return cls(booster=booster, feature_names=names, meta=meta)


RUN_TIMINGS = ("prepare_seconds", "fit_seconds")
"""Keys of ``RankerModel.meta`` that time the training run (logged; not written into the artifact)."""


def train_ranker(
    train: pl.DataFrame | UPath | Sequence[UPath],
    feature_names: Sequence[str],
    cfg: RankingConfig,
    *,
    label_col: str = "label",
    arm: str | None = None,
    prior_choice: dict | None = None,
) -> RankerModel:
    """LightGBM lambdarank on ``train`` (user_id, label, features), boosted from ``cfg.prior``, early-stopped per ``cfg.validation``.

    ``train`` is a frame, or Parquet files of one (a file, or a list whose rows follow each other) sorted by its
    query keys (``nightly.build_ranker_datasets``):
    the same model bytes without the frame in memory (:func:`prepare_lgb_file` streams its row groups to LightGBM).
    ``cfg.prior_profile_new`` None is chosen on its new-user rows (:func:`resolve_prior`, :func:`new_user_rows`); a
    caller that chose it on another frame (one choice for every arm of a night: ``nightly.train_rankers``) passes the
    resolved config and the choice's record as ``prior_choice``, kept in the meta.
    """
    feature_names = list(feature_names)
    t0 = time.perf_counter()
    stored = not isinstance(train, pl.DataFrame)
    if cfg.prior_profile_new is None:
        cfg, prior_choice = resolve_prior(new_user_rows(train) if stored else train, cfg, label_col)
    prepare = prepare_lgb_file if stored else prepare_lgb_data
    return _fit_ranker(prepare(train, feature_names, cfg, label_col), feature_names, cfg, arm, prior_choice, t0)


def _fit_ranker(data: LgbData, feature_names: list[str], cfg: RankingConfig, arm: str | None, prior_choice: dict | None, t0: float) -> RankerModel:
    """Fit (early stopping and refit per ``cfg``) and wrap a model with its meta; ``t0`` = when preparation began."""
    t1 = time.perf_counter()
    booster = fit_lgb(data, feature_names, cfg)
    best = int(booster.best_iteration or 0) or int(booster.current_iteration())
    valid_scores = {}
    if data.x_valid is not None and booster.best_score:
        valid_scores = {k: float(v) for k, v in next(iter(booster.best_score.values())).items()}
    refit = data.x_valid is not None and cfg.refit_after_early_stopping
    if refit:
        # The rounds are chosen on the validation slice; the model served is fit on every query.
        full = LgbData(
            x_train=np.vstack([data.x_train, data.x_valid]) if isinstance(data.x_train, np.ndarray) else [*data.x_train, *data.x_valid],
            y_train=np.concatenate([data.y_train, data.y_valid]),
            group_train=np.concatenate([data.group_train, data.group_valid]),
            x_valid=None,
            y_valid=None,
            group_valid=None,
            init_train=None if data.init_train is None else np.concatenate([data.init_train, data.init_valid]),
        )
        booster = fit_lgb(full, feature_names, replace(cfg, num_boost_round=best, rounds_without_validation=best))
        best = int(booster.current_iteration())
    t2 = time.perf_counter()
    meta = {
        "arm": arm,
        "config_hash": cfg.config_hash(),
        "prior": prior_of(cfg),
        **({"prior_choice": prior_choice} if prior_choice else {}),
        "best_iteration": best,
        "num_threads": cfg.num_threads,
        "valid_scores": valid_scores,
        "refit_on_all": refit,
        "prepare_seconds": round(t1 - t0, 4),
        "fit_seconds": round(t2 - t1, 4),
        **data.stats,
    }
    log.info("train_ranker %s: %s", arm, meta)
    return RankerModel(booster=booster, feature_names=feature_names, meta=meta)
