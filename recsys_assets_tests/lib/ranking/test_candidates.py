"""Candidate sources: seen excluded, catalogue only, flags kept, arms differ only in text (c)."""

from __future__ import annotations

import numpy as np
import polars as pl

from recsys_assets.lib.ranking.candidates import ARM_SOURCES, BASE_SOURCES, arm_sources, generate_candidates, source_column
from recsys_assets.lib.ranking.features import FEATURES_NO_TEXT, feature_names, ranker_features, text_feature_names
from recsys_assets_tests.lib.ranking.conftest import CFG
from recsys_assets_tests.lib.ranking.world import TOPIC, TOPIC_C2CF, TOPIC_C2CF_SOURCE, TOPIC_CONTENT_SOURCE, TOPIC_COS


def _all_users(world):
    return sorted(set(world.user_topic)) + ["never-seen-user"]


def test_sources_respect_seen_catalog_and_segments(world, serve_features):
    sf = serve_features
    users = _all_users(world)
    sources = arm_sources(f"ranker_{TOPIC}")
    c = generate_candidates(sf, users, sources, CFG)
    assert c.select("user_id", "item_id").is_duplicated().sum() == 0
    assert c.join(sf.view.seen, on=["user_id", "item_id"], how="semi").height == 0
    assert set(c.get_column("item_id").unique().to_list()) <= set(sf.view.catalog.get_column("item_id").to_list())
    # every row comes from at least one source and keeps every flag
    flags = [source_column(s) for s in sources]
    assert c.select(pl.any_horizontal(flags).all()).item()
    seg = sf.view.item_stats.select("item_id", "item_segment")
    c2cf = c.filter(pl.col(TOPIC_C2CF_SOURCE)).join(seg, on="item_id")
    assert c2cf.height > 0 and set(c2cf.get_column("item_segment").unique()) == {"new"}
    new = c.filter(pl.col("source_new")).join(seg, on="item_id")
    assert set(new.get_column("item_segment").unique()) <= {"new", "cold"}
    per_src = c.group_by("user_id").agg([pl.col(f).sum() for f in flags])
    assert per_src.select(pl.max_horizontal([pl.col(f).max() for f in flags])).item() <= max(CFG.n_als, CFG.n_content)
    # ALS: users without factors get none; content: users without a vector get none
    als_users = set(c.filter(pl.col("source_als")).get_column("user_id").unique().to_list())
    assert "never-seen-user" not in als_users and not als_users & set(world.new_users)
    assert als_users == {u for u in users if u in set(sf.als.user_ids)}
    content_users = set(c.filter(pl.col(TOPIC_CONTENT_SOURCE)).get_column("user_id").unique().to_list())
    with_profile_text = set(world.profile_vectors[TOPIC][0])
    assert with_profile_text <= content_users  # brand-new users with a profile text get text candidates
    assert not (set(world.new_users) - with_profile_text) & content_users
    # popular: the same list for everyone, minus what they saw
    pop = c.filter(pl.col("source_popular"))
    assert pop.group_by("user_id").len().get_column("len").min() == CFG.n_popular
    top = sf.item_table.sort("n_recent", "n_interactions", descending=True).get_column("item_id")[0]
    ghost = pop.filter(pl.col("user_id") == "never-seen-user").sort("rank_popular").get_column("item_id")[0]
    assert ghost == top


def test_no_text_arm_has_no_text_features_or_sources(world, serve_features):
    assert ARM_SOURCES["ranker_no_text"] == BASE_SOURCES
    for enc in CFG.encoders:
        text = text_feature_names(enc)
        assert not set(text) & set(FEATURES_NO_TEXT)
        assert feature_names(enc) == FEATURES_NO_TEXT + text
        assert set(arm_sources(f"ranker_{enc}")) - set(BASE_SOURCES) == {f"content:{enc}", f"c2cf:{enc}"}
    bad_words = ("text", "cos", "c2cf", "content", *CFG.encoders)
    assert not [f for f in feature_names(None) if any(w in f for w in bad_words)]

    users = _all_users(world)
    c0 = generate_candidates(serve_features, users, arm_sources("ranker_no_text"), CFG)
    c1 = generate_candidates(serve_features, users, arm_sources(f"ranker_{TOPIC}"), CFG)
    assert not [col for col in c0.columns if "content" in col or "c2cf" in col]
    # the text arm's pool restricted to the shared sources IS the no-text pool, row for row
    shared = [source_column(s) for s in BASE_SOURCES]
    c1_base = c1.filter(pl.any_horizontal(shared)).select(c0.columns)
    assert c1_base.equals(c0)
    f0 = ranker_features(serve_features, c0, None)
    f1 = ranker_features(serve_features, c1_base, TOPIC)
    assert f1.select(f0.columns).equals(f0)  # the shared features are identical on the shared rows
    assert list(f0.columns[2:]) == FEATURES_NO_TEXT


def test_missing_signals_are_nan_not_zero(world, serve_features):
    users = world.new_users[10:12]  # no history, no profile text
    c = generate_candidates(serve_features, users, arm_sources(f"ranker_{TOPIC}"), CFG)
    f = ranker_features(serve_features, c, TOPIC)
    assert f.height > 0
    for col in ("als_score", TOPIC_COS, TOPIC_C2CF, "als_rank"):
        assert f.get_column(col).is_nan().all(), col
    assert (f.get_column("user_is_new") == 1).all()
    new_items = serve_features.item_table.filter(pl.col("item_segment") == "new").get_column("item_id")
    warm_user = sorted(serve_features.als.user_ids)[0]
    cw = generate_candidates(serve_features, [warm_user], arm_sources(f"ranker_{TOPIC}"), CFG)
    fw = ranker_features(serve_features, cw, TOPIC)
    on_new = fw.filter(pl.col("item_id").is_in(new_items.implode()))
    assert on_new.height and on_new.get_column("als_score").is_nan().all()  # new items have no ALS factors
    assert not on_new.get_column(TOPIC_C2CF).is_nan().any()  # ... but pseudo factors from text
    assert np.isfinite(fw.filter(pl.col("source_als") == 1).get_column("als_score").to_numpy()).all()


def test_ordered_list_source_is_the_scored_block_bytes():
    """The popular / new sources (``_ordered_list_source``: each user's first n unseen list entries) give the
    arrays of :func:`topn_block` on the list's first ``n + max(seen)`` entries scored by decreasing position:
    heavy-tailed seen counts (users who saw most of the list), users past the list's end, a subset of rows."""
    import pytest
    import scipy.sparse as sp

    from recsys_assets.lib.ranking.candidates import _ordered_list_source, topn_block

    rng = np.random.default_rng(5)
    n_users, n_items = 300, 80
    cnt = np.minimum((rng.pareto(1.0, n_users) * 3).astype(int), n_items)
    rows = np.repeat(np.arange(n_users), cnt)
    seen = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, rng.integers(0, n_items, len(rows)))), shape=(n_users, n_items))
    order = rng.permutation(n_items)[:70]  # not every catalogue item is listed
    seen = seen.tolil()
    seen[0, :] = 1.0  # saw everything
    seen[1, order[:68]] = 1.0  # saw all but two listed items
    seen = seen.tocsr()
    seen.sum_duplicates()
    values = rng.normal(size=n_items)

    def scored(n, user_rows):
        cols = order[: n + int(np.diff(seen.indptr).max(initial=0))]
        pseudo = -np.arange(len(cols), dtype=np.float32)
        u, c, _, r = topn_block(n, seen, user_rows, cols, lambda rr: np.broadcast_to(pseudo, (len(rr), len(cols))), n_items)
        return u, c, values[c].astype(np.float32), r

    assert np.diff(seen.indptr).max() > 60 and (np.diff(seen.indptr) == 0).any()
    for n in (1, 5, 30, 100):
        for user_rows in (np.arange(n_users), np.sort(rng.choice(n_users, 40, replace=False)), np.zeros(0, np.int64)):
            got, want = _ordered_list_source(order, values, n, seen, user_rows, n_items), scored(n, user_rows)
            for g, w in zip(got, want):
                assert g.dtype == w.dtype and g.tobytes() == w.tobytes(), (n, len(user_rows))
    assert len(_ordered_list_source(order, values, 0, seen, np.arange(n_users), n_items)[0]) == 0
    with pytest.raises(AssertionError):  # not vacuous: another list order gives other arrays
        got = _ordered_list_source(order[::-1], values, 5, seen, np.arange(n_users), n_items)
        assert got[1].tobytes() == scored(5, np.arange(n_users))[1].tobytes()


def test_merged_pool_is_the_group_by_of_the_sources(world, serve_features):
    """One row per (user, item) with each source's score and rank where it proposed the pair: the numpy merge
    gives what a group-by of the sources' rows gives (the frame it replaced), sorted by user then item."""
    from recsys_assets.lib.ranking.candidates import rank_column, score_column, source_topn

    sf = serve_features
    users = _all_users(world)
    sources = tuple(dict.fromkeys(s for enc in CFG.encoders for s in arm_sources(f"ranker_{enc}")))
    got = generate_candidates(sf, users, sources, CFG)
    seen = sf.seen_matrix(users)
    parts = []
    for src in sources:
        u, c, s, r = source_topn(sf, src, CFG.pool_size(src), users, seen)
        parts.append(pl.DataFrame({"urow": u, "icol": c, score_column(src): s.astype(np.float32), rank_column(src): r.astype(np.int32)}))
    merged = pl.concat(parts, how="diagonal").group_by("urow", "icol").agg(pl.all().max()).sort("urow", "icol")
    want = merged.select(
        pl.Series("user_id", users).gather(merged["urow"]),
        pl.Series("item_id", sf.item_ids).gather(merged["icol"]),
        *[pl.col(rank_column(s)).is_not_null().alias(source_column(s)) for s in sources],
        *[pl.col(score_column(s)) for s in sources],
        *[pl.col(rank_column(s)) for s in sources],
    )
    assert got.height > 0 and got.equals(want)
    assert got.schema == want.schema
