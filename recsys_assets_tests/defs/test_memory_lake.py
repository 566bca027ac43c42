"""The lake on a non-local fsspec filesystem (``memory://``): ingest, then a whole day graph."""

from __future__ import annotations

import os
import uuid

import fsspec
import pytest

from recsys_assets.lib.evaluation.warehouse import Warehouse
from recsys_assets.lib.lake import Lake, read_parquet
from recsys_assets_tests.defs import tiny_world as tw


@pytest.fixture
def memory_root(monkeypatch, tmp_path):
    monkeypatch.delenv("RECSYS_LAKE", raising=False)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    # Local scratch (warehouse copies, model cache) goes to tmp; the cwd must stay empty.
    monkeypatch.setenv("TMPDIR", str(tmp_path / "scratch"))
    (tmp_path / "scratch").mkdir()
    monkeypatch.setenv("RECSYS_MODEL_CACHE", str(tmp_path / "models"))
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    name = f"recsys-test-{uuid.uuid4().hex[:8]}"
    yield f"memory://{name}", name, work
    fs = fsspec.filesystem("memory")
    if fs.exists(f"/{name}"):
        fs.rm(f"/{name}", recursive=True)


def test_ingest_and_day_graph_on_a_memory_lake(memory_root):
    root, name, cwd = memory_root
    fs = fsspec.filesystem("memory")
    lake = tw.make_world(root)
    assert lake.root.protocol == "memory"
    assert fs.ls(f"/{name}/landing/events", detail=False)

    cat, ev = tw.materialize_ingest(root)
    assert cat.success and ev.success
    assert tw.metadata(ev, "events")["reconciles"] is True
    for day in tw.DAYS:
        assert fs.exists(f"/{name}/events/day={day.isoformat()}/part-0.parquet"), day
    assert fs.exists(f"/{name}/items/catalog.parquet") and fs.exists(f"/{name}/users/catalog.parquet")
    assert lake.event_days() == tw.DAYS
    assert lake.read_events().height == tw.metadata(ev, "events")["rows_written"]

    res = tw.materialize_day(root)
    assert res.success
    assert {"item_embeddings", "als_model", "rankers", "recommendations", "cold_start_eval", "cold_start_lift",
            "lift_rollup", "analyst_views"} <= tw.materialized(res)

    d = tw.LAST_DAY.isoformat()
    files = set(fs.find(f"/{name}"))
    for expected in (f"/{name}/models/snapshot={d}/embeddings/tfidf.npz", f"/{name}/reports/index.html",
                     f"/{name}/warehouse.duckdb"):
        assert expected in files, sorted(files)[:50]
    assert any(f.startswith(f"/{name}/recs/day={d}/") for f in files)
    assert any(f.startswith(f"/{name}/eval/day={d}/") for f in files)
    # No temp file is left behind on the object store.
    assert not [f for f in files if f.rsplit("/", 1)[-1].startswith(".") and f.endswith(".tmp")]
    html = fs.cat(f"/{name}/reports/index.html").decode()
    assert "Cold-start lift" in html

    # The warehouse was uploaded to memory://; a fresh Warehouse downloads it and finds lift rows.
    wh = Warehouse(f"{root}/warehouse.duckdb")
    lift = wh.query("SELECT * FROM reports.cold_start_lift WHERE day = ?", [tw.LAST_DAY])
    assert lift.height > 0 and set(lift["arm"]) == {"ranker_tfidf"}
    assert tw.metadata(res, "cold_start_lift")["rows"] == lift.height
    assert wh.query("SELECT count(*) AS n FROM reports.cold_start_lift_rollup")["n"][0] > 0
    wh.close()

    recs = [f for f in files if f.startswith(f"/{name}/recs/day={d}/") and f.endswith(".parquet")]
    assert read_parquet(Lake.at(root).path(*recs[0].strip("/").split("/")[1:])).height > 0

    # Nothing of the lake landed on the local disk (no ./data_lake, no "memory:" folder).
    assert os.listdir(cwd) == []
