"""The study's tables, written by a real day_job materialization on a tiny synthetic world.

One day, the fusion base (minilm-l6), its title-only variant, TF-IDF and metadata: the
encoder_study asset measures each encoder's cost, evaluates the categorical-attribute
baseline of new users and writes reports.encoder_study / fusion_ablation / new_user_text;
a rerun of the asset writes the same rows (the cost measurement is stored, not redone).
"""

from __future__ import annotations

import dagster as dg
import polars as pl
import pytest

from recsys_assets.lib.evaluation.warehouse import Warehouse
from recsys_assets.lib.features.encoders import encoder_spec
from recsys_assets_tests.defs.tiny_world import LAST_DAY, all_assets, make_world, materialize_day, materialize_ingest, metadata, resources

ENCODERS = "minilm-l6,minilm-l6@title,tfidf,metadata"
pytestmark = pytest.mark.slow  # a real day_job with a language model: ~1 min on an idle 2-core machine


@pytest.fixture(scope="module")
def study_lake(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("study_lake"))
    make_world(root)
    materialize_ingest(root)
    result = materialize_day(root, LAST_DAY, encoders=ENCODERS, raise_on_error=True)
    return root, result


def _tables(root: str) -> dict[str, pl.DataFrame]:
    wh = Warehouse(f"{root}/warehouse.duckdb")
    return {t: wh.query(f"SELECT * FROM reports.{t} ORDER BY ALL") for t in ("encoder_study", "fusion_ablation", "new_user_text")}


def test_encoder_study_rows_carry_cost_and_lift(study_lake):
    root, result = study_lake
    es = _tables(root)["encoder_study"]
    assert set(es["encoder"]) == {"minilm-l6", "tfidf", "metadata"}  # variants belong to the fusion table
    assert (es["window_end"] == LAST_DAY).all()
    lm = es.filter(pl.col("encoder") == "minilm-l6").row(0, named=True)
    assert lm["is_lm"] and lm["params"] == encoder_spec("minilm-l6").params and lm["dim"] == 384
    assert lm["texts_per_s"] > 0 and lm["catalogue_seconds"] > 0
    assert lm["vector_bytes"] == lm["catalogue_texts"] * lm["dim"] * 4
    assert not es.filter(pl.col("encoder") == "tfidf")["is_lm"].any()
    new_users = es.filter(pl.col("cell") == "new_users")
    assert new_users.height == 3 and new_users["lift_vs_no_text"].is_not_null().all()
    assert new_users["pareto"].any()
    meta = metadata(result, "encoder_study")
    assert meta["encoder_study_rows"] == es.height


def test_fusion_rows_name_the_encoder_serving_each_variant(study_lake):
    root, _ = study_lake
    fu = _tables(root)["fusion_ablation"].filter(pl.col("cell") == "new_users").sort("step")
    assert fu["variant"].to_list() == ["no language model", "title", "meta", "desc", "image"]
    by_variant = {r["variant"]: r for r in fu.iter_rows(named=True)}
    assert by_variant["title"]["encoder"] == "minilm-l6@title"
    # The synthetic catalogue has descriptions: "meta" needs its own encoder, not switched on here.
    assert by_variant["meta"]["encoder"] is None and "not switched on" in by_variant["meta"]["note"]
    # No attributes: "desc" has the default template's inputs.
    assert by_variant["desc"]["encoder"] == "minilm-l6" and "same inputs" in by_variant["desc"]["note"]
    assert by_variant["image"]["encoder"] is None and by_variant["image"]["flag"] == "skipped"
    assert by_variant["title"]["lift_vs_no_text"] is not None


def test_new_user_text_compares_profile_text_with_plain_attributes(study_lake):
    root, _ = study_lake
    nu = _tables(root)["new_user_text"]
    pairs = set(zip(nu["arm"], nu["baseline_arm"]))
    assert ("content_attributes", "popularity") in pairs
    assert ("content_minilm-l6", "content_attributes") in pairs and ("ranker_minilm-l6", "popularity") in pairs
    assert (nu["n_users"] > 0).all()


def test_rerun_writes_the_same_study_rows(study_lake):
    root, _ = study_lake
    before = _tables(root)
    dg.materialize(all_assets(), selection=dg.AssetSelection.assets("encoder_study"), resources=resources(root, ENCODERS), partition_key=LAST_DAY.isoformat())
    after = _tables(root)
    for name in before:
        assert before[name].equals(after[name]), name


def test_study_prints_the_answer_before_the_tables(study_lake):
    import io

    from recsys_assets.cli_study import print_study
    from recsys_assets.lib.lake import Lake
    from recsys_assets.lib.study.answer import COST, NEW_USERS, SIZE

    root, _ = study_lake
    out = io.StringIO()
    print_study(Lake.at(root), LAST_DAY, out=out)
    text = out.getvalue()
    lines = text.splitlines()
    assert lines[0].startswith("The answer, window")
    first_table = text.index("Encoder study, window")
    for question in (SIZE, COST, NEW_USERS):
        assert 0 < text.index(question) < first_table, question
    assert text.index("Fusion ablation") > first_table and "New users' profile text" in text


def test_the_first_nights_cold_encode_is_the_measured_cost(study_lake):
    """On a fresh lake item_embeddings encodes the catalogue cold: that run is stored as the cost, and
    encoder_study does not encode the catalogue a second time to time it (minutes on a shop catalogue)."""
    import json

    from recsys_assets.lib.features.nightly import read_npz
    from recsys_assets.lib.lake import Lake

    root, _ = study_lake
    lake = Lake.at(root)
    for name in ("minilm-l6", "minilm-l6@title"):
        _, emb_meta = read_npz(lake.embeddings_file(LAST_DAY, name))
        assert emb_meta["cache_hits"] == 0 and emb_meta["texts_encoded"] > 0
        (cost_file,) = list(lake.study_cost_file(name, "x").parent.glob("*.json"))
        cost = json.loads(cost_file.read_text())
        assert cost["texts"] == emb_meta["texts_encoded"] and cost["measured_on"] == LAST_DAY.isoformat()
        assert abs(cost["seconds"] - emb_meta["encode_seconds"]) < 1e-3, (cost, emb_meta)
