"""Round 5's features (docs/ranker.md): co-occurrence with the user's last items (``last_cooc``) and
the popularity among users sharing a profile attribute (``profile_lift``), on a hand-made world."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest

from recsys_assets.lib.ranking.config import RankingConfig
from recsys_assets.lib.ranking.features import FEATURES_NO_TEXT, last_items, ranker_features, text_feature_names
from recsys_assets.lib.ranking.ranker import train_ranker
from recsys_assets.lib.ranking.inputs import SnapshotFeatures
from recsys_assets.lib.schema import EVENT_SCHEMA
from recsys_assets.lib.snapshot import ProtocolConfig, build_view

D = date(2024, 3, 10)


def _events(rows: list[tuple[str, str, int]]) -> pl.DataFrame:
    """(user, item, day offset before D) -> events, one a day in that order."""
    ts = [datetime.combine(D - timedelta(days=d), datetime.min.time(), tzinfo=timezone.utc) + timedelta(seconds=k) for k, (_, _, d) in enumerate(rows)]
    return pl.DataFrame(
        {
            "event_id": [f"e{k}" for k in range(len(rows))],
            "user_id": [u for u, _, _ in rows],
            "item_id": [i for _, i, _ in rows],
            "event_type": ["click"] * len(rows),
            "value": np.ones(len(rows), np.float32),
            "ts": pl.Series(ts, dtype=pl.Datetime("us", "UTC")),
        },
        schema=EVENT_SCHEMA,
    )


@pytest.fixture(scope="module")
def feats() -> SnapshotFeatures:
    # a: i1 (oldest), i2, i3 (latest); b: i3, i4; c and e: i1, i5 (same profile as d, brand-new).
    ev = _events([("a", "i1", 5), ("a", "i2", 4), ("a", "i3", 3), ("b", "i3", 3), ("b", "i4", 2), ("c", "i1", 2), ("c", "i5", 1), ("e", "i5", 1), ("e", "i1", 1)])
    created = datetime(2024, 1, 1, tzinfo=timezone.utc)
    items = pl.DataFrame(
        {"item_id": [f"i{j}" for j in range(1, 7)], "created_at": [created] * 6, "first_seen_day": [None] * 6},
        schema={"item_id": pl.String, "created_at": pl.Datetime("us", "UTC"), "first_seen_day": pl.Date},
    )
    view = build_view(ev, items, D, "temporal", "serve", ProtocolConfig())
    users = pl.DataFrame({"user_id": ["a", "b", "c", "d", "e"], "profile": ["25 male student", "25 male student", "40 female doctor", "40 female doctor", "40 female doctor"]})
    return SnapshotFeatures(view=view, als=None, users=users)


def test_round5_features_are_not_text_and_every_arm_has_them():
    new = {"last_cooc", "profile_lift"}
    assert new <= set(FEATURES_NO_TEXT)
    assert not new & set(text_feature_names("minilm-l6"))


def test_last_items_are_the_most_recent_first(feats):
    cols, valid = last_items(feats, ["a", "b", "d"], n=2)
    ids = feats.item_ids
    assert [ids[c] for c in cols[0]] == ["i3", "i2"] and valid[0].all()
    assert [ids[c] for c in cols[1]] == ["i4", "i3"] and valid[1].all()
    assert not valid[2].any()  # no history


def test_last_cooc_is_the_mean_share_of_the_last_items_users(feats):
    cands = pl.DataFrame({"user_id": ["a", "a", "a", "d"], "item_id": ["i4", "i5", "i6", "i4"]})
    f = ranker_features(feats, cands, None)
    cooc = f["last_cooc"].to_list()
    # a's last items i3, i2, i1: P(i4 | i3) = 1/2 (a, b had i3; b had i4), 0 via i2 and i1 -> 1/6;
    # P(i5 | i1) = 2/3 (a, c, e had i1; c, e had i5) -> 2/9; i6 nobody had -> 0.
    assert cooc[:3] == pytest.approx([1 / 6, 2 / 9, 0.0])
    assert np.isnan(cooc[3])  # d has no history


def test_profile_lift_favours_what_users_with_the_same_profile_had(feats):
    cands = pl.DataFrame({"user_id": ["d", "d", "b", "zz"], "item_id": ["i5", "i4", "i4", "i5"]})
    f = ranker_features(feats, cands, None)
    lift = f["profile_lift"].to_list()
    # d (brand-new, "40 female doctor") shares its profile with c and e, who had i5 and never i4.
    assert lift[0] > 0 > lift[1]
    assert lift[2] > 0  # b ("25 male student") had i4 itself
    assert np.isnan(lift[3])  # a user without a profile
    no_profiles = SnapshotFeatures(view=feats.view, als=None)
    assert ranker_features(no_profiles, cands, None)["profile_lift"].is_nan().all()


def _frame(seed: int, signal: str) -> pl.DataFrame:
    """Training queries whose positives are the candidates with the highest ``signal`` (+ noise)."""
    rng = np.random.default_rng(seed)
    n_users, n_items = 150, 30
    cols = {f: rng.normal(size=n_users * n_items).astype(np.float32) for f in FEATURES_NO_TEXT}
    score = cols[signal] + rng.normal(0.0, 0.3, n_users * n_items)
    label = (score.reshape(n_users, n_items) >= np.sort(score.reshape(n_users, n_items), axis=1)[:, -2:-1]).astype(np.int8).ravel()
    return pl.DataFrame({"user_id": np.repeat([f"u{i:03d}" for i in range(n_users)], n_items), **cols, "label": label})


@pytest.mark.parametrize("signal", ["last_cooc", "profile_lift"])
def test_the_ranker_learns_each_new_signal(signal):
    """Where the positives are the candidates highest on the feature, the trained ranker ranks by it
    (and is monotone in ``last_cooc``, RankingConfig.monotone); without it, it cannot."""
    cfg = RankingConfig(encoders=(), num_threads=1, validation="none", rounds_without_validation=30, prior="none")
    train, test = _frame(0, signal), _frame(1, signal)
    with_it = train_ranker(train, FEATURES_NO_TEXT, cfg)
    without = train_ranker(train, [f for f in FEATURES_NO_TEXT if f != signal], cfg)

    def hit_at_2(model) -> float:
        s = test.select("user_id", "label").with_columns(pl.Series("s", model.predict(test)))
        top = s.sort(["user_id", "s"], descending=[False, True]).group_by("user_id", maintain_order=True).head(2)
        return float(top["label"].mean())

    assert hit_at_2(with_it) > 0.6 > 0.3 > hit_at_2(without)
    if signal == "last_cooc":
        row = test.row(0, named=True)
        grid = pl.DataFrame([{**row, "last_cooc": float(g)} for g in np.linspace(-3, 3, 31)]).with_columns(pl.col("last_cooc").cast(pl.Float32))
        assert np.all(np.diff(with_it.predict(grid)) >= -1e-9)


def test_csr_lookup_gives_scipys_elements():
    """``CsrLookup`` (one binary search per element) returns exactly what scipy's element lookup does,
    stored elements and absent ones (0), on unsorted input indices too, and on an empty matrix."""
    import numpy as np
    import scipy.sparse as sp

    from recsys_assets.lib.ranking.features import CsrLookup

    rng = np.random.default_rng(3)
    m = sp.random(300, 500, density=0.05, format="csr", dtype=np.float32, random_state=rng)
    idx, dat = m.indices.copy(), m.data.copy()
    for r in range(m.shape[0]):  # every row's indices in reverse order: an unsorted CSR
        a, b = m.indptr[r], m.indptr[r + 1]
        idx[a:b], dat[a:b] = idx[a:b][::-1], dat[a:b][::-1]
    m = sp.csr_matrix((dat, idx, m.indptr), shape=m.shape)
    assert not m.has_sorted_indices
    rows, cols = rng.integers(0, 300, 20_000), rng.integers(0, 500, 20_000)
    rows[:500], cols[:500] = m.nonzero()[0][:500], m.nonzero()[1][:500]  # surely stored ones too
    want = np.asarray(m[rows, cols]).ravel()
    got = CsrLookup(m.copy())(rows, cols)
    assert got.dtype == np.float32 and np.array_equal(got, want) and (want[:500] != 0).all()
    empty = sp.csr_matrix((4, 6), dtype=np.float32)
    assert np.array_equal(CsrLookup(empty)(np.array([0, 3]), np.array([1, 5])), np.zeros(2, np.float32))
