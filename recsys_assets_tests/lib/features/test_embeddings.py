"""Incremental item embeddings: cache hits, changed texts, fusion with image vectors."""

from __future__ import annotations

import hashlib

import numpy as np
import polars as pl
import pytest
from upath import UPath

from recsys_assets.lib.errors import RecsysError
from recsys_assets.lib.features import embeddings as emb
from recsys_assets.lib.features.embeddings import EmbeddingResult, embed_items, encode_texts
from recsys_assets.lib.features.encoders import Encoder, EncoderConfig, get_encoder, l2_normalize
from recsys_assets.lib.features.text import ItemTextConfig, compose_item_texts, text_key
from recsys_assets.lib.lake import read_parquet


class CountingEncoder(Encoder):
    """A deterministic 'neural' encoder that records what it was asked to encode."""

    name = "counting"
    kind = "sentence-transformer"
    is_neural = True

    def __init__(self, fingerprint: str = "f" * 64, dim: int = 8) -> None:
        super().__init__(EncoderConfig(name="counting"))
        self._fp, self._dim, self.calls = fingerprint, dim, []

    @property
    def fingerprint(self) -> str:
        return self._fp

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def n_params(self) -> int:
        return 0

    def encode(self, texts):
        self.calls.append(list(texts))
        rows = [np.frombuffer(hashlib.sha256(t.encode()).digest()[: self._dim], np.uint8) for t in texts]
        return l2_normalize(np.asarray(rows, np.float32).reshape(len(texts), self._dim) + 1)


def _catalog(n: int, start: int = 0) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "item_id": [f"m{i}" for i in range(start, start + n)],
            "title": [f"Movie {i}" for i in range(start, start + n)],
            "description": [None if i % 4 else f"Plot of movie {i}." for i in range(start, start + n)],
            "categories": [["Drama", "Comedy"][: 1 + i % 2] for i in range(start, start + n)],
            "year": pl.Series([1980 + i % 30 for i in range(start, start + n)], dtype=pl.Int32()),
        }
    )


def test_incremental_counts(tmp_path):
    cache = UPath(tmp_path) / "cache"
    enc = CountingEncoder()
    items = _catalog(20)

    first = embed_items(items, enc, ItemTextConfig(), cache)
    assert isinstance(first, EmbeddingResult)
    assert first.item_ids == items["item_id"].to_list()
    assert first.vectors.shape == (20, 8) and first.vectors.dtype == np.float32
    assert first.stats["texts_total"] == 20
    assert first.stats["texts_encoded"] == 20 and first.stats["cache_hits"] == 0
    assert set(first.stats) >= {"texts_total", "texts_encoded", "cache_hits", "seconds", "texts_per_s",
                                "fingerprint", "encoder", "dim"}
    assert first.stats["fingerprint"] == "f" * 64 and first.stats["encoder"] == "counting"
    assert first.stats["dim"] == 8

    again = embed_items(items, enc, ItemTextConfig(), cache)
    assert again.stats["texts_encoded"] == 0 and again.stats["cache_hits"] == 20
    assert len(enc.calls) == 1  # the encoder was not even called
    np.testing.assert_array_equal(again.vectors, first.vectors)  # cache round trip is exact

    changed = pl.concat([items, _catalog(3, start=100)])
    changed = changed.with_columns(
        pl.when(pl.col("item_id") == "m5").then(pl.lit("Movie 5, director's cut")).otherwise(pl.col("title"))
        .alias("title")
    )
    night3 = embed_items(changed, enc, ItemTextConfig(), cache)
    assert night3.stats["texts_encoded"] == 4 and night3.stats["cache_hits"] == 19
    assert sorted(enc.calls[-1]) == sorted(compose_item_texts(changed.filter(
        pl.col("item_id").is_in(["m5", "m100", "m101", "m102"])
    )))
    # unchanged items keep their vectors, the changed one gets a new one
    row = {iid: i for i, iid in enumerate(night3.item_ids)}
    np.testing.assert_array_equal(night3.vectors[row["m0"]], first.vectors[0])
    assert not np.allclose(night3.vectors[row["m5"]], first.vectors[5])

    folder = cache / f"fingerprint={'f' * 64}"
    parts = sorted(p.name for p in folder.iterdir())
    assert parts == ["part-0.parquet", "part-1.parquet"]  # night 2 wrote nothing
    part = read_parquet(folder / "part-1.parquet")
    assert part.schema == {"text_key": pl.String(), "vector": pl.List(pl.Float32())}
    assert part.height == 4


def test_fingerprint_change_reencodes_everything(tmp_path):
    cache = UPath(tmp_path)
    items = _catalog(10)
    embed_items(items, CountingEncoder("a" * 64), cache_root=cache)
    other = embed_items(items, CountingEncoder("b" * 64), cache_root=cache)
    assert other.stats["texts_encoded"] == 10 and other.stats["cache_hits"] == 0


def test_template_change_is_a_text_change(tmp_path):
    cache = UPath(tmp_path)
    enc = CountingEncoder()
    items = _catalog(6)
    embed_items(items, enc, ItemTextConfig(), cache)
    res = embed_items(items, enc, ItemTextConfig("{title}. {description}"), cache)
    assert res.stats["texts_encoded"] == 6


def test_duplicate_texts_are_encoded_once(tmp_path):
    items = pl.DataFrame({"item_id": ["a", "b", "c"], "title": ["Same", "Same", "Other"]})
    enc = CountingEncoder()
    res = embed_items(items, enc, cache_root=UPath(tmp_path))
    assert res.stats["texts_encoded"] == 2
    np.testing.assert_array_equal(res.vectors[0], res.vectors[1])


def test_no_cache_root_encodes_without_writing(tmp_path):
    enc = CountingEncoder()
    res = embed_items(_catalog(5), enc, cache_root=None)
    assert res.stats["texts_encoded"] == 5
    assert list(tmp_path.iterdir()) == []


def test_compaction_merges_parts(tmp_path, monkeypatch):
    monkeypatch.setattr(emb, "COMPACT_AFTER_PARTS", 3)
    cache = UPath(tmp_path)
    enc = CountingEncoder()
    for night in range(5):
        embed_items(_catalog(2, start=10 * night), enc, cache_root=cache)
    folder = cache / f"fingerprint={'f' * 64}"
    parts = list(folder.iterdir())
    assert len(parts) <= 3
    everything = pl.concat([_catalog(2, start=10 * n) for n in range(5)])
    res = embed_items(everything, enc, cache_root=cache)
    assert res.stats["texts_encoded"] == 0 and res.stats["cache_hits"] == 10


def test_image_vector_fusion():
    enc = CountingEncoder(dim=8)
    items = _catalog(3).with_columns(
        pl.Series("image_vector", [[3.0, 4.0], None, [0.0, 2.0]], dtype=pl.List(pl.Float32()))
    )
    text_only = embed_items(items.drop("image_vector"), enc).vectors
    res = embed_items(items, enc, extra_vectors_weight=0.36)
    assert res.vectors.shape == (3, 10)
    assert res.stats["dim"] == 10 and res.stats["text_dim"] == 8 and res.stats["image_vectors"] == 2
    np.testing.assert_allclose(np.linalg.norm(res.vectors, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(res.vectors[0, :8], text_only[0] * 0.8, atol=1e-6)
    np.testing.assert_allclose(res.vectors[0, 8:], [0.6 * 0.6, 0.6 * 0.8], atol=1e-6)
    np.testing.assert_allclose(res.vectors[1, :8], text_only[1], atol=1e-6)  # no image: text, zero-padded
    assert np.all(res.vectors[1, 8:] == 0)
    with pytest.raises(RecsysError, match="within"):
        embed_items(items, enc, extra_vectors_weight=1.5)
    bad = items.with_columns(pl.Series("image_vector", [[1.0], [1.0, 2.0], None], dtype=pl.List(pl.Float32())))
    with pytest.raises(RecsysError, match="same length"):
        embed_items(bad, enc)


def test_null_image_column_means_text_only():
    items = _catalog(3).with_columns(pl.lit(None, dtype=pl.List(pl.Float32())).alias("image_vector"))
    res = embed_items(items, CountingEncoder())
    assert res.vectors.shape == (3, 8) and res.stats["image_vectors"] == 0


def test_tfidf_and_metadata_refit_every_call(tmp_path):
    items = _catalog(30)
    for name in ("tfidf", "metadata"):
        enc = get_encoder(name, EncoderConfig(tfidf_dim=8))
        for _ in range(2):
            res = embed_items(items, enc, cache_root=UPath(tmp_path))
            assert res.stats["texts_encoded"] == 30 and res.stats["cache_hits"] == 0
            assert res.vectors.shape[0] == 30
            np.testing.assert_allclose(np.linalg.norm(res.vectors, axis=1), 1.0, atol=1e-5)
    assert list(tmp_path.iterdir()) == []  # never cached


def test_encode_texts_for_profiles(tmp_path):
    enc = CountingEncoder()
    v = encode_texts(enc, ["likes sci-fi", "likes romance"], cache_root=UPath(tmp_path))
    assert v.shape == (2, 8)
    encode_texts(enc, ["likes sci-fi"], cache_root=UPath(tmp_path))
    assert len(enc.calls) == 1


@pytest.mark.slow
def test_real_minilm_incremental(tmp_path):
    enc = get_encoder("minilm-l6", EncoderConfig(batch_size=16))
    cache = UPath(tmp_path)
    items = _catalog(12)
    first = embed_items(items, enc, cache_root=cache)
    assert first.stats["texts_encoded"] == 12 and first.stats["dim"] == 384
    second = embed_items(items, enc, cache_root=cache)
    assert second.stats["texts_encoded"] == 0 and second.stats["cache_hits"] == 12
    np.testing.assert_allclose(second.vectors, enc.encode(compose_item_texts(items)), atol=1e-5)
    assert (cache / f"fingerprint={enc.fingerprint}").exists()
    assert text_key(compose_item_texts(items)[0]) in read_parquet(
        cache / f"fingerprint={enc.fingerprint}" / "part-0.parquet"
    )["text_key"].to_list()
