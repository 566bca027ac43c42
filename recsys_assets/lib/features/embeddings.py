"""Item embeddings, encoded incrementally: a night with no new item texts encodes nothing.

Cache layout (neural encoders only), under ``cache_root`` (normally
``Lake.embeddings_dir(encoder) / "cache"``)::

    fingerprint=<encoder fingerprint>/part-<n>.parquet   columns: text_key str, vector list[f32]

``text_key`` is the sha256 of the composed item text (``text.text_key``), so a
changed title/description/template gives a new key and is encoded again, and
a new model (other weights, other precision) gets a new fingerprint folder.
Each call appends the vectors it had to compute as one new part file, written
atomically; parts are merged into one when there are more than
``COMPACT_AFTER_PARTS`` of them. tfidf/metadata encoders depend on the whole
catalog, so they are refitted on every call and never cached.
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from upath import UPath

from recsys_assets.lib.errors import RecsysError
from recsys_assets.lib.features.encoders import Encoder, image_vectors, l2_normalize
from recsys_assets.lib.features.text import ItemTextConfig, compose_item_texts, text_key
from recsys_assets.lib.lake import read_parquet, write_parquet_atomic

log = logging.getLogger(__name__)

COMPACT_AFTER_PARTS = 32
_PART_RE = re.compile(r"^part-(\d+)\.parquet$")


@dataclass
class EmbeddingResult:
    """Vectors of a catalog, row ``i`` belonging to ``item_ids[i]``."""

    item_ids: list[str]
    """Item ids in the order of the input frame."""
    vectors: np.ndarray
    """``(len(item_ids), dim)`` float32, L2-normalized rows (zero rows for items with nothing to encode)."""
    stats: dict[str, Any] = field(default_factory=dict)
    """texts_total, texts_encoded, cache_hits, seconds, texts_per_s, fingerprint, encoder, dim, ..."""


# --- the cache -----------------------------------------------------------------------------


def _parts(folder: UPath) -> list[tuple[int, UPath]]:
    if not folder.exists():
        return []
    out = []
    for child in folder.iterdir():
        m = _PART_RE.match(child.name)
        if m:
            out.append((int(m.group(1)), child))
    return sorted(out, key=lambda t: t[0])


def _vectors_of(frame: pl.DataFrame, dim: int) -> np.ndarray:
    if frame.height == 0:
        return np.zeros((0, dim), dtype=np.float32)
    flat = frame["vector"].explode().to_numpy().astype(np.float32, copy=False)
    return flat.reshape(frame.height, -1)


def _frame_of(keys: list[str], vectors: np.ndarray) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "text_key": pl.Series("text_key", keys, dtype=pl.String()),
            "vector": pl.Series("vector", np.ascontiguousarray(vectors, dtype=np.float32)).cast(pl.List(pl.Float32())),
        }
    )


def _read_cached(folder: UPath, wanted: set[str]) -> tuple[list[str], list[np.ndarray]]:
    keys: list[str] = []
    mats: list[np.ndarray] = []
    seen: set[str] = set()
    for _, part in _parts(folder):
        frame = read_parquet(part)
        frame = frame.filter(pl.col("text_key").is_in(list(wanted - seen)))
        if frame.height == 0:
            continue
        frame = frame.unique(subset="text_key", keep="first", maintain_order=True)
        keys.extend(frame["text_key"].to_list())
        seen.update(frame["text_key"].to_list())
        mats.append(_vectors_of(frame, 0))
        if len(seen) == len(wanted):
            break
    return keys, mats


def _append_part(folder: UPath, keys: list[str], vectors: np.ndarray) -> None:
    existing = _parts(folder)
    n = existing[-1][0] + 1 if existing else 0
    write_parquet_atomic(_frame_of(keys, vectors), folder / f"part-{n}.parquet")
    if len(existing) + 1 > COMPACT_AFTER_PARTS:
        compact_cache(folder)


def compact_cache(folder: UPath) -> int:
    """Merge a fingerprint folder's part files into one (new) part; returns the rows kept.

    The merged part is written before the old ones are deleted, so a reader
    in between sees duplicates (ignored), never a gap.
    """
    parts = _parts(folder)
    if len(parts) <= 1:
        return sum(read_parquet(p).height for _, p in parts)
    merged = pl.concat([read_parquet(p) for _, p in parts], how="vertical")
    merged = merged.unique(subset="text_key", keep="first", maintain_order=True)
    write_parquet_atomic(merged, folder / f"part-{parts[-1][0] + 1}.parquet")
    for _, p in parts:
        p.unlink()
    return merged.height


PROGRESS_MIN_TEXTS = 2048
"""Encodes of at least this many texts (a large catalogue) show progress, in chunks of this size."""


def _encode_with_progress(encoder: Encoder, texts: list[str]) -> np.ndarray:
    """``encoder.encode(texts)``; a large batch goes in chunks with a progress bar (rate, ETA) or log lines."""
    if not texts:
        return np.zeros((0, encoder.dim), np.float32)
    if len(texts) < PROGRESS_MIN_TEXTS:
        return encoder.encode(texts)
    from recsys_assets.lib.progress import progress

    chunks = [texts[i:i + PROGRESS_MIN_TEXTS] for i in range(0, len(texts), PROGRESS_MIN_TEXTS)]
    desc = f"encoding {len(texts):,} texts with {encoder.name}"
    return np.concatenate([encoder.encode(c) for c in progress(chunks, desc=desc, unit="chunk")], axis=0)


def _cached_encode(encoder: Encoder, texts: list[str], cache_root: UPath | None) -> tuple[np.ndarray, int, int]:
    """Vectors of ``texts`` (row per text); returns (vectors, texts encoded, rows served from cache).

    Identical texts are encoded once. Without ``cache_root`` (or for a
    non-neural encoder) every distinct text is encoded.
    """
    keys = [text_key(t) for t in texts]
    unique: dict[str, int] = {}
    for i, k in enumerate(keys):
        unique.setdefault(k, i)

    cached: dict[str, int] = {}
    mats: list[np.ndarray] = []
    if cache_root is not None and encoder.is_neural:
        folder = cache_root / f"fingerprint={encoder.fingerprint}"
        hit_keys, mats = _read_cached(folder, set(unique))
        cached = {k: i for i, k in enumerate(hit_keys)}
    todo = [k for k in unique if k not in cached]
    fresh = _encode_with_progress(encoder, [texts[unique[k]] for k in todo])
    if todo and cache_root is not None and encoder.is_neural:
        _append_part(cache_root / f"fingerprint={encoder.fingerprint}", todo, fresh)

    table = np.concatenate(mats + [fresh], axis=0) if mats else fresh
    if table.shape[0] and table.shape[1] != encoder.dim:
        raise RecsysError(
            f"embedding cache under {cache_root} holds {table.shape[1]}-d vectors but {encoder.name} makes "
            f"{encoder.dim}-d ones: delete the folder fingerprint={encoder.fingerprint}"
        )
    row_of = dict(cached)
    offset = len(cached)
    for j, k in enumerate(todo):
        row_of[k] = offset + j
    index = np.fromiter((row_of[k] for k in keys), dtype=np.int64, count=len(keys))
    vectors = table[index] if len(keys) else np.zeros((0, encoder.dim), np.float32)
    hits = sum(1 for k in keys if k in cached)
    return vectors, len(todo), hits


# --- public API ----------------------------------------------------------------------------


def encode_texts(encoder: Encoder, texts: list[str], cache_root: UPath | None = None) -> np.ndarray:
    """Vectors of free texts (user profiles), L2-normalized; cached like items when ``cache_root`` is given."""
    vectors, _, _ = _cached_encode(encoder, list(texts), cache_root)
    return l2_normalize(vectors)


def fuse_image_vectors(text_vectors: np.ndarray, image_vectors: np.ndarray, weight: float) -> np.ndarray:
    """``concat(text * sqrt(1-w), image * sqrt(w))``, rows renormalized to unit length.

    Both inputs are unit rows, so an item with both keeps a squared weight of
    ``1-w`` on text and ``w`` on its image; an item without an image (zero
    image row) ends up as its text vector padded with zeros. The dot product
    of two fused rows is ``(1-w) cos_text + w cos_image`` when both have images.
    """
    t = l2_normalize(text_vectors) * np.float32(math.sqrt(1.0 - weight))
    i = l2_normalize(image_vectors) * np.float32(math.sqrt(weight))
    return l2_normalize(np.concatenate([t, i], axis=1))


def embed_items(
    items: pl.DataFrame,
    encoder: Encoder,
    text_config: ItemTextConfig | None = None,
    cache_root: UPath | None = None,
    extra_vectors_weight: float = 0.5,
) -> EmbeddingResult:
    """Embed every row of a catalog frame (``ITEM_SCHEMA``), reusing cached vectors.

    Neural encoders: only texts whose (fingerprint, text_key) is not under
    ``cache_root`` are encoded; the new vectors are appended as one part file.
    tfidf/metadata: refitted on ``items`` and all rows encoded.

    Multimodal fusion: when some items carry a non-null ``image_vector``
    (precomputed, any fixed length), the output row is
    ``concat(text_vec * sqrt(1-w), image_vec/|image_vec| * sqrt(w))``
    renormalized, with ``w = extra_vectors_weight``; items without one get a
    zero image block (so their vector is their text vector, zero-padded).
    ``stats["text_dim"]`` says where the text block ends (user profile vectors
    from ``encode_texts`` are compared against ``vectors[:, :text_dim]`` or
    zero-padded to ``dim``).

    Stats: texts_total (rows), texts_encoded (distinct texts run through the
    encoder now), cache_hits (rows served from the cache), seconds (whole
    call), texts_per_s (texts_total / seconds), encode_seconds, fingerprint,
    encoder, dim, text_dim, image_vectors (rows with an image vector), items_without_vector
    (the ``item-vector`` encoder: rows left zero because the item has no ``image_vector``).

    The ``item-vector`` encoder (``encoder.is_precomputed``) IS the image vectors: nothing is
    fused onto them, ``text_dim`` is their length.
    """
    if not 0.0 <= extra_vectors_weight <= 1.0:
        raise RecsysError(f"extra_vectors_weight={extra_vectors_weight}: must be within [0, 1]")
    if "item_id" not in items.columns:
        raise RecsysError(f"items frame has no item_id column (columns: {items.columns})")
    text_config = text_config or ItemTextConfig()
    started = time.perf_counter()
    item_ids = items["item_id"].cast(pl.String()).to_list()

    if encoder.is_neural:
        texts = compose_item_texts(items, text_config)
        t0 = time.perf_counter()
        vectors, n_encoded, hits = _cached_encode(encoder, texts, cache_root)
        encode_seconds = time.perf_counter() - t0
    else:
        t0 = time.perf_counter()
        encoder.fit_items(items, text_config)
        vectors = encoder.encode_items(items, text_config)
        encode_seconds = time.perf_counter() - t0
        n_encoded, hits = items.height, 0

    text_dim = int(vectors.shape[1]) if vectors.ndim == 2 else encoder.dim
    images = image_vectors(items)
    n_images = 0
    if images is not None:
        n_images = int((np.abs(images).sum(axis=1) > 0).sum())
        if not encoder.is_precomputed:  # its vectors already are the image vectors: nothing to fuse
            vectors = fuse_image_vectors(vectors, images, extra_vectors_weight)
    vectors = l2_normalize(vectors)
    if encoder.is_precomputed and n_images < items.height:
        log.warning(
            "%s: %d of %d items have no image_vector: zero vectors (no content signal for them)",
            encoder.name, items.height - n_images, items.height,
        )

    seconds = time.perf_counter() - started
    stats = {
        "texts_total": items.height,
        "texts_encoded": int(n_encoded),
        "cache_hits": int(hits),
        "seconds": round(seconds, 4),
        "texts_per_s": round(items.height / seconds, 1) if seconds > 0 else None,
        "encode_seconds": round(encode_seconds, 4),
        "fingerprint": encoder.fingerprint,
        "encoder": encoder.name,
        "dim": int(vectors.shape[1]),
        "text_dim": text_dim,
        "image_vectors": n_images,
        "items_without_vector": items.height - n_images if encoder.is_precomputed else 0,
    }
    return EmbeddingResult(item_ids=item_ids, vectors=vectors, stats=stats)
