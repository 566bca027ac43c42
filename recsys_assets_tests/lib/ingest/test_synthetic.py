"""Synthetic world: determinism, arrival constraints, text signal knob, landing format, speed."""

from __future__ import annotations

import itertools
import re
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recsys_assets.lib.ingest.synthetic import (
    TOPICS,
    SyntheticConfig,
    SyntheticConfigError,
    build_synthetic_world,
    generate_synthetic_world,
)
from recsys_assets.lib.lake import Lake, read_parquet

WORD_TOPIC = {w: t for t, (_, words) in TOPICS.items() for w in words}
SMALL = SyntheticConfig(n_users=300, n_items=200, n_events=10_000, n_topics=10, n_days=20, seed=7)


def _files(lake: Lake) -> list:
    return [
        lake.landing_dir("events").joinpath("synthetic.parquet"),
        lake.landing_dir("items").joinpath("synthetic.items.jsonl"),
        lake.landing_dir("users").joinpath("synthetic.users.jsonl"),
        lake.cache.joinpath("synthetic_truth", "items.parquet"),
        lake.cache.joinpath("synthetic_truth", "users.parquet"),
    ]


def _topic_words(text: str) -> list[str]:
    return [WORD_TOPIC[w] for w in re.findall(r"[a-z]+", text.lower()) if w in WORD_TOPIC]


def _own_topic_share(world, signal_cols=("title", "description")) -> float:
    items = world.items.join(world.item_truth, on="item_id")
    hits = total = 0
    for row in items.iter_rows(named=True):
        topics = _topic_words(" ".join(row[c] for c in signal_cols))
        hits += sum(t == row["topic"] for t in topics)
        total += len(topics)
    return hits / total


def test_synonym_sets_are_disjoint_real_words():
    assert len(TOPICS) >= 10
    seen: dict[str, str] = {}
    for topic, (category, words) in TOPICS.items():
        assert len(words) >= 20 and len(set(words)) == len(words), topic
        assert category and category != topic  # coarse: several topics share one
        for w in words:
            assert re.fullmatch(r"[a-z]+", w), w
            assert w not in seen, f"{w} in {topic} and {seen.get(w)}"
            seen[w] = topic
    assert len({c for c, _ in TOPICS.values()}) < len(TOPICS)


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a, b, c = Lake.at(tmp_path / "a"), Lake.at(tmp_path / "b"), Lake.at(tmp_path / "c")
    generate_synthetic_world(a, SMALL)
    generate_synthetic_world(b, SMALL)
    generate_synthetic_world(c, SyntheticConfig(**{**SMALL.__dict__, "seed": 8}))
    for fa, fb, fc in zip(_files(a), _files(b), _files(c)):
        assert fa.read_bytes() == fb.read_bytes(), fa.name
        assert fa.read_bytes() != fc.read_bytes(), fa.name
    assert SMALL.config_hash() == SyntheticConfig(**SMALL.__dict__).config_hash()


def test_landing_files_have_the_landing_format(tmp_path):
    lake = Lake.at(tmp_path)
    out = generate_synthetic_world(lake, SMALL)
    events = read_parquet(_files(lake)[0])
    items = pl.read_ndjson(Path(_files(lake)[1].path))
    users = pl.read_ndjson(Path(_files(lake)[2].path))
    assert out["events"] == events.height == 10_000
    assert out["items"] == items.height == 200 and out["users"] == users.height == 300
    assert {"user_id", "item_id", "event_type", "ts"} <= set(events.columns)
    assert events.schema["ts"] == pl.Int64 and events.schema["user_id"] == pl.String
    assert set(events["event_type"].unique()) == {"view", "click", "cart", "purchase"}
    assert events["ts"].is_sorted()
    assert set(items.columns) == {"item_id", "title", "description", "categories", "created_at"}
    datetime.fromisoformat(items["created_at"][0])  # ISO-8601 with offset
    assert items["created_at"].str.ends_with("+00:00").all()
    assert items["categories"].list.len().eq(1).all()
    assert events.join(items, on="item_id", how="anti").height == 0
    assert events.join(users, on="user_id", how="anti").height == 0
    # the returned truth is the written truth
    truth = read_parquet(_files(lake)[3])
    assert out["item_truth"].equals(truth.select("item_id", "topic"))
    assert set(truth["topic"]) <= set(list(TOPICS)[: SMALL.n_topics])


def test_no_event_before_item_creation_or_user_arrival(tmp_path):
    lake = Lake.at(tmp_path)
    cfg = SyntheticConfig(n_users=400, n_items=300, n_events=20_000, n_days=30, initial_item_fraction=0.3, initial_user_fraction=0.3, seed=3)
    generate_synthetic_world(lake, cfg)
    events = read_parquet(_files(lake)[0])
    items = read_parquet(_files(lake)[3])
    users = read_parquet(_files(lake)[4])
    joined = events.join(items, on="item_id").join(users, on="user_id")
    assert joined.height == events.height
    assert (joined["ts"] >= joined["created_ts"]).all()
    assert (joined["ts"] >= joined["arrival_ts"]).all()
    # ... and the constraint is not vacuous: many items and users arrive during the window
    t0 = int(datetime.fromisoformat(cfg.start_day + "T00:00:00+00:00").timestamp())
    new_items = items.filter(pl.col("created_ts") >= t0)["item_id"]
    new_users = users.filter(pl.col("arrival_ts") > t0)["user_id"]
    assert events.filter(pl.col("item_id").is_in(new_items.implode())).height > 1000
    assert events.filter(pl.col("user_id").is_in(new_users.implode())).height > 1000
    assert events["ts"].max() < t0 + cfg.n_days * 86_400


def test_choices_follow_user_topics(tmp_path):
    lake = Lake.at(tmp_path)
    generate_synthetic_world(lake, SMALL)
    events = read_parquet(_files(lake)[0])
    items = read_parquet(_files(lake)[3])
    users = read_parquet(_files(lake)[4])
    joined = events.join(items, on="item_id").join(users, on="user_id")
    share = (joined["topic"] == joined["main_topic"]).mean()
    assert share > 0.4  # chance would be ~1/10


def test_text_signal_controls_word_topic_association():
    strong = build_synthetic_world(SyntheticConfig(**{**SMALL.__dict__, "text_signal": 1.0}))
    none = build_synthetic_world(SyntheticConfig(**{**SMALL.__dict__, "text_signal": 0.0}))
    assert _own_topic_share(strong) == 1.0
    assert _own_topic_share(none) < 0.2  # ~1/n_topics: independent of the topic
    # categories follow the same knob
    cat = {t: c for t, (c, _) in TOPICS.items()}
    s = strong.items.join(strong.item_truth, on="item_id")
    assert all(r["categories"] == [cat[r["topic"]]] for r in s.iter_rows(named=True))
    # user profiles too
    u = strong.users.join(strong.user_truth, on="user_id").drop_nulls("profile")
    assert all(set(_topic_words(p)) == {t} for p, t in u.select("profile", "main_topic").iter_rows())


def test_same_topic_items_usually_share_no_words():
    world = build_synthetic_world(SyntheticConfig(**{**SMALL.__dict__, "text_signal": 1.0}))
    items = world.items.join(world.item_truth, on="item_id")
    disjoint = total = 0
    for _, group in items.group_by("topic"):
        bags = [set(re.findall(r"[a-z]+", f"{a} {b}".lower())) & set(WORD_TOPIC) for a, b in group.select("title", "description").iter_rows()]
        for x, y in itertools.combinations(bags[:25], 2):
            disjoint += not (x & y)
            total += 1
    assert disjoint / total > 0.5


def test_profile_fraction():
    world = build_synthetic_world(SyntheticConfig(**{**SMALL.__dict__, "n_users": 2000, "profile_fraction": 0.25}))
    share = world.users["profile"].is_not_null().mean()
    assert 0.2 < share < 0.3


def test_event_type_ratios_are_plausible(tmp_path):
    out = generate_synthetic_world(Lake.at(tmp_path), SMALL)
    c = out["event_types"]
    assert sum(c.values()) == 10_000
    assert c["view"] > c["click"] > c["cart"] > c["purchase"] > 0
    assert 0.6 < c["view"] / 10_000 < 0.85


def test_ten_thousand_events_is_fast(tmp_path):
    t = time.perf_counter()
    out = generate_synthetic_world(Lake.at(tmp_path), SyntheticConfig(n_events=10_000, seed=1))
    assert out["events"] == 10_000
    assert time.perf_counter() - t < 5.0


def test_catalog_does_not_depend_on_event_count():
    a = build_synthetic_world(SMALL)
    b = build_synthetic_world(SyntheticConfig(**{**SMALL.__dict__, "n_events": 50_000}))
    assert a.items.equals(b.items) and a.users.equals(b.users)


@pytest.mark.parametrize(
    "field,value",
    [("n_events", 5), ("n_events", 20_000_000), ("n_topics", 1), ("n_topics", len(TOPICS) + 1), ("text_signal", 1.5), ("start_day", "Jan 1"), ("profile_fraction", -0.1)],
)
def test_bad_config_is_rejected(field, value):
    with pytest.raises(SyntheticConfigError, match=field):
        SyntheticConfig(**{field: value})


def test_popularity_is_heavy_tailed(tmp_path):
    lake = Lake.at(tmp_path)
    generate_synthetic_world(lake, SyntheticConfig(n_items=500, n_users=1000, n_events=20_000, seed=2))
    counts = np.sort(read_parquet(_files(lake)[0]).group_by("item_id").len()["len"].to_numpy())[::-1]
    assert counts[: len(counts) // 10].sum() > 0.4 * counts.sum()  # top 10 % of items > 40 % of events
