"""``ranker_examples`` reads its labelled users' candidates from the pool ``candidates`` stored on night D - w
only for the sources made from the same inputs and settings there, and the examples are the bytes generating
every candidate again writes (``nightly.earlier_candidate_pool``, ``arms.block_candidates``)."""

from __future__ import annotations

import dagster as dg
import polars as pl

from recsys_assets.defs.resources import IngestResource, LakeResource, ModelsResource
from recsys_assets.lib.day import DaySnapshot, clear_cache
from recsys_assets.lib.ingest.catalog import read_catalog
from recsys_assets.lib.lake import Lake
from recsys_assets.lib.ranking.examples import next_day_labels, write_night_examples
from polars.testing import assert_frame_equal

from recsys_assets.lib.ranking.arms import block_candidates, pool_candidates, pool_sources
from recsys_assets.lib.ranking.nightly import earlier_candidate_pool, load_snapshot_features, ranking_config
from recsys_assets_tests.defs import tiny_world as tw

# label_window_days=1 (the product default): the train view of D is the serve view of D - 1.
MODELS = dict(encoders="tfidf", n_boot=50, als_factors=8, als_iterations=3, rollup_days=7, protocols="temporal,item_holdout", label_window_days=1, device="cpu")
D0, D1 = tw.DAYS[-3], tw.DAYS[-2]
FEATURES = ("item_embeddings", "als_model", "content_to_cf", "user_profiles")
PROTOCOLS = ("temporal", "item_holdout")


def _run(root: str, day, assets: tuple[str, ...], **models) -> dg.ExecuteInProcessResult:
    res = {"lake": LakeResource(root=root), "ingest": IngestResource(), "models": ModelsResource(**{**MODELS, **models})}
    return dg.materialize(tw.all_assets(), selection=dg.AssetSelection.assets(*FEATURES, *assets), resources=res, partition_key=day.isoformat())


def _lake_after_d0(tmp_path) -> tuple[str, Lake]:
    """A tiny world, ingested, with night D0's features and candidate pools."""
    root = str(tmp_path / "lake")
    tw.make_world(root)
    tw.materialize_ingest(root)
    _run(root, D0, ("candidates",))
    return root, Lake.at(root)


def _train_inputs(lake: Lake, protocol: str):
    """Day D1's train-view features, its labels and ranking settings, as ``ranker_examples`` loads them."""
    clear_cache()
    models = ModelsResource(**MODELS)
    cfg = models.feature_config()
    snap = DaySnapshot.of(lake, D1, read_catalog(lake, "items"), cfg)
    view = snap.view(protocol, "train")
    rcfg = ranking_config(lake, D1, cfg, **models.ranking_settings())
    return load_snapshot_features(lake, view, list(rcfg.encoders), cfg), next_day_labels(view, snap.events_before, cfg.interactions), rcfg


def test_examples_read_the_earlier_pool_and_are_the_generated_bytes(tmp_path):
    root, lake = _lake_after_d0(tmp_path)
    meta = tw.metadata(_run(root, D1, ("ranker_examples",)), "ranker_examples")
    for protocol in PROTOCOLS:
        pool_path = lake.recs_dir(D0, protocol).joinpath("candidates.parquet")
        assert meta[f"{protocol}/candidates_from"] == str(pool_path), meta
        # TF-IDF is refitted on each night's catalogue: its sources are generated, the others read.
        assert meta[f"{protocol}/candidate_sources_read"] == "als, popular, new", meta
        feats, labels, rcfg = _train_inputs(lake, protocol)
        assert earlier_candidate_pool(lake, feats, rcfg) == (pool_path, ("als", "popular", "new"))
        assert labels.height and meta[f"{protocol}/n_rows"] > 0
        # Generating every labelled user's candidates again: the same file, byte for byte.
        fresh = Lake.at(str(tmp_path / f"fresh_{protocol}")).root.joinpath("ranker_examples.parquet")
        write_night_examples(feats, labels, rcfg, fresh, block_users=3)
        assert lake.ranker_examples_file(D1, protocol).read_bytes() == fresh.read_bytes()
        # The merged candidates are the generated ones, whichever sources are read (all of them: as if every
        # input were the same), and a pool that lacks a block's user gets that block generated.
        pool = pl.read_parquet(pool_path.read_bytes())
        users = labels.get_column("user_id").unique().sort().to_list()
        sources = pool_sources(rcfg)
        generated = pool_candidates(feats, users, sources, rcfg)
        for read in (("als", "popular", "new"), ("popular",)):
            assert_frame_equal(block_candidates(feats, users, sources, rcfg, pool.lazy(), every_user=True, pool_sources=read), generated)
        every = block_candidates(feats, users, sources, rcfg, pool.lazy(), every_user=True, pool_sources=sources[::-1])
        assert_frame_equal(every, pool.filter(pl.col("user_id").is_in(users)))
        partial = Lake.at(str(tmp_path / f"partial_{protocol}")).root.joinpath("ranker_examples.parquet")
        without = pool.filter(pl.col("user_id") != users[0]).lazy()
        write_night_examples(feats, labels, rcfg, partial, block_users=3, pool=without, pool_sources=("als", "popular", "new"))
        assert partial.read_bytes() == fresh.read_bytes()


def test_no_reuse_when_the_inputs_or_the_settings_differ(tmp_path):
    root, lake = _lake_after_d0(tmp_path)
    # Other ranking settings: D0's pool was not made with them.
    meta = tw.metadata(_run(root, D1, ("ranker_examples",), max_train_users=7), "ranker_examples")
    assert {meta[f"{p}/candidates_from"] for p in PROTOCOLS} == {"generated"}, meta
    # Late data: a day before D0 republished with one event less (same days, same cutoff).
    path = lake.events_day(tw.DAYS[3])
    pl.read_parquet(path.read_bytes()).slice(1).write_parquet(str(path))
    clear_cache()
    meta = tw.metadata(_run(root, D1, ("ranker_examples",)), "ranker_examples")
    assert {meta[f"{p}/candidates_from"] for p in PROTOCOLS} == {"generated"}, meta
    # The pool's record is gone (a pool being rewritten): generated.
    _run(root, D0, ("candidates",))
    clear_cache()
    assert tw.metadata(_run(root, D1, ("ranker_examples",)), "ranker_examples")["temporal/candidates_from"] != "generated"
    lake.recs_dir(D0, "temporal").joinpath("candidates.json").unlink()
    clear_cache()
    assert tw.metadata(_run(root, D1, ("ranker_examples",)), "ranker_examples")["temporal/candidates_from"] == "generated"
