"""``als_model`` reuses night D - w's serve model as day D's training model only when it was fitted on
the same events and settings, and the reused files are the bytes a fresh fit writes."""

from __future__ import annotations

import dagster as dg
import polars as pl

from recsys_assets.defs.resources import IngestResource, LakeResource, ModelsResource
from recsys_assets.lib.artifacts import recorded_provenance
from recsys_assets.lib.day import DaySnapshot, clear_cache
from recsys_assets.lib.features.nightly import fit_view_als
from recsys_assets.lib.ingest.catalog import read_catalog
from recsys_assets.lib.lake import Lake
from recsys_assets_tests.defs import tiny_world as tw

# label_window_days=1 (the product default): the train view of D is the serve view of D - 1.
MODELS = dict(encoders="tfidf", n_boot=50, als_factors=8, als_iterations=3, rollup_days=7, protocols="temporal,item_holdout", label_window_days=1, device="cpu")
D0, D1 = tw.DAYS[-3], tw.DAYS[-2]


def _als(root: str, day, **models) -> dg.ExecuteInProcessResult:
    res = {"lake": LakeResource(root=root), "ingest": IngestResource(), "models": ModelsResource(**{**MODELS, **models})}
    return dg.materialize(tw.all_assets(), selection=dg.AssetSelection.assets("als_model"), resources=res, partition_key=day.isoformat())


def _bytes(directory) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def _lake_after_d0(tmp_path) -> tuple[str, Lake]:
    """A tiny world, ingested, with night D0's ALS models."""
    root = str(tmp_path / "lake")
    tw.make_world(root)
    tw.materialize_ingest(root)
    _als(root, D0)
    return root, Lake.at(root)


def test_training_als_is_the_earlier_serve_fit_byte_for_byte(tmp_path):
    root, lake = _lake_after_d0(tmp_path)
    meta = tw.metadata(_als(root, D1), "als_model")
    for protocol in ("temporal", "item_holdout"):
        assert meta[f"{protocol}/train/reused_from"] == str(lake.als_dir(D0, protocol, "serve")), meta
        assert f"{protocol}/serve/reused_from" not in meta  # the serve view of D is new every night
        # What a fit from scratch writes for D's training view: the same bytes.
        clear_cache()
        cfg = ModelsResource(**MODELS).feature_config()
        view = DaySnapshot.of(lake, D1, read_catalog(lake, "items"), cfg).view(protocol, "train")
        model, _ = fit_view_als(view, cfg)
        fresh = Lake.at(str(tmp_path / f"fresh_{protocol}")).root
        with recorded_provenance(view.provenance()):
            model.save(fresh)
        assert _bytes(lake.als_dir(D1, protocol, "train")) == _bytes(fresh)


def test_no_reuse_when_the_events_or_the_settings_differ(tmp_path):
    root, lake = _lake_after_d0(tmp_path)
    # Other ALS settings: D0's serve model is not D1's training model.
    meta = tw.metadata(_als(root, D1, als_factors=4), "als_model")
    assert "temporal/train/reused_from" not in meta, meta
    # Late data: a day before D0 republished with one event less (same days, same cutoff).
    day = tw.DAYS[3]
    path = lake.events_day(day)
    pl.read_parquet(path.read_bytes()).slice(1).write_parquet(str(path))
    clear_cache()
    meta = tw.metadata(_als(root, D1), "als_model")
    assert "temporal/train/reused_from" not in meta and "item_holdout/train/reused_from" not in meta, meta
