"""The nightly feature stage for snapshot D: what each features asset computes and where it lives.

Layout under ``models/snapshot=D/``:

- ``embeddings/<encoder>.npz``                 item vectors of every item available on D
- ``<protocol>/<stage>/als/``                  ALS factors fitted on the view's history
- ``<protocol>/<stage>/c2cf_<encoder>/``       text -> ALS factor regression (warm items)
- ``<protocol>/<stage>/profiles_<encoder>.npz`` user interest vectors (history EMA + profile text)

``stage`` is ``serve`` (inputs before D) or ``train`` (inputs before D - w, for ranker labels).
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import polars as pl
from upath import UPath

from recsys_assets.lib.artifacts import PROVENANCE_KEY, current_provenance
from recsys_assets.lib.confighash import config_hash
from recsys_assets.lib.features.als import META_FILE as ALS_META_FILE, ALSConfig, ALSModel, fit_als
from recsys_assets.lib.features.content_to_cf import ContentToCFConfig, ContentToCFModel, fit_content_to_cf
from recsys_assets.lib.features.embeddings import EmbeddingResult, embed_items
from recsys_assets.lib.features.encoders import EncoderConfig, encoder_is_neural, encoder_spec, get_encoder, variant_inputs
from recsys_assets.lib.interactions import InteractionConfig
from recsys_assets.lib.features.profiles import ProfileConfig, build_user_profiles, merge_user_vectors, profiles_from_text
from recsys_assets.lib.features.text import ItemTextConfig
from recsys_assets.lib.lake import Lake, write_bytes_atomic
from recsys_assets.lib.snapshot import ProtocolConfig, SnapshotView

STAGES = ("serve", "train")


@dataclass(frozen=True)
class FeatureConfig:
    """Everything the feature stage needs; its hash is recorded on every artifact."""

    encoders: tuple[str, ...] = ("minilm-l6", "tfidf")
    """Encoders to run (see encoders.available_encoders()); the first LM one is the headline."""
    text: ItemTextConfig = field(default_factory=ItemTextConfig)
    """How item fields compose into the encoded text."""
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    """Batching, device and precision of neural encoders."""
    image_weight: float = 0.5
    """Share of a fused vector given to a precomputed item vector (image embedding) when present."""
    als: ALSConfig = field(default_factory=ALSConfig)
    """ALS hyper-parameters."""
    interactions: InteractionConfig = field(default_factory=InteractionConfig)
    """Event weights and the truth rule."""
    c2cf: ContentToCFConfig = field(default_factory=ContentToCFConfig)
    """Text -> ALS factor regression."""
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    """User interest vector EMA."""
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    """Protocols, holdout, label window and segments."""

    def config_hash(self) -> str:
        return config_hash(self)

    @property
    def lm_encoders(self) -> list[str]:
        """The configured encoders that are pretrained language models (the encoder registry decides)."""
        return [e for e in self.encoders if encoder_is_neural(e)]


def write_npz(path: UPath, meta: dict | None = None, **arrays) -> None:
    """Arrays (+ JSON metadata, + the current artifact provenance) in one atomic npz file."""
    meta = dict(meta or {})
    if (provenance := current_provenance()) is not None:
        meta[PROVENANCE_KEY] = provenance
    buf = io.BytesIO()
    np.savez(buf, _meta=np.asarray(json.dumps(meta, default=str)), **arrays)
    write_bytes_atomic(path, buf.getvalue())


def read_npz_meta(path: UPath) -> dict:
    """Only the JSON metadata of an npz file (the arrays are not read)."""
    with path.open("rb") as fh:
        with np.load(fh, allow_pickle=False) as z:
            return json.loads(str(z["_meta"]))


def view_artifact_metas(lake: Lake, day: date, protocol: str, stage: str) -> dict[str, dict]:
    """Meta of every model the feature stage wrote for one view (ALS, content->CF, profiles), by relative path."""
    from recsys_assets.lib.features.als import META_FILE as ALS_META
    from recsys_assets.lib.features.content_to_cf import META_FILE as C2CF_META

    folder = lake.view_dir(day, protocol, stage)
    out: dict[str, dict] = {}
    if not folder.exists():
        return out
    for child in sorted(folder.iterdir(), key=lambda p: p.name):
        for meta_name in (ALS_META, C2CF_META):
            if child.is_dir() and child.joinpath(meta_name).exists():
                out[f"{child.name}/{meta_name}"] = json.loads(child.joinpath(meta_name).read_bytes())
        if child.name.startswith("profiles_") and child.name.endswith(".npz"):
            out[child.name] = read_npz_meta(child)
    return out


def read_npz(path: UPath) -> tuple[dict[str, np.ndarray], dict]:
    with path.open("rb") as fh:
        with np.load(io.BytesIO(fh.read()), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files if k != "_meta"}
            meta = json.loads(str(z["_meta"]))
    return arrays, meta


# --- views -------------------------------------------------------------------------


# The views of a day are built once per process by lib/day.py (DaySnapshot), from here up.


# --- item embeddings -----------------------------------------------------------------


def available_items(items: pl.DataFrame, day: date) -> pl.DataFrame:
    return items.filter(pl.col("first_seen_day").is_null() | (pl.col("first_seen_day") <= day))


def encoder_inputs(lake: Lake, items: pl.DataFrame, day: date, encoder_name: str, cfg: FeatureConfig):
    """(encoder, item-text config, whether the image vector is used, catalogue) of one encoder on ``day``."""
    encoder = get_encoder(encoder_name, cfg.encoder, cache_dir=lake.cache, day=day)
    # A text variant (``<enc>@title``...: the fusion ablation) has its own template and image use.
    text_config, use_image = variant_inputs(encoder_name, cfg.text)
    catalogue = available_items(items, day)
    if not use_image and "image_vector" in catalogue.columns:
        catalogue = catalogue.drop("image_vector")
    return encoder, text_config, use_image, catalogue


def compute_item_embeddings(lake: Lake, items: pl.DataFrame, day: date, encoder_name: str, cfg: FeatureConfig) -> EmbeddingResult:
    """Vectors of every item available on ``day``; neural encoders reuse the lake's cache."""
    encoder, text_config, _, catalogue = encoder_inputs(lake, items, day, encoder_name, cfg)
    result = embed_items(
        catalogue,
        encoder,
        text_config,
        cache_root=lake.embeddings_dir(encoder_name),
        extra_vectors_weight=cfg.image_weight,
    )
    # Cost accounting (encoder_cost table): size, precision and where it ran.
    described = encoder.describe()
    result.stats.update(params=described["n_params"], precision=described["precision"], device=_device_of(encoder))
    return result


def _device_of(encoder) -> str:
    model = getattr(encoder, "model", None) or getattr(encoder, "_model", None)
    return str(getattr(model, "device", "cpu"))


def save_item_embeddings(lake: Lake, day: date, encoder_name: str, result: EmbeddingResult, cfg: FeatureConfig) -> bool:
    """Write D's vectors of one encoder; False when the file already holds exactly these vectors.

    The file's metadata records what producing the vectors cost (``encoder_cost`` reads it). A rerun
    that yields the same vectors from the same model and configuration keeps the file, so reruns are
    byte-identical and the recorded cost stays that of the run that made the vectors (not a cache hit's).
    """
    path = lake.embeddings_file(day, encoder_name)
    item_ids, vectors = np.asarray(result.item_ids, dtype=str), result.vectors.astype(np.float32)
    meta = {**result.stats, "config_hash": cfg.config_hash()}
    if path.exists():
        old, old_meta = read_npz(path)
        same_source = all(old_meta.get(k) == meta.get(k) for k in ("config_hash", "fingerprint", "encoder", "dim"))
        if same_source and np.array_equal(old["item_ids"], item_ids) and np.array_equal(old["vectors"], vectors):
            return False
    write_npz(path, meta=meta, item_ids=item_ids, vectors=vectors)
    return True


def encoders_with_embeddings(lake: Lake, day: date, cfg: FeatureConfig) -> list[str]:
    """Configured encoders whose embeddings exist for D (a missing optional model degrades only its arms)."""
    return [e for e in cfg.encoders if lake.embeddings_file(day, e).exists()]


def load_item_embeddings(lake: Lake, day: date, encoder_name: str) -> tuple[list[str], np.ndarray, dict]:
    arrays, meta = read_npz(lake.embeddings_file(day, encoder_name))
    return arrays["item_ids"].tolist(), arrays["vectors"], meta


# --- ALS -------------------------------------------------------------------------------


def fit_view_als(view: SnapshotView, cfg: FeatureConfig) -> tuple[ALSModel, dict]:
    t0 = time.perf_counter()
    model = fit_als(view.history, cfg.als, cfg.interactions)
    return model, _als_stats(model, view, t0)


def _als_stats(model: ALSModel, view: SnapshotView, t0: float) -> dict:
    """What ``als_model`` reports of a view's model (seconds since ``t0``)."""
    return {
        "users": len(model.user_ids),
        "items": len(model.item_ids),
        "folded_in_users": int(model.user_folded.sum()),
        "events": view.history.height,
        "seconds": round(time.perf_counter() - t0, 3),
    }


SAME_INPUT_KEYS = ("protocol", "data_cutoff", "events_max_ts", "n_events", "history_hash")
"""Provenance keys that say what a view's models were fitted on (``snapshot`` and ``stage`` only say where)."""


def earlier_serve_als(lake: Lake, view: SnapshotView, cfg: FeatureConfig) -> tuple[ALSModel, UPath] | None:
    """The ALS model a train view needs, when an earlier night already fitted it (else None).

    The train view of D sees the events before D - w, exactly what the serve view of day D - w saw
    (same cutoff, catalogue and holdout): when that night's serve ALS artifact records the same
    inputs (``SAME_INPUT_KEYS``, the history's content hash included, so late data is never
    reused) and the same ALS/interaction configuration, fitting again would give the same factors.
    Half of ``als_model``'s work at every night after the first.
    """
    if view.stage != "train":
        return None
    directory = lake.als_dir(view.cutoff, view.protocol, "serve")
    meta_path = directory / ALS_META_FILE
    if not meta_path.exists():
        return None
    meta = json.loads(meta_path.read_bytes())
    recorded, wanted = meta.get(PROVENANCE_KEY) or {}, view.provenance()
    if any(recorded.get(k) != wanted[k] for k in SAME_INPUT_KEYS) or meta.get("config_hash") != config_hash(cfg.als, cfg.interactions):
        return None
    return ALSModel.load(directory), directory


def view_als(lake: Lake, view: SnapshotView, cfg: FeatureConfig) -> tuple[ALSModel, dict]:
    """The view's ALS model and its stats: an earlier night's identical fit (:func:`earlier_serve_als`), else a fit."""
    t0 = time.perf_counter()
    earlier = earlier_serve_als(lake, view, cfg)
    if earlier is None:
        model, stats = fit_view_als(view, cfg)
        return model, {**stats, "reused_from": None}
    model, directory = earlier
    return model, {**_als_stats(model, view, t0), "reused_from": str(directory)}


# --- content -> CF -----------------------------------------------------------------------


def catalog_vectors(view: SnapshotView, item_ids: list[str], vectors: np.ndarray) -> tuple[list[str], np.ndarray]:
    """The rows of a snapshot's item vectors that belong to the view's catalogue (train views see fewer items)."""
    keep = set(view.catalog["item_id"].to_list())
    mask = np.fromiter((i in keep for i in item_ids), dtype=bool, count=len(item_ids))
    return [i for i, k in zip(item_ids, mask) if k], vectors[mask]


def fit_view_c2cf(view: SnapshotView, item_ids: list[str], vectors: np.ndarray, als: ALSModel, cfg: FeatureConfig) -> ContentToCFModel:
    counts = view.item_stats.select("item_id", "n_interactions")
    ids, mat = catalog_vectors(view, item_ids, vectors)
    return fit_content_to_cf(ids, mat, als, counts, cfg.c2cf)


# --- user profiles ------------------------------------------------------------------------


def view_history_profiles(view: SnapshotView, item_ids: list[str], vectors: np.ndarray, cfg: FeatureConfig) -> tuple[list[str], np.ndarray, dict]:
    """Interest profiles (decayed, strength-weighted mean of item vectors) of the view's users with history."""
    ids, mat_items = catalog_vectors(view, item_ids, vectors)
    uids, mat, stats = build_user_profiles(view.history, ids, mat_items, cfg.profile, cfg.interactions, return_stats=True)
    return list(uids), mat, dict(stats) if isinstance(stats, dict) else {"detail": str(stats)}


def build_view_profiles(
    view: SnapshotView,
    item_ids: list[str],
    vectors: np.ndarray,
    users: pl.DataFrame,
    encoder_name: str,
    cfg: FeatureConfig,
    lake: Lake,
    items_available: pl.DataFrame,
    text_memo: dict | None = None,
) -> tuple[list[str], np.ndarray, dict]:
    """History EMA for users with events; encoded profile text for users with none (encoders with a text model:
    neural/tfidf; metadata and item-vector have none, ``stats["profile_text_skipped"]`` counts those users).

    ``text_memo`` (one dict per ``user_profiles`` run, shared by its views, all with the same ``items_available``):
    the encoder fitted on that catalogue by an earlier view, and profile texts already encoded by this (neural)
    encoder in an earlier view, are reused, so the four views of a night fit once and encode each text once (the
    views run in a fixed order, so a rerun gives the same bits).
    """
    uids, mat, stats = view_history_profiles(view, item_ids, vectors, cfg)
    with_history = set(uids)
    cold = users.filter(pl.col("profile").is_not_null() & ~pl.col("user_id").is_in(list(with_history)))
    text_users = 0
    # An encoder without a text model (metadata, item-vector) has no vector for a profile text:
    # those users get none in its space, counted rather than silently dropped.
    stats["profile_text_skipped"] = 0 if encoder_spec(encoder_name).encodes_text else cold.height
    if cold.height and encoder_spec(encoder_name).encodes_text:
        # The views of one run share the catalogue: the encoder is fitted once per run (a tfidf fit is
        # deterministic, so the same vectors; 10M world: 3 of 4 fits of ~3.4 s saved).
        fitted_key = ("fitted encoder", encoder_name)
        encoder = text_memo.get(fitted_key) if text_memo is not None else None
        if encoder is None:
            encoder = get_encoder(encoder_name, cfg.encoder, cache_dir=lake.cache, day=view.day)
            # Lexical encoders must be fitted on the same catalogue (and texts) as the item vectors.
            encoder.fit_items(items_available, variant_inputs(encoder_name, cfg.text)[0])
            if text_memo is not None:
                text_memo[fitted_key] = encoder

        # Only encoders whose vectors depend on (model, text) alone are memoized (a fitted tfidf is not).
        memo = text_memo if text_memo is not None and encoder.is_neural else {}

        def encode_texts_once(texts: list[str]) -> np.ndarray:
            key = (encoder_name, encoder.fingerprint)
            todo = list(dict.fromkeys(t for t in texts if (key, t) not in memo))
            if todo:
                for t, v in zip(todo, encoder.encode_queries(todo)):  # e5: "query: " (items are "passage: ")
                    memo[(key, t)] = v
            return np.stack([memo[(key, t)] for t in texts]) if texts else np.zeros((0, encoder.dim), np.float32)

        def encode_fn(texts: list[str]) -> np.ndarray:
            v = encode_texts_once(texts)
            if v.shape[1] < vectors.shape[1]:
                # Item vectors may carry a fused image block after the text block: profile text has none.
                v = np.concatenate([v, np.zeros((v.shape[0], vectors.shape[1] - v.shape[1]), np.float32)], axis=1)
            return v

        t_ids, t_mat = profiles_from_text(cold["user_id"].to_list(), cold["profile"].to_list(), encode_fn)
        if len(t_ids):
            uids, mat = merge_user_vectors((uids, mat), (t_ids, t_mat))
            text_users = len(t_ids)
    stats["profile_text_users"] = text_users
    stats["history_users"] = len(with_history)
    return list(uids), np.asarray(mat, dtype=np.float32), stats

