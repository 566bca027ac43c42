"""A synthetic world whose items carry a precomputed image vector with a controllable topic signal,
and the fusion ablation's plan on it (the image row gets an encoder of its own inputs)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from recsys_assets.lib.ingest.catalog import build_items_counted
from recsys_assets.lib.ingest.config import IngestConfig
from recsys_assets.lib.ingest.synthetic import SyntheticConfig, SyntheticConfigError, build_synthetic_world, generate_synthetic_world
from recsys_assets.lib.lake import Lake
from recsys_assets.lib.features.text import ItemTextConfig
from recsys_assets.lib.study.plan import fusion_variants

BASE = dict(n_users=300, n_items=400, n_events=10_000, n_topics=8, n_days=20, seed=5)


def _cosines(world) -> tuple[float, float]:
    """Mean cosine of image vectors of same-topic and of different-topic item pairs."""
    v = np.array(world.items["image_vector"].to_list(), dtype=np.float64)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    topic = world.item_truth["topic"].to_numpy()
    cos = v @ v.T
    same = topic[:, None] == topic[None, :]
    off = ~np.eye(len(topic), dtype=bool)
    return float(cos[same & off].mean()), float(cos[~same].mean())


@pytest.mark.parametrize("signal", [0.0, 0.3, 0.8])
def test_image_signal_is_the_same_topic_cosine(signal):
    world = build_synthetic_world(SyntheticConfig(**BASE, image_dim=64, image_signal=signal))
    assert world.items["image_vector"].list.len().unique().to_list() == [64]
    same, other = _cosines(world)
    assert abs(same - signal) < 0.06 and abs(other) < 0.03


def test_images_leave_the_rest_of_the_world_unchanged(tmp_path):
    plain, imaged = Lake.at(tmp_path / "a"), Lake.at(tmp_path / "b")
    generate_synthetic_world(plain, SyntheticConfig(**BASE))
    generate_synthetic_world(imaged, SyntheticConfig(**BASE, image_dim=16, image_signal=0.5))
    ev = ("events", "synthetic.parquet")
    assert plain.landing_dir(ev[0]).joinpath(ev[1]).read_bytes() == imaged.landing_dir(ev[0]).joinpath(ev[1]).read_bytes()
    a = pl.read_ndjson(plain.landing_dir("items").joinpath("synthetic.items.jsonl").read_bytes())
    b = pl.read_ndjson(imaged.landing_dir("items").joinpath("synthetic.items.jsonl").read_bytes())
    assert "image_vector" not in a.columns and a.equals(b.drop("image_vector"))
    with pytest.raises(SyntheticConfigError, match="image_signal"):
        SyntheticConfig(**BASE, image_dim=4, image_signal=1.5)


def test_fusion_plan_gives_the_image_row_its_own_inputs(tmp_path):
    """On an imaged catalogue the default encoder fuses the image; ``desc`` (same text, no image) is a variant of its own."""
    lake = Lake.at(tmp_path)
    generate_synthetic_world(lake, SyntheticConfig(**BASE, image_dim=16, image_signal=0.5))
    items = build_items_counted(lake, pl.DataFrame(schema={"item_id": pl.String, "first_day": pl.Date}), IngestConfig()).frame
    assert items["image_vector"].drop_nulls().len() == BASE["n_items"]
    rows = {f.variant: f for f in fusion_variants(items, "minilm-l6", ("title", "meta", "desc", "image"), ItemTextConfig())}
    assert rows["title"].encoder == "minilm-l6@title" and rows["meta"].encoder == "minilm-l6@meta"
    assert rows["desc"].encoder == "minilm-l6@desc"
    assert rows["image"].encoder == "minilm-l6" and "same inputs" in rows["image"].note
    # Without images the image row is not measurable and desc is the default encoder's inputs.
    plain = {f.variant: f for f in fusion_variants(items.drop("image_vector"), "minilm-l6", ("desc", "image"), ItemTextConfig())}
    assert plain["desc"].encoder == "minilm-l6" and plain["image"].encoder is None
