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


def test_last_items_of_a_block_are_its_users_rows_whatever_the_block(feats):
    """Every user's list is made once per snapshot and gathered per block: a block's rows are the same lists
    in any order or subset, unknown users included."""
    cols, valid = last_items(feats, ["a", "b", "c", "e"], n=3)
    bcols, bvalid = last_items(feats, ["zz", "e", "a"], n=3)
    assert not bvalid[0].any()
    assert (bcols[1] == cols[3]).all() and (bvalid[1] == valid[3]).all()
    assert (bcols[2] == cols[0]).all() and (bvalid[2] == valid[0]).all()
    assert [feats.item_ids[c] for c in cols[3][valid[3]]] == ["i1", "i5"]  # same day: the later event first
    two, _ = last_items(feats, ["a"], n=2)
    assert (two[0] == cols[0][:2]).all()


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


def _full_row_last_cooc(x, lc, lv, urow, icol) -> np.ndarray:
    """The former ``last_cooc`` (before scale7): full co-occurrence rows ``xc[:, last].T @ x`` of every last item,
    scaled by 1 / (users of the item), then read per (pair, last item) with scipy's element lookup."""
    import scipy.sparse as sp

    out = np.full(len(icol), np.nan, dtype=np.float32)
    uniq = np.unique(lc[lv])
    if not len(uniq):
        return out
    c = (x.tocsc()[:, uniq].T @ x).tocsr()
    diag = np.asarray(c[np.arange(len(uniq)), uniq]).ravel()
    scale = np.where(diag > 0, 1.0 / np.maximum(diag, 1.0), 0.0).astype(np.float32)
    prob = sp.csr_matrix(sp.diags(scale) @ c, dtype=np.float32)
    lrow = np.searchsorted(uniq, lc)
    idx = np.flatnonzero(lv.any(axis=1)[urow])
    for s in range(0, len(idx), 7):  # another chunking than the features' own: the per-row sums do not depend on it
        j = idx[s : s + 7]
        vm = lv[urow[j]]
        rows = np.where(vm, lrow[urow[j]], 0)
        p = np.asarray(prob[rows.ravel(), np.repeat(icol[j], vm.shape[1])]).ravel().astype(np.float32).reshape(vm.shape)
        out[j] = (p * vm).sum(axis=1) / vm.sum(axis=1)
    return out


@pytest.mark.parametrize("kept_cells", [None, 0, 600, 1 << 20])
@pytest.mark.parametrize("entries", [1, 50, 1 << 18])
@pytest.mark.parametrize("cands", [60, 12])
@pytest.mark.parametrize("cells", [1, 150, 1 << 23])
def test_last_cooc_pairs_are_the_full_rows_bytes(cells, cands, entries, kept_cells):
    """``last_cooc_values`` (counts only for the pairs read, in dense chunks of ``cells`` cells) gives the bytes
    of the full-row computation on a random sparse user-item matrix: a skewed catalogue (head items almost
    dense), users with 0 to 4 valid last items, candidates repeated across users (pairs in no user order),
    chunks of 1 row to all rows, read 1 to all entries at a time; candidates from the whole catalogue, or from
    12 of its 60 items (the counts are then made for those columns only, as for the cold scope's new items);
    without kept rows, with none, 10 of them (the costliest by a random weight) or every weighted row (``kept_cooc_rows``)."""
    import scipy.sparse as sp

    from recsys_assets.lib.ranking.features import kept_cooc_rows, last_cooc_values

    rng = np.random.default_rng(7)
    n_users, n_items, n_last = 400, 60, 4
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.8
    dense = rng.random((n_users, n_items)) < 0.5 * pop / pop.mean() * 0.1
    x = sp.csr_matrix(dense.astype(np.float32))
    xc = x.tocsc()
    served = 90  # the users served: rows of lc / lv
    lc = np.zeros((served, n_last), dtype=np.int64)
    lv = np.zeros((served, n_last), dtype=bool)
    for u in range(served):
        items = np.flatnonzero(dense[u])[: rng.integers(0, n_last + 1)]
        rng.shuffle(items)
        lc[u, : len(items)], lv[u, : len(items)] = items, True
    urow = rng.integers(0, served, 3_000)
    icol = rng.choice(n_items, cands, replace=False)[rng.integers(0, cands, 3_000)]
    want = _full_row_last_cooc(x, lc, lv, urow, icol)
    kept = None if kept_cells is None else kept_cooc_rows(x, xc, rng.integers(0, 3, n_items), cells=kept_cells, chunk=max(cells, 1))
    if kept is not None:
        assert len(kept.rows) == (0 if kept_cells == 0 else 10 if kept_cells == 600 else (kept.pos >= 0).sum())
        assert np.array_equal(kept.rows, (xc[:, kept.pos >= 0].T @ x).toarray())
    calls = []

    def kept_rows():
        calls.append(1)
        return kept

    got = last_cooc_values(x, xc, lc, lv, urow, icol, cells=cells, entries=entries, kept=None if kept is None else kept_rows)
    assert got.dtype == np.float32 and got.tobytes() == want.tobytes()
    # the kept rows are asked for only when the candidates span more than half the catalogue
    assert len(calls) == (kept is not None and cands > n_items // 2)
    assert np.isnan(got).any() and (got[~np.isnan(got)] > 0).any() and (got == 0).any()
    # a wrong share (e.g. counts of the wrong last item) must show: not a vacuous comparison
    assert last_cooc_values(x, xc, np.roll(lc, 1, axis=0), lv, urow, icol, cells=cells, entries=entries, kept=None if kept is None else kept_rows).tobytes() != want.tobytes()
    none = np.zeros_like(lv)
    assert np.isnan(last_cooc_values(x, xc, lc, none, urow, icol, cells=cells)).all()


def _table_profile_lift(features, users, urow, icol, alpha=100.0) -> np.ndarray:
    """The former ``profile_lift`` (before scale7): a (pair, token) table joined with the (token, item) counts,
    sorted by pair and token, summed with ``np.add.at``."""
    from recsys_assets.lib.ranking.features import profile_tokens

    n = len(icol)
    tok = profile_tokens(features.users.filter(pl.col("profile").is_not_null()))
    ev = features.view.history.select(pl.col("user_id").cast(pl.String), pl.col("item_id").cast(pl.String)).join(features.item_index, on="item_id", how="inner")
    share = np.bincount(ev.get_column("icol").to_numpy(), minlength=len(features.item_ids)).astype(np.float64) / max(ev.height, 1)
    t_ev = ev.select("user_id", "icol").join(tok, on="user_id", how="inner")
    n_t = t_ev.group_by("token").len().rename({"len": "n_t"})
    n_tc = t_ev.group_by("token", "icol").len().rename({"len": "n_tc"})
    tok = tok.join(n_t, on="token", how="inner")
    uidx = pl.DataFrame({"user_id": pl.Series(users, dtype=pl.String), "urow": np.arange(len(users), dtype=np.int64)})
    ut = tok.join(uidx, on="user_id", how="inner").select("urow", "token", "n_t")
    has = np.zeros(len(users), dtype=bool)
    has[ut.get_column("urow").unique().to_numpy()] = True
    p = pl.DataFrame({"k": np.arange(n, dtype=np.int64), "urow": urow, "icol": icol}).filter(pl.Series(has[urow]))
    terms = p.join(ut, on="urow", how="inner").join(n_tc, on=["token", "icol"], how="left").with_columns(pl.col("n_tc").fill_null(0)).sort("k", "token")
    s_c = share[terms.get_column("icol").to_numpy()]
    lift = np.log((terms.get_column("n_tc").to_numpy() + alpha) / (terms.get_column("n_t").to_numpy() * s_c + alpha))
    out = np.full(n, np.nan, dtype=np.float64)
    out[p.get_column("k").to_numpy()] = 0.0
    np.add.at(out, terms.get_column("k").to_numpy(), lift)
    return out.astype(np.float32)


@pytest.mark.parametrize("chunk", [7, 1 << 20])
def test_profile_lift_by_token_slots_is_the_tables_bytes(chunk, monkeypatch):
    """``profile_lift`` (token codes, one token slot at a time, in chunks of pairs) gives the bytes of the former
    (pair, token) table on a random world: users with 0 to 7 tokens, tokens nobody with history has,
    users without history or profile, candidates nobody with the token had."""
    from recsys_assets.lib.ranking import features as F

    rng = np.random.default_rng(11)
    users = [f"u{j:02d}" for j in range(60)]
    items = [f"i{j:02d}" for j in range(25)]
    rows = [(users[u], items[min(int(rng.zipf(1.6)) - 1, 24)], int(rng.integers(1, 20))) for u in rng.integers(0, 50, 700)]
    ev = _events(rows)
    created = datetime(2024, 1, 1, tzinfo=timezone.utc)
    cat = pl.DataFrame(
        {"item_id": items, "created_at": [created] * len(items), "first_seen_day": [None] * len(items)},
        schema={"item_id": pl.String, "created_at": pl.Datetime("us", "UTC"), "first_seen_day": pl.Date},
    )
    view = build_view(ev, cat, D, "temporal", "serve", ProtocolConfig())
    words = ["Zeta", "alpha", "beta", "Beta", "gamma", "delta", "omega", "x1", "10", "9"]
    profiles = [None if j % 9 == 0 else " ".join(rng.choice(words, int(rng.integers(0, 8)), replace=False)) for j in range(len(users))]
    profiles[59] = "onlyme"  # a user without history: the token nobody with history has
    feats = SnapshotFeatures(view=view, als=None, users=pl.DataFrame({"user_id": users, "profile": profiles}))
    served = users[::-1]
    urow = rng.integers(0, len(served), 2_000)
    icol = rng.integers(0, len(items), 2_000)
    want = _table_profile_lift(feats, served, urow, icol)
    monkeypatch.setattr(F, "PROFILE_CHUNK", chunk)
    got = F._profile_lift(feats, served, urow, icol)
    assert got.dtype == np.float32 and got.tobytes() == want.tobytes()
    assert np.isnan(got).any() and (got > 0).any() and (got < 0).any()


def _category_feats(cats_per_item: dict[str, list[str]]) -> SnapshotFeatures:
    ev = _events([("a", "i1", 3), ("a", "i2", 2), ("b", "i3", 2)])
    created = datetime(2024, 1, 1, tzinfo=timezone.utc)
    ids = sorted(cats_per_item)
    items = pl.DataFrame(
        {"item_id": ids, "created_at": [created] * len(ids), "first_seen_day": [None] * len(ids), "categories": [cats_per_item[i] for i in ids]},
        schema={"item_id": pl.String, "created_at": pl.Datetime("us", "UTC"), "first_seen_day": pl.Date, "categories": pl.List(pl.String)},
    )
    return SnapshotFeatures(view=build_view(ev, items, D, "temporal", "serve", ProtocolConfig()), als=None)


def test_category_overlap_counts_the_items_categories_the_user_had():
    """Bit masks (at most 64 categories) and the join over (user, category) rows give the same shares; a user
    without history shares nothing (0), an item without categories is NaN."""
    from recsys_assets.lib.ranking import features as F

    # a had x, y (i1) and z (i2); b had w (i3)
    f = _category_feats({"i1": ["x", "y"], "i2": ["z"], "i3": ["w"], "i4": ["x", "w", "v"], "i5": [], "i6": ["y", "z"]})
    cands = pl.DataFrame({"user_id": ["a", "a", "a", "b", "b", "zz"], "item_id": ["i4", "i5", "i6", "i4", "i6", "i4"]})
    got = ranker_features(f, cands, None)["category_overlap"].to_list()
    assert got[:2] == pytest.approx([1 / 3, np.nan], nan_ok=True)
    assert got[2:] == pytest.approx([1.0, 1 / 3, 0.0, 0.0])
    assert F._category_masks(f) is not None
    users = ["a", "b", "zz"]
    urow = np.array([0, 0, 0, 1, 1, 2])
    icol = np.array([f.item_ids.index(i) for i in cands["item_id"]])
    masks = F._category_overlap(f, users, urow, icol)
    joined = F._category_overlap_join(f, users, urow, icol)
    assert np.array_equal(masks, joined, equal_nan=True) and masks.dtype == joined.dtype == np.float32
    # more categories than bits in a mask: the join, with the same shares
    many = _category_feats({"i1": ["x", "y"], "i2": ["z"], "i3": ["w"], "i4": ["x", "w", "v"], "i5": [], "i6": ["y", "z"], "i7": [f"c{j}" for j in range(70)]})
    assert F._category_masks(many) is None
    assert ranker_features(many, cands, None)["category_overlap"].to_list()[2:] == pytest.approx([1.0, 1 / 3, 0.0, 0.0])
