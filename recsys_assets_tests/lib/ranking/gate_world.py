"""A synthetic world where the trivial baselines are strong and snapshots drift, as on MovieLens.

What makes the ranker gate hard on real logs, in miniature:

- traffic grows every day, so raw counts at the training snapshot (D - w) are smaller than at
  serving (D): a split on a raw count learned at D - w lands elsewhere at D;
- items are hot when young (appeal decays with age), so recent popularity is the best
  single signal and the popularity list of D is not the one of D - w;
- half of each day's users are brand new (no ALS factors): for them a ranker can only
  reproduce the popularity list, and must at least do that;
- returning users prefer their topic, which ALS and the item vector (a noisy topic one-hot,
  the catalogue's precomputed vector: the ``item-vector`` encoder) can pick up.

The world runs what production runs (lake_world.py): landed, ingested, ``warmup_job`` (features and
serve-like ranker examples) materialized for the ``train_nights`` partitions up to D; the tests read
the examples files and load D's serve inputs with the ranking stage's own loader.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import numpy as np
import polars as pl

from recsys_assets.defs.resources import ModelsResource
from recsys_assets.lib.interactions import InteractionConfig, positives
from recsys_assets.lib.lake import read_parquet
from recsys_assets.lib.schema import EVENT_SCHEMA
from recsys_assets.lib.ranking.inputs import SnapshotFeatures
from recsys_assets.lib.snapshot import day_start
from recsys_assets_tests.lib.ranking.lake_world import LakeWorld, land_and_ingest

START = date(2026, 3, 1)
N_DAYS = 60
D = START + timedelta(days=N_DAYS - 1)
TOPIC = "item-vector"
"""The encoder of the world's topic vectors (the catalogue's image_vector)."""
MODELS = ModelsResource(
    encoders=TOPIC, protocols="temporal", label_window_days=1, recent_days=14,
    als_factors=16, als_iterations=8, als_min_user_events=3, device="cpu",
)
"""label_window_days=1: each partition's ranker_examples are its D - 1 snapshot labelled with day D - 1 (serve-like)."""


@dataclass
class GateWorld:
    events: pl.DataFrame
    """Every event, day D included (the truth day)."""
    items: pl.DataFrame
    vectors: tuple[list[str], np.ndarray]
    """Noisy topic one-hot per item (landed as its image_vector)."""


def make_gate_world(
    seed: int = 0, n_items: int = 400, n_topics: int = 6, back_share: float = 0.5, topic_boost: float = 4.0, decay_days: float = 12.0, growth: int = 2
) -> GateWorld:
    rng = np.random.default_rng(seed)
    n_initial = n_items * 3 // 4
    born = np.concatenate([rng.integers(-200, 0, n_initial), rng.integers(1, N_DAYS, n_items - n_initial)])
    topic = rng.integers(0, n_topics, n_items)
    appeal = rng.pareto(1.2, n_items) + 0.05
    item_ids = [f"g{j:04d}" for j in range(n_items)]
    created = [datetime.combine(START + timedelta(days=int(b)), datetime.min.time(), tzinfo=timezone.utc) for b in born]
    items = pl.DataFrame(
        {
            "item_id": item_ids,
            "title": [f"film {j}" for j in range(n_items)],
            "categories": [[f"c{t % 3}"] for t in topic],
            "created_at": pl.Series(created, dtype=pl.Datetime("us", "UTC")),
            "first_seen_day": [START + timedelta(days=int(b)) if b > 0 else None for b in born],
        },
        schema_overrides={"first_seen_day": pl.Date},
    )
    rows: list[tuple[int, int, int, int]] = []
    user_topic: list[int] = []
    returning: list[int] = []
    for d in range(N_DAYS):
        avail = np.flatnonzero(born <= d)
        age = d - born[avail]
        heat = appeal[avail] * (np.exp(-np.clip(age, 0, None) / decay_days) + 0.15)
        n_active = 12 + d * growth  # traffic grows: counts at D - w are smaller than at D
        n_back = min(len(returning), int(n_active * back_share))
        back = list(rng.choice(returning, n_back, replace=False)) if n_back else []
        fresh = list(range(len(user_topic), len(user_topic) + n_active - n_back))
        user_topic += list(rng.integers(0, n_topics, len(fresh)))
        for u in back + fresh:
            w = heat * np.where(topic[avail] == user_topic[u], topic_boost if u in back else 1.0, 1.0)
            k = min(len(avail), 2 + int(rng.poisson(4)))
            picks = rng.choice(avail, k, replace=False, p=w / w.sum())
            rows += [(u, int(j), d, int(rng.integers(0, 86_399))) for j in picks]
        returning = sorted(set(returning) | set(fresh))
    arr = np.asarray(rows)
    ts = [datetime.combine(START + timedelta(days=int(d)), datetime.min.time(), tzinfo=timezone.utc) + timedelta(seconds=int(s)) for d, s in zip(arr[:, 2], arr[:, 3])]
    events = pl.DataFrame(
        {
            "event_id": [f"e{k}" for k in range(len(arr))],
            "user_id": [f"v{u:05d}" for u in arr[:, 0]],
            "item_id": [item_ids[j] for j in arr[:, 1]],
            "event_type": ["click"] * len(arr),
            "value": np.ones(len(arr), np.float32),
            "ts": pl.Series(ts, dtype=pl.Datetime("us", "UTC")),
        },
        schema=EVENT_SCHEMA,
    ).sort("ts").unique(subset=["user_id", "item_id"], keep="first", maintain_order=True)
    vec = np.zeros((n_items, n_topics + 4), np.float32)
    vec[np.arange(n_items), topic] = 1.0
    vec += rng.normal(0, 0.3, vec.shape).astype(np.float32)
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    return GateWorld(events=events, items=items, vectors=(item_ids, vec))


def land_gate_world(world: GateWorld, root, nights: int) -> LakeWorld:
    """The world landed, ingested, and ``warmup_job`` run for partitions D - nights + 1 .. D."""
    lw = land_and_ingest(root, world.events, world.items, world.vectors, None, MODELS)
    for j in range(nights - 1, -1, -1):
        lw.warmup(D - timedelta(days=j))
    return lw


def night_frames(lw: LakeWorld, nights: int) -> list[pl.DataFrame]:
    """The ``ranker_examples`` the warmup runs wrote, oldest partition first."""
    return [read_parquet(lw.lake.ranker_examples_file(D - timedelta(days=j), "temporal")) for j in range(nights - 1, -1, -1)]


def gate_truth(world: GateWorld, serve: SnapshotFeatures) -> pl.DataFrame:
    """Day D's positives minus pairs seen before D."""
    day = world.events.filter(pl.col("ts") >= day_start(D))
    return positives(day, InteractionConfig()).join(serve.view.seen, on=["user_id", "item_id"], how="anti")
