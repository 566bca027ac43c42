"""A small synthetic world for the ranking tests: users with one topic, items with a topic,
new items every day that get their first interactions right away, and two item encoders:
``item-vector`` (TOPIC), the catalogue's precomputed vectors, here noisy topic one-hots (signal 1),
and ``metadata@meta`` (NOISE), one-hot categories that carry no topic signal (the ``@meta``
variant keeps the precomputed vector out of it: every plain encoder fuses it in).

The world runs what production runs (lake_world.py): landed into a lake, ingested, the feature
assets of day D materialized, the ranking inputs loaded by the ranking stage's own loader."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone

import numpy as np
import polars as pl

from recsys_assets.defs.resources import ModelsResource
from recsys_assets.lib.features.profiles import merge_user_vectors
from recsys_assets.lib.schema import EVENT_SCHEMA
from recsys_assets.lib.ranking.features import text_feature_names
from recsys_assets.lib.ranking.inputs import EncoderFeatures, SnapshotFeatures
from recsys_assets.lib.snapshot import ProtocolConfig, day_start
from recsys_assets_tests.lib.ranking.lake_world import LakeWorld, land_and_ingest

START = date(2026, 1, 1)
N_DAYS = 50
D = START + timedelta(days=N_DAYS - 1)
TOPIC = "item-vector"
"""The encoder whose item vectors are the world's topic vectors (the catalogue's image_vector)."""
NOISE = "metadata@meta"
"""An encoder without topic signal: the world's categories are drawn independently of the topics."""
TOPIC_COS, TOPIC_C2CF, TOPIC_CONTENT_SOURCE, TOPIC_C2CF_SOURCE = text_feature_names(TOPIC)
"""TOPIC's ranker feature and candidate-source column names (encoder names are sanitized in column names)."""
PCFG = ProtocolConfig(protocols=("temporal",), label_window_days=14, recent_days=7)
MODELS = ModelsResource(
    encoders=f"{TOPIC},{NOISE}", protocols="temporal", label_window_days=14, recent_days=7,
    als_factors=16, als_iterations=8, als_min_user_events=1, device="cpu",
)


@dataclass
class World:
    events: pl.DataFrame  # all events incl. day D
    items: pl.DataFrame
    item_topic: dict[str, int]
    user_topic: dict[str, int]
    vectors: tuple[list[str], np.ndarray]
    """Noisy topic one-hot per item: landed as the catalogue's image_vector (the TOPIC encoder)."""
    new_users: list[str]  # no event before D
    profile_vectors: dict[str, tuple[list[str], np.ndarray]]
    """Given interest vectors of brand-new users with a profile text, in TOPIC's space (see ``with_profile_vectors``)."""
    users: pl.DataFrame
    """Landing users: user_id, profile (the profile-text users)."""


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
        vectors=(item_ids, norm(topic_vec)),
        new_users=new_users,
        profile_vectors={TOPIC: (prof_users, norm(prof))},
        users=pl.DataFrame(
            {"user_id": prof_users, "profile": [f"I like topic {utopic[user_ids.index(u)]}" for u in prof_users]},
            schema={"user_id": pl.String, "profile": pl.String},
        ),
    )


def events_before(world: World, day: date = D) -> pl.DataFrame:
    return world.events.filter(pl.col("ts") < day_start(day))


def land_world(world: World, root) -> LakeWorld:
    """The world landed, ingested and day D's feature assets materialized."""
    lw = land_and_ingest(root, world.events, world.items, world.vectors, world.users, MODELS)
    lw.materialize(D)
    return lw


def with_profile_vectors(feats: SnapshotFeatures, world: World) -> SnapshotFeatures:
    """The features plus the world's given interest vectors of its profile-text users (TOPIC's space).

    The one piece that cannot come through the lake: production gives a brand-new user a vector from
    the profile TEXT, encoded by a text encoder, and ``item-vector`` has no text model
    (``user_profiles`` skips these users for it, counted as ``profile_text_skipped``). The tests of
    users without history but with an interest vector need such users, so the given vectors are
    merged here with the feature stage's own ``merge_user_vectors``.
    """
    encs = dict(feats.encoders)
    for name, given in world.profile_vectors.items():
        e = encs[name]
        uids, umat = merge_user_vectors((e.user_ids, e.user_vectors), given)
        encs[name] = EncoderFeatures(e.item_ids, e.item_vectors, uids, umat, e.c2cf)
    return replace(feats, encoders=encs, _cache={})


def snapshot_features(lw: LakeWorld, world: World, stage: str, protocol: str = "temporal") -> SnapshotFeatures:
    """The ranking inputs of a view of day D, loaded from the lake, plus the given profile vectors."""
    return with_profile_vectors(lw.features(D, stage, protocol), world)
