"""What an encoder costs on this machine, measured once per model version.

A neural encoder's first night is the measurement: when ``item_embeddings`` encodes every
text of the catalogue with an empty cache, :func:`record_cold_encode` stores that run's figures.
Otherwise the measurement encodes the whole catalogue available on a day through
:func:`embeddings.embed_items` into the lake's embedding cache (so the nightly
``item_embeddings`` asset then finds every text there and encodes nothing
twice). When the cache already held the texts (a lake a demo ran on), the
catalogue is encoded once more without the cache, so that the figure is
always a cold encode (on a 50,000-item catalogue, minutes of CPU: the first night
records it instead, so this only happens on lakes made before it did). The result is stored as JSON under
``<lake>/cache/study/cost/<encoder>/<key>.json`` where ``key`` hashes the
encoder fingerprint and the item-text config: later nights and reruns read it
back (the study's tables are then byte-identical), a new model version
measures again. tfidf/metadata are refitted on every night's catalogue (their
fingerprint is the fit), so they are measured every night (milliseconds).

Timings are wall-clock seconds of one process on a shared machine: compare
encoders measured in the same run, as ratios.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass
from datetime import date

import polars as pl

from recsys_assets.lib.confighash import config_hash
from recsys_assets.lib.features.embeddings import EmbeddingResult, embed_items
from recsys_assets.lib.features.encoders import encoder_is_neural, encoder_spec, variant_inputs
from recsys_assets.lib.features.nightly import FeatureConfig, encoder_inputs
from recsys_assets.lib.lake import Lake, write_bytes_atomic


@dataclass(frozen=True)
class EncoderCost:
    """One encoder's size and speed on this machine."""

    encoder: str
    """Encoder name (registry name or text variant)."""
    is_lm: bool
    """A language model (registry spec), else a lexical/metadata baseline."""
    params: int
    """Parameters (fitted numbers for tfidf/metadata)."""
    dim: int
    """Length of an item vector (text block + image block when fused)."""
    texts: int
    """Catalogue texts encoded for the measurement."""
    seconds: float
    """Wall seconds to encode (tfidf/metadata: fit + encode) those texts, cold."""
    texts_per_s: float
    """texts / seconds."""
    vector_bytes: int
    """Bytes of the catalogue's float32 vectors (texts x dim x 4)."""
    fingerprint: str
    """Encoder fingerprint the measurement belongs to."""
    precision: str
    """fp32 or bf16 (neural encoders)."""
    device: str
    """Where it ran (cpu / cuda:0)."""
    machine: str
    """CPU model and core count of the machine that measured it."""
    measured_on: str
    """Snapshot day whose catalogue was encoded (ISO date)."""


def machine_words() -> str:
    """``<cpu model>, <n> cores`` of this machine (from /proc/cpuinfo where readable)."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"


def measure_encoder_cost(lake: Lake, items: pl.DataFrame, day: date, encoder_name: str, cfg: FeatureConfig) -> EncoderCost:
    """The cost of ``encoder_name`` on the catalogue available on ``day`` (stored measurement when there is one)."""
    encoder, text_config, use_image, catalogue = encoder_inputs(lake, items, day, encoder_name, cfg)
    neural = encoder.is_neural
    # Neural encoders: the fingerprint is known before encoding, so a stored measurement is reused.
    key = None
    if neural:
        # Once per model version and text config: the catalogue grows by a few items a night, and a
        # nightly re-measurement would encode the whole catalogue a second time every night.
        key = neural_cost_key(encoder_name, encoder.fingerprint, cfg)
        path = lake.study_cost_file(encoder_name, key)
        if path.exists():
            return EncoderCost(**json.loads(path.read_text()))
    result = embed_items(catalogue, encoder, text_config, cache_root=lake.embeddings_dir(encoder_name) if neural else None, extra_vectors_weight=cfg.image_weight)
    seconds, texts = float(result.stats["encode_seconds"]), int(result.stats["texts_encoded"])
    if neural and result.stats["cache_hits"]:
        # Texts were already cached (a lake a demo ran on): time a cold encode of the same texts.
        cold = embed_items(catalogue, encoder, text_config, cache_root=None, extra_vectors_weight=cfg.image_weight)
        seconds, texts = float(cold.stats["encode_seconds"]), int(cold.stats["texts_encoded"])
    if not neural:  # fitted on the catalogue: the fingerprint exists only now
        key = config_hash({"fp": encoder.fingerprint, "text": text_config.config_hash(), "n": catalogue.height})
        path = lake.study_cost_file(encoder_name, key)
        if path.exists():
            return EncoderCost(**json.loads(path.read_text()))
    dim = int(result.vectors.shape[1])
    params = encoder_spec(encoder_name).params or encoder.n_params
    described = encoder.describe()
    model = getattr(encoder, "model", None)
    cost = EncoderCost(
        encoder=encoder_name,
        is_lm=encoder_spec(encoder_name).is_lm,
        params=int(params),
        dim=dim,
        texts=texts,
        seconds=round(seconds, 3),
        texts_per_s=round(texts / seconds, 1) if seconds > 0 else 0.0,
        vector_bytes=int(result.vectors.shape[0]) * dim * 4,
        fingerprint=encoder.fingerprint,
        precision=str(described["precision"]),
        device=str(getattr(model, "device", "cpu")),
        machine=machine_words(),
        measured_on=day.isoformat(),
    )
    write_bytes_atomic(lake.study_cost_file(encoder_name, key), json.dumps(asdict(cost), indent=1, sort_keys=True).encode())
    return cost


def neural_cost_key(encoder_name: str, fingerprint: str, cfg: FeatureConfig) -> str:
    """Key of a neural encoder's stored measurement: model version, item-text template, image use, precision."""
    text_config, use_image = variant_inputs(encoder_name, cfg.text)
    return config_hash({"fp": fingerprint, "text": text_config.config_hash(), "image": use_image, "precision": cfg.encoder.precision})


def record_cold_encode(lake: Lake, day: date, encoder_name: str, result: EmbeddingResult, cfg: FeatureConfig) -> EncoderCost | None:
    """Store ``item_embeddings``' run as the encoder's cost when it was a cold encode of the whole catalogue
    (a neural encoder, every distinct text encoded: no cache hit), unless a measurement is stored already; returns
    what it stored (None otherwise). The study then never encodes the catalogue a second time to time it."""
    s = result.stats
    if not encoder_is_neural(encoder_name) or s["cache_hits"] or not s["texts_encoded"]:
        return None
    path = lake.study_cost_file(encoder_name, neural_cost_key(encoder_name, str(s["fingerprint"]), cfg))
    if path.exists():
        return None
    seconds, texts, dim = float(s["encode_seconds"]), int(s["texts_encoded"]), int(result.vectors.shape[1])
    cost = EncoderCost(
        encoder=encoder_name,
        is_lm=encoder_spec(encoder_name).is_lm,
        params=int(encoder_spec(encoder_name).params or s["params"]),
        dim=dim,
        texts=texts,
        seconds=round(seconds, 3),
        texts_per_s=round(texts / seconds, 1) if seconds > 0 else 0.0,
        vector_bytes=int(result.vectors.shape[0]) * dim * 4,
        fingerprint=str(s["fingerprint"]),
        precision=str(s["precision"]),
        device=str(s["device"]),
        machine=machine_words(),
        measured_on=day.isoformat(),
    )
    write_bytes_atomic(path, json.dumps(asdict(cost), indent=1, sort_keys=True).encode())
    return cost
