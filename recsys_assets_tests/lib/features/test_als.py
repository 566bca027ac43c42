"""ALS trainer, fold-in and scorer (plus the interaction weights they read)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from upath import UPath

from recsys_assets.lib.features.als import (
    ALSConfig,
    ALSError,
    ALSModel,
    ALSScorer,
    UnknownUserError,
    fit_als,
    fold_in,
)
from recsys_assets.lib.interactions import (
    InteractionConfig,
    InteractionConfigError,
    UnknownIdError,
    build_matrix,
    interaction_strength,
    positives,
)
from recsys_assets.lib.schema import EVENT_SCHEMA

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


def _events(rows: list[tuple]) -> pl.DataFrame:
    """rows: (user, item, event_type, value)."""
    return pl.DataFrame(
        {
            "event_id": [f"e{k:06d}" for k in range(len(rows))],
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "event_type": [r[2] for r in rows],
            "value": [r[3] for r in rows],
            "ts": [T0 + dt.timedelta(minutes=k) for k in range(len(rows))],
        },
        schema=EVENT_SCHEMA,
    )


def _low_rank_events(n_users=150, n_items=80, per_user=20, seed=0) -> pl.DataFrame:
    """Users pick items by a 4-factor taste model, so ALS has structure to find."""
    rng = np.random.default_rng(seed)
    uf = rng.normal(size=(n_users, 4))
    itf = rng.normal(size=(n_items, 4))
    logits = 2.0 * uf @ itf.T
    rows = []
    for u in range(n_users):
        p = np.exp(logits[u] - logits[u].max())
        p /= p.sum()
        for it in rng.choice(n_items, size=per_user, replace=False, p=p):
            rows.append((f"u{u:03d}", f"i{it:03d}", ["view", "click", "purchase"][rng.integers(3)], None))
    return _events(rows)


CFG = ALSConfig(factors=8, regularization=0.05, iterations=20, seed=1)
ICFG = InteractionConfig()


@pytest.fixture(scope="module")
def events() -> pl.DataFrame:
    return _low_rank_events()


@pytest.fixture(scope="module")
def model(events) -> ALSModel:
    return fit_als(events, CFG, ICFG)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# --- interactions ----------------------------------------------------------------


def test_interaction_strength_weights_and_rating_formula():
    ev = _events(
        [
            ("u", "a", "view", None),
            ("u", "a", "click", None),
            ("u", "b", "purchase", None),
            ("u", "c", "rating", 5.0),
            ("u", "d", "rating", 1.0),
            ("u", "e", "rating", None),
            ("u", "f", "cart", None),
        ]
    )
    assert interaction_strength(ev, ICFG).to_list() == [1.0, 2.0, 5.0, 3.0, 0.5, 0.5, 3.0]
    mat, users, items = build_matrix(ev, ICFG)
    assert users == ["u"] and items == ["a", "b", "c", "d", "e", "f"]
    assert mat.toarray().tolist() == [[3.0, 5.0, 3.0, 0.5, 0.5, 3.0]]
    pos = positives(ev, ICFG)
    assert pos.get_column("item_id").to_list() == ["a", "b", "c", "f"]


def test_build_matrix_unknown_ids_are_explicit():
    ev = _events([("u1", "a", "view", None), ("u2", "zz", "click", None)])
    with pytest.raises(UnknownIdError, match="1 unknown items"):
        build_matrix(ev, ICFG, item_ids=["a"])
    mat, users, items = build_matrix(ev, ICFG, item_ids=["a", "b"], on_unknown="drop")
    assert users == ["u1", "u2"] and items == ["a", "b"]
    assert mat.toarray().tolist() == [[1.0, 0.0], [0.0, 0.0]]


def test_interaction_config_rejects_unknown_event_type():
    with pytest.raises(InteractionConfigError, match="likes"):
        InteractionConfig(event_weights={"view": 1.0, "likes": 2.0})


# --- fit / fold-in ------------------------------------------------------------------


def test_fit_shapes_and_dtypes(model, events):
    assert len(model.user_ids) == events.get_column("user_id").n_unique()
    assert model.user_factors.dtype == np.float32 and model.user_factors.shape == (150, 8)
    assert model.item_factors.shape == (len(model.item_ids), 8)
    assert not model.user_folded.any()


def test_fold_in_of_a_fitted_user_reproduces_its_factors(model, events):
    user = "u007"
    ids, factors = fold_in(model, events.filter(pl.col("user_id") == user))
    assert ids == [user]
    fitted = model.user_factors[model.user_ids.index(user)]
    assert _cos(factors[0], fitted) > 0.99


def test_fold_in_matches_a_refit_that_saw_the_user(model, events):
    """A user left out of the fit and folded in scores items like a refit including them."""
    held = ["u003", "u042", "u111"]
    without = fit_als(events.filter(~pl.col("user_id").is_in(held)), CFG, ICFG)
    ids, factors = fold_in(without, events.filter(pl.col("user_id").is_in(held)))
    assert ids == sorted(held)
    for u, f in zip(ids, factors):
        folded_scores = without.item_factors @ f
        full_idx = [model.item_ids.index(i) for i in without.item_ids]
        refit_scores = model.item_factors[full_idx] @ model.user_factors[model.user_ids.index(u)]
        assert _cos(folded_scores, refit_scores) > 0.9, u


def test_light_users_are_folded_in_not_fitted(events):
    light = ["u001", "u002"]
    trimmed = pl.concat(
        [
            events.filter(~pl.col("user_id").is_in(light)),
            events.filter(pl.col("user_id").is_in(light))
            .group_by("user_id", maintain_order=True)
            .head(3)
            .select(events.columns),
        ]
    )
    m = fit_als(trimmed, ALSConfig(factors=8, iterations=10, min_user_events_for_fit=5), ICFG)
    folded = {u for u, f in zip(m.user_ids, m.user_folded) if f}
    assert folded == set(light)
    assert len(m.user_ids) == 150


def test_fold_in_user_without_known_items_is_not_returned(model):
    ev = _events([("new1", "nope", "click", None), ("new2", model.item_ids[0], "click", None)])
    ids, factors = fold_in(model, ev)
    assert ids == ["new2"] and factors.shape == (1, 8)


def test_fit_rejects_events_without_strength():
    ev = _events([("u", "a", "view", None)])
    with pytest.raises(ALSError, match="positive interaction strength"):
        fit_als(ev, CFG, InteractionConfig(event_weights={"click": 1.0}))


# --- scorer ---------------------------------------------------------------------------


def test_score_marks_unknown_users_and_items(model):
    s = ALSScorer(model)
    u, i = model.user_ids[0], model.item_ids[0]
    scores, known = s.score([u, "ghost", u], [i, i, "ghost_item"])
    assert known.tolist() == [True, False, False]
    assert np.isnan(scores[1]) and np.isnan(scores[2])
    assert scores[0] == pytest.approx(float(model.user_factors[0] @ model.item_factors[0]), rel=1e-5)
    assert s.known_users([u, "ghost"]).tolist() == [True, False]


def test_top_n_unknown_users_raise_or_are_skipped(model):
    s = ALSScorer(model)
    with pytest.raises(UnknownUserError, match="ghost"):
        s.top_n([model.user_ids[0], "ghost"], 5)
    out = s.top_n([model.user_ids[0], "ghost"], 5, skip_unknown=True)
    assert out.get_column("user_id").unique().to_list() == [model.user_ids[0]]


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_top_n_excludes_seen_and_matches_brute_force(model, events, backend):
    pytest.importorskip("torch") if backend == "torch" else None
    s = ALSScorer(model, backend=backend, max_chunk_cells=len(model.item_ids) * 7)  # several chunks
    users = model.user_ids[:20]
    n = 10
    out = s.top_n(users, n, exclude=events)
    assert out.columns == ["user_id", "item_id", "score", "rank"]
    assert out.height == n * len(users)
    seen = set(events.select("user_id", "item_id").iter_rows())
    assert not any((u, i) in seen for u, i in out.select("user_id", "item_id").iter_rows())
    for u in users:
        got = out.filter(pl.col("user_id") == u)
        assert got.get_column("rank").to_list() == list(range(1, n + 1))
        sc = model.item_factors @ model.user_factors[model.user_ids.index(u)]
        mask = np.array([(u, i) not in seen for i in model.item_ids])
        best = np.argsort(-np.where(mask, sc, -np.inf))[:n]
        assert got.get_column("item_id").to_list() == [model.item_ids[j] for j in best]
        np.testing.assert_allclose(got.get_column("score").to_numpy(), sc[best], rtol=1e-5)
    # the dict form excludes the same items
    as_dict: dict[str, set[str]] = {}
    for u, i in events.select("user_id", "item_id").iter_rows():
        as_dict.setdefault(u, set()).add(i)
    assert s.top_n(users, n, exclude=as_dict).equals(out)
    # ... and so does a sparse matrix aligned to (users, model.item_ids)
    mat, _, _ = build_matrix(events, ICFG, user_ids=users, item_ids=model.item_ids, on_unknown="drop")
    assert s.top_n(users, n, exclude=mat).equals(out)
    with pytest.raises(ALSError, match="aligned"):
        s.top_n(users, n, exclude=mat[:3])


def test_top_n_returns_fewer_rows_when_exclusion_leaves_fewer_items(model):
    s = ALSScorer(model)
    u = model.user_ids[0]
    excl = {u: set(model.item_ids[3:])}
    out = s.top_n([u], 10, exclude=excl)
    assert sorted(out.get_column("item_id").to_list()) == sorted(model.item_ids[:3])


# --- persistence -------------------------------------------------------------------------


def test_save_load_round_trip(model, tmp_path):
    d = UPath(tmp_path) / "als"
    folded = model.with_users(["newbie"], model.user_factors[:1] * 2)
    folded.save(d)
    back = ALSModel.load(d)
    assert back.user_ids == folded.user_ids and back.item_ids == folded.item_ids
    np.testing.assert_array_equal(back.user_factors, folded.user_factors)
    np.testing.assert_array_equal(back.item_factors, folded.item_factors)
    assert back.user_folded.tolist() == folded.user_folded.tolist() and back.user_folded[-1]
    assert back.als_config == model.als_config and back.interaction_config == model.interaction_config
    assert back.config_hash == model.config_hash


def test_load_detects_mismatched_files(model, tmp_path):
    d = UPath(tmp_path) / "als"
    model.save(d)
    (d / "als_factors.npz").write_bytes((d / "als_factors.npz").read_bytes() + b"x")
    with pytest.raises(ALSError, match="sha256"):
        ALSModel.load(d)
    with pytest.raises(ALSError, match="No ALS model"):
        ALSModel.load(UPath(tmp_path) / "missing")


def test_skip_unknown_keeps_sparse_exclusions_aligned(model):
    s = ALSScorer(model)
    u0, u1 = model.user_ids[0], model.user_ids[1]
    best_u1 = s.top_n([u1], 1).get_column("item_id")[0]
    mat, _, _ = build_matrix(
        _events([(u1, best_u1, "click", None)]), ICFG, user_ids=[u0, "ghost", u1], item_ids=model.item_ids
    )
    out = s.top_n([u0, "ghost", u1], 3, exclude=mat, skip_unknown=True)
    assert best_u1 not in out.filter(pl.col("user_id") == u1).get_column("item_id").to_list()
    assert out.height == 6
