"""A small synthetic world for the ranking tests: users with one topic, items with a topic,
new items every day that get their first interactions right away, and item vectors that are
noisy topic one-hots (text = topic, signal 1) or pure noise."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import numpy as np
import polars as pl

from recsys_assets.lib.features.als import ALSConfig
from recsys_assets.lib.schema import EVENT_SCHEMA
from recsys_assets.lib.ranking.inputs import SnapshotFeatures, assemble_snapshot_features
from recsys_assets.lib.snapshot import ProtocolConfig, build_view, day_start

START = date(2026, 1, 1)
N_DAYS = 50
D = START + timedelta(days=N_DAYS - 1)
PCFG = ProtocolConfig(label_window_days=14, recent_days=7)
ALS_CFG = ALSConfig(factors=16, iterations=8, num_threads=1)


@dataclass
class World:
    events: pl.DataFrame  # all events incl. day D
    items: pl.DataFrame
    item_topic: dict[str, int]
    user_topic: dict[str, int]
    vectors: dict[str, tuple[list[str], np.ndarray]]
    new_users: list[str]  # no event before D
    profile_vectors: dict[str, tuple[list[str], np.ndarray]]


def _ts(d: date, sec: np.ndarray) -> list[datetime]:
    base = datetime.combine(d, datetime.min.time(), tzinfo=timezone.utc)
    return [base + timedelta(seconds=int(s)) for s in sec]


def make_world(seed: int = 0, n_users: int = 300, n_topics: int = 6, n_initial: int = 240, new_per_day: int = 10) -> World:
    rng = np.random.default_rng(seed)
    # items
    topics = list(rng.integers(0, n_topics, n_initial))
    released = [-30] * n_initial
    for d in range(1, N_DAYS):
        topics += list(rng.integers(0, n_topics, new_per_day))
        released += [d] * new_per_day
    topics = np.asarray(topics)
    released = np.asarray(released)
    n_items = len(topics)
    item_ids = [f"i{j:05d}" for j in range(n_items)]
    created = [datetime.combine(START + timedelta(days=int(r)), datetime.min.time(), tzinfo=timezone.utc) + timedelta(hours=int(h))
               for r, h in zip(released, rng.integers(0, 6, n_items))]
    genres = [f"g{g}" for g in range(4)]
    items = pl.DataFrame(
        {
            "item_id": item_ids,
            "title": [f"item {j}" for j in range(n_items)],
            # categories carry no topic signal: text is the only way to tell a new item's topic
            "categories": [[genres[g]] for g in rng.integers(0, 4, n_items)],
            "created_at": pl.Series(created, dtype=pl.Datetime("us", "UTC")),
            "first_seen_day": [START + timedelta(days=int(max(r, 0))) if r > 0 else None for r in released],
        },
        schema_overrides={"first_seen_day": pl.Date},
    )
    user_ids = [f"u{j:04d}" for j in range(n_users)]
    utopic = rng.integers(0, n_topics, n_users)
    late = np.zeros(n_users, bool)
    late[-20:] = True  # brand-new users: first event on D
    zipf = 1.0 / np.arange(1, n_items + 1) ** 0.8
    rows = []
    for d in range(N_DAYS):
        avail = released <= d
        fresh = avail & (released >= d - 1)
        for u in range(n_users):
            if late[u] and d < N_DAYS - 1:
                continue
            if rng.random() > (0.35 if not late[u] else 1.0):
                continue
            n_ev = 3
            for _ in range(n_ev):
                t = utopic[u] if rng.random() < 0.9 else rng.integers(0, n_topics)
                pick_fresh = rng.random() < 0.5
                cand = np.flatnonzero((fresh if pick_fresh else avail) & (topics == t))
                if len(cand) == 0:
                    cand = np.flatnonzero(avail & (topics == t))
                w = zipf[: len(cand)] if not pick_fresh else np.ones(len(cand))
                j = rng.choice(cand, p=w / w.sum())
                rows.append((u, j, d, int(rng.integers(0, 86_399))))
    arr = np.asarray(rows)
    ts = [datetime.combine(START + timedelta(days=int(d)), datetime.min.time(), tzinfo=timezone.utc) + timedelta(seconds=int(s)) for d, s in zip(arr[:, 2], arr[:, 3])]
    events = pl.DataFrame(
        {
            "event_id": [f"e{k}" for k in range(len(arr))],
            "user_id": [user_ids[u] for u in arr[:, 0]],
            "item_id": [item_ids[j] for j in arr[:, 1]],
            "event_type": ["click"] * len(arr),
            "value": np.ones(len(arr), np.float32),
            "ts": pl.Series(ts, dtype=pl.Datetime("us", "UTC")),
        },
        schema=EVENT_SCHEMA,
    ).sort("ts").unique(subset=["user_id", "item_id"], keep="first", maintain_order=True)
    dim = n_topics + 8
    topic_vec = np.zeros((n_items, dim), np.float32)
    topic_vec[np.arange(n_items), topics] = 1.0
    topic_vec += rng.normal(0, 0.25, topic_vec.shape).astype(np.float32)
    noise_vec = rng.normal(0, 1, (n_items, 16)).astype(np.float32)
    norm = lambda m: (m / np.linalg.norm(m, axis=1, keepdims=True)).astype(np.float32)
    new_users = [user_ids[u] for u in np.flatnonzero(late)]
    prof_users = new_users[:10]  # half of the brand-new users wrote a profile text
    prof = np.zeros((len(prof_users), dim), np.float32)
    prof[np.arange(len(prof_users)), [utopic[user_ids.index(u)] for u in prof_users]] = 1.0
    return World(
        events=events,
        items=items,
        item_topic=dict(zip(item_ids, topics.tolist())),
        user_topic=dict(zip(user_ids, utopic.tolist())),
        vectors={"topic": (item_ids, norm(topic_vec)), "noise": (item_ids, norm(noise_vec))},
        new_users=new_users,
        profile_vectors={"topic": (prof_users, norm(prof))},
    )


def events_before(world: World, day: date = D) -> pl.DataFrame:
    return world.events.filter(pl.col("ts") < day_start(day))


def snapshot_features(world: World, stage: str, protocol: str = "temporal", events: pl.DataFrame | None = None) -> SnapshotFeatures:
    ev = events if events is not None else events_before(world)
    view = build_view(ev, world.items, D, protocol, stage, PCFG)
    ids = view.catalog.get_column("item_id").to_list()
    vecs = {}
    for name, (iids, mat) in world.vectors.items():
        index = {i: r for r, i in enumerate(iids)}
        vecs[name] = (ids, mat[[index[i] for i in ids]])
    return assemble_snapshot_features(view, vecs, als_config=ALS_CFG, protocol=PCFG, user_text_vectors=world.profile_vectors)
