"""The ``item-vector`` encoder: the catalogue's precomputed image_vector alone, through the feature stage."""

from __future__ import annotations

import logging
from datetime import date, datetime, timezone

import numpy as np
import polars as pl
import pytest

from recsys_assets.lib.errors import ModelUnavailableError, RecsysError
from recsys_assets.lib.features.embeddings import embed_items
from recsys_assets.lib.features.encoders import encoder_is_neural, encoder_spec, get_encoder, l2_normalize
from recsys_assets.lib.features.nightly import FeatureConfig, build_view_profiles, compute_item_embeddings
from recsys_assets.lib.lake import Lake
from recsys_assets.lib.schema import EVENT_SCHEMA
from recsys_assets.lib.snapshot import ProtocolConfig, build_view

DAY = date(2026, 2, 10)
RAW = [[3.0, 4.0, 0.0], None, [0.0, 0.0, 2.0], [1.0, 1.0, 1.0]]


def _items(vectors=RAW) -> pl.DataFrame:
    n = len(vectors)
    return pl.DataFrame(
        {
            "item_id": [f"i{j}" for j in range(n)],
            "title": [f"Film {j}" for j in range(n)],
            "categories": [["Drama"]] * n,
            "created_at": pl.Series([datetime(2026, 1, 1, tzinfo=timezone.utc)] * n, dtype=pl.Datetime("us", "UTC")),
            "first_seen_day": pl.Series([None] * n, dtype=pl.Date),
            "image_vector": pl.Series(vectors, dtype=pl.List(pl.Float32())),
        }
    )


def test_vectors_are_the_image_vectors_alone_and_missing_ones_are_zero_and_counted(caplog):
    enc = get_encoder("item-vector")
    with caplog.at_level(logging.WARNING):
        res = embed_items(_items(), enc)
    want = l2_normalize(np.asarray([r or [0.0, 0.0, 0.0] for r in RAW], np.float32))
    np.testing.assert_allclose(res.vectors, want, atol=1e-7)  # nothing fused onto them, no text block
    assert not res.vectors[1].any()  # no image_vector -> zero row (no direction)
    assert res.stats["dim"] == res.stats["text_dim"] == 3
    assert res.stats["image_vectors"] == 3 and res.stats["items_without_vector"] == 1
    assert "1 of 4 items have no image_vector" in caplog.text
    # A text encoder on the same catalogue still fuses the image block (the encoder does not change fusion).
    fused = embed_items(_items(), get_encoder("metadata"))
    assert fused.stats["dim"] > fused.stats["text_dim"] and fused.stats["items_without_vector"] == 0


def test_fingerprint_follows_the_vectors():
    a = get_encoder("item-vector").fit_items(_items()).fingerprint
    b = get_encoder("item-vector").fit_items(_items([[3.0, 4.0, 0.5], *RAW[1:]])).fingerprint
    assert a == get_encoder("item-vector").fit_items(_items()).fingerprint and a != b


def test_no_vector_anywhere_is_an_unavailable_encoder_not_zeros():
    with pytest.raises(ModelUnavailableError, match="image_vector"):
        embed_items(_items().drop("image_vector"), get_encoder("item-vector"))
    with pytest.raises(ModelUnavailableError, match="image_vector"):
        embed_items(_items([None] * 4), get_encoder("item-vector"))


def test_it_is_no_language_model_and_has_no_text_route():
    spec = encoder_spec("item-vector")
    assert not spec.is_lm and not encoder_is_neural("item-vector") and spec.family == "precomputed"
    assert not spec.encodes_text and not encoder_spec("metadata").encodes_text and encoder_spec("tfidf").encodes_text
    assert "item-vector" not in FeatureConfig(encoders=("minilm-l6", "item-vector")).lm_encoders
    enc = get_encoder("item-vector").fit_items(_items())
    with pytest.raises(RecsysError, match="no text model"):
        enc.encode_queries(["I like thrillers"])


def test_feature_stage_profiles_history_users_and_skips_profile_text_users(tmp_path):
    """Through the lake's feature functions: history users get EMA profiles in the image space; a profile-text user
    without history gets no vector (counted), where a text encoder would encode the text."""
    lake = Lake.at(tmp_path / "lake")
    items = _items()
    cfg = FeatureConfig(encoders=("item-vector",))
    res = compute_item_embeddings(lake, items, DAY, "item-vector", cfg)
    assert res.stats["params"] == 0 and res.vectors.shape == (4, 3)
    ts = [datetime(2026, 2, d, 12, tzinfo=timezone.utc) for d in (1, 2, 3)]
    events = pl.DataFrame(
        {"event_id": ["e0", "e1", "e2"], "user_id": ["a", "a", "b"], "item_id": ["i0", "i2", "i3"], "event_type": ["click"] * 3,
         "value": [1.0] * 3, "ts": ts},
        schema=EVENT_SCHEMA,
    )
    users = pl.DataFrame({"user_id": ["a", "b", "c"], "profile": [None, "likes i3-ish films", "thrillers, please"]})
    view = build_view(events, items, DAY, "temporal", "serve", ProtocolConfig(protocols=("temporal",)))
    for name, text_users, skipped in (("item-vector", 0, 1), ("metadata@meta", 0, 1), ("tfidf", 1, 0)):
        r = res if name == "item-vector" else compute_item_embeddings(lake, items, DAY, name, cfg)
        uids, mat, stats = build_view_profiles(view, r.item_ids, r.vectors, users, name, cfg, lake, items)
        assert (stats["profile_text_users"], stats["profile_text_skipped"]) == (text_users, skipped), name
        assert set(uids) == ({"a", "b", "c"} if text_users else {"a", "b"}), name
    uids, mat, _ = build_view_profiles(view, res.item_ids, res.vectors, users, "item-vector", cfg, lake, items)
    b = mat[uids.index("b")]
    np.testing.assert_allclose(b, res.vectors[3], atol=1e-6)  # one event: the item's own direction


def test_views_sharing_a_memo_fit_a_lexical_encoder_once(tmp_path, monkeypatch):
    """user_profiles' views share ``text_memo``: tfidf is fitted on the catalogue once, and every view's profiles are
    the bytes of a view fitted on its own."""
    from recsys_assets.lib.features.encoders import TfidfEncoder

    lake = Lake.at(tmp_path / "lake")
    items = _items()
    cfg = FeatureConfig(encoders=("tfidf",))
    res = compute_item_embeddings(lake, items, DAY, "tfidf", cfg)
    users = pl.DataFrame({"user_id": ["b", "c", "d"], "profile": ["likes i3-ish films", "thrillers, please", "dramas"]})
    views = [build_view(pl.DataFrame(schema=EVENT_SCHEMA), items, DAY, p, s, ProtocolConfig(protocols=("temporal", "item_holdout"))) for p in ("temporal", "item_holdout") for s in ("train", "serve")]
    alone = [build_view_profiles(v, res.item_ids, res.vectors, users, "tfidf", cfg, lake, items) for v in views]
    fits = []
    real_fit = TfidfEncoder.fit_items
    monkeypatch.setattr(TfidfEncoder, "fit_items", lambda self, *a, **k: fits.append(1) or real_fit(self, *a, **k))
    memo: dict = {}
    shared = [build_view_profiles(v, res.item_ids, res.vectors, users, "tfidf", cfg, lake, items, memo) for v in views]
    assert len(fits) == 1
    for (u1, m1, s1), (u2, m2, s2) in zip(alone, shared):
        assert u1 == u2 and m1.tobytes() == m2.tobytes() and s1 == s2 and s1["profile_text_users"] == 3
