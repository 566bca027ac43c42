"""EMA interest profiles."""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import polars as pl
import pytest

from recsys_assets.lib.interactions import InteractionConfig, interaction_strength
from recsys_assets.lib.features.profiles import (
    ProfileConfig,
    ProfileError,
    build_user_profiles,
    profiles_from_text,
)
from recsys_assets.lib.schema import EVENT_SCHEMA

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
ICFG = InteractionConfig()


def _events(rows):
    """rows: (event_id, user, item, type, value, minute)."""
    return pl.DataFrame(
        {
            "event_id": [r[0] for r in rows],
            "user_id": [r[1] for r in rows],
            "item_id": [r[2] for r in rows],
            "event_type": [r[3] for r in rows],
            "value": [r[4] for r in rows],
            "ts": [T0 + dt.timedelta(minutes=r[5]) for r in rows],
        },
        schema=EVENT_SCHEMA,
    )


ITEMS = ["a", "b", "c"]
VECS = np.eye(3, dtype=np.float32)


def test_worked_three_event_example():
    """alpha = 0.5; view a (s=1), click b (s=2), view c (s=1), rows given out of order.

    u1 = a = [1, 0, 0]                                   (first event starts the profile)
    a2 = 1 - 0.5**2 = 0.75:  u2 = u1 + 0.75 (b - u1) = [0.25, 0.75, 0]
    a3 = 1 - 0.5**1 = 0.5:   u3 = u2 + 0.5 (c - u2)  = [0.125, 0.375, 0.5]
    |u3| = sqrt(0.015625 + 0.140625 + 0.25) = sqrt(0.40625)
    """
    ev = _events(
        [
            ("e3", "u", "c", "view", None, 2),
            ("e1", "u", "a", "view", None, 0),
            ("e2", "u", "b", "click", None, 1),
        ]
    )
    users, m = build_user_profiles(ev, ITEMS, VECS, ProfileConfig(alpha=0.5), ICFG)
    expected = np.array([0.125, 0.375, 0.5]) / np.sqrt(0.40625)
    assert users == ["u"] and m.dtype == np.float32
    np.testing.assert_allclose(m[0], expected, rtol=1e-6)


def test_same_ts_orders_by_event_id():
    # both at minute 0: e1 (a) first, then e2 (b); alpha 0.25, view: a + 0.25 (b - a) = [0.75, 0.25, 0]
    ev = _events([("e2", "u", "b", "view", None, 0), ("e1", "u", "a", "view", None, 0)])
    _, m = build_user_profiles(ev, ITEMS, VECS, ProfileConfig(alpha=0.25), ICFG)
    np.testing.assert_allclose(m[0], np.array([0.75, 0.25, 0]) / np.hypot(0.75, 0.25), rtol=1e-6)


def test_skips_items_without_vectors_and_zero_strength_events():
    icfg = InteractionConfig(event_weights={"click": 2.0, "purchase": 5.0})  # views weigh 0
    ev = _events(
        [
            ("e1", "u", "zz", "click", None, 0),  # no vector
            ("e2", "u", "b", "view", None, 1),  # strength 0
            ("e3", "u", "c", "click", None, 2),  # first usable: starts the profile
            ("e4", "v", "zz", "purchase", None, 0),  # v has nothing usable
        ]
    )
    users, m, stats = build_user_profiles(ev, ITEMS, VECS, ProfileConfig(), icfg, return_stats=True)
    assert users == ["u"]
    np.testing.assert_allclose(m[0], [0, 0, 1])
    assert stats == {
        "n_events": 4,
        "n_used": 1,
        "n_skipped_no_vector": 2,
        "n_skipped_zero_strength": 1,
        "n_users_in_events": 2,
        "n_users_with_profile": 1,
    }


def _loop_reference(ev: pl.DataFrame, item_ids, vecs, alpha):
    idx = {it: j for j, it in enumerate(item_ids)}
    ev = ev.with_columns(interaction_strength(ev, ICFG)).sort("user_id", "ts", "event_id")
    out = {}
    for (user,), g in ev.group_by("user_id", maintain_order=True):
        u = None
        for it, s in g.select("item_id", "strength").iter_rows():
            e = vecs[idx[it]].astype(np.float64)
            if u is None:
                u = e.copy()
            else:
                u = u + (1 - (1 - alpha) ** s) * (e - u)
        out[user] = u / np.linalg.norm(u)
    return out


def test_vectorized_matches_loop_on_random_histories():
    rng = np.random.default_rng(0)
    n, n_items = 3000, 50
    item_ids = [f"i{j}" for j in range(n_items)]
    vecs = rng.normal(size=(n_items, 16)).astype(np.float32)
    types = ["view", "click", "cart", "purchase", "rating"]
    ev = _events(
        [
            (f"e{k:05d}", f"u{rng.integers(40)}", item_ids[rng.integers(n_items)], types[rng.integers(5)],
             float(rng.integers(1, 6)), int(rng.integers(0, 500)))
            for k in range(n)
        ]
    )
    users, m = build_user_profiles(ev, item_ids, vecs, ProfileConfig(alpha=0.3), ICFG)
    ref = _loop_reference(ev, item_ids, vecs, 0.3)
    assert users == sorted(ref)
    for u, row in zip(users, m):
        np.testing.assert_allclose(row, ref[u], atol=2e-5)


def test_200k_events_run_in_seconds():
    rng = np.random.default_rng(1)
    n, n_items = 200_000, 3000
    item_ids = [f"i{j}" for j in range(n_items)]
    vecs = rng.normal(size=(n_items, 64)).astype(np.float32)
    ev = pl.DataFrame(
        {
            "event_id": [f"e{k}" for k in range(n)],
            "user_id": [f"u{x}" for x in rng.integers(0, 2000, n)],
            "item_id": [f"i{x}" for x in rng.integers(0, n_items, n)],
            "event_type": rng.choice(["view", "click", "rating"], n).tolist(),
            "value": rng.integers(1, 6, n).astype(np.float32),
            "ts": pl.datetime_range(T0, T0 + dt.timedelta(seconds=n - 1), "1s", eager=True, time_zone="UTC"),
        },
        schema=EVENT_SCHEMA,
    )
    t = time.perf_counter()
    users, m = build_user_profiles(ev, item_ids, vecs, ProfileConfig(), ICFG)
    assert time.perf_counter() - t < 3.0
    assert len(users) == 2000
    np.testing.assert_allclose(np.linalg.norm(m, axis=1), 1.0, rtol=1e-5)


def test_profiles_from_text_skips_blank_and_normalizes():
    def encode(texts):
        return np.array([[len(t), 1.0] for t in texts])

    users, m = profiles_from_text(["a", "b", "c"], ["hello", "  ", None], encode)
    assert users == ["a"]
    np.testing.assert_allclose(m[0], np.array([5.0, 1.0]) / np.hypot(5, 1), rtol=1e-6)


def test_alpha_out_of_range_is_rejected():
    with pytest.raises(ProfileError, match="alpha"):
        ProfileConfig(alpha=1.0)
