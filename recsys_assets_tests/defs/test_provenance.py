"""Every model records what it was fitted on, and the leakage audit reads it (not the code that built it)."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from recsys_assets.lib.features.als import META_FILE
from recsys_assets.lib.features.nightly import read_npz_meta, view_artifact_metas
from recsys_assets.lib.lake import Lake, write_bytes_atomic
from recsys_assets.lib.snapshot import day_start
from recsys_assets_tests.defs import tiny_world as tw


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Lake:
    root = str(tmp_path_factory.mktemp("provenance") / "lake")
    tw.make_world(root)
    tw.materialize_ingest(root)
    assert tw.materialize_day(root).success
    return Lake.at(root)


def _eval_again(lake: Lake) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        tw.all_assets(), selection=dg.AssetSelection.assets("cold_start_eval"), resources=tw.resources(str(lake.root.path)),
        partition_key=tw.LAST_DAY.isoformat(), raise_on_error=False,
    )


def _check(result: dg.ExecuteInProcessResult):
    (ev,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "leakage_audit"]
    return ev


def test_every_model_of_the_snapshot_records_its_data_cutoff(lake):
    metas = view_artifact_metas(lake, tw.LAST_DAY, "temporal", "serve")
    assert any(name.startswith("als/") for name in metas) and any(name.startswith("profiles_") for name in metas), sorted(metas)
    for name, meta in metas.items():
        prov = meta["provenance"]
        assert prov["snapshot"] == tw.LAST_DAY.isoformat() and prov["stage"] == "serve", (name, prov)
        assert prov["data_cutoff"] == day_start(tw.LAST_DAY).isoformat()
        assert prov["events_max_ts"] < day_start(tw.LAST_DAY).isoformat()
    train = read_npz_meta(lake.profiles_file(tw.LAST_DAY, "temporal", "train", "tfidf"))["provenance"]
    assert train["stage"] == "train" and train["data_cutoff"] < day_start(tw.LAST_DAY).isoformat()


def test_a_model_fitted_on_day_d_fails_the_audit(lake):
    path = lake.als_dir(tw.LAST_DAY, "temporal", "serve").joinpath(META_FILE)
    original = path.read_bytes()
    meta = json.loads(original)
    meta["provenance"]["events_max_ts"] = day_start(tw.LAST_DAY).isoformat()  # as if day D had been a model input
    write_bytes_atomic(path, json.dumps(meta).encode())
    try:
        result = _eval_again(lake)
        check = _check(result)
        assert not result.success and not check.passed
        assert "als/als_model.json was fitted on events up to" in check.metadata["problems"].value
        # A model that records nothing is refused too: its cutoff is unknown.
        del meta["provenance"]
        write_bytes_atomic(path, json.dumps(meta).encode())
        check = _check(_eval_again(lake))
        assert not check.passed and "records no provenance" in check.metadata["problems"].value
    finally:
        write_bytes_atomic(path, original)
    assert _check(_eval_again(lake)).passed
