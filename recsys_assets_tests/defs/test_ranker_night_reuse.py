"""``ranker_dataset`` stores each arm's training rows one file per night, and takes a night the day before already
made from the same examples file and settings from there (a hard link on a local lake) instead of making it again:
the files are the bytes making every night again writes, and anything that changes a night's rows makes it again
(``nightly._write_arm_dataset``)."""

from __future__ import annotations

import json
import os

import dagster as dg
import polars as pl

from recsys_assets.defs.resources import IngestResource, LakeResource, ModelsResource
from recsys_assets.lib.lake import Lake, read_parquet, write_parquet_atomic
from recsys_assets.lib.ranking.arms import ranker_arm_names
from recsys_assets.lib.ranking.config import RankingConfig
from recsys_assets_tests.defs import tiny_world as tw

MODELS = dict(encoders="tfidf", n_boot=50, als_factors=8, als_iterations=3, rollup_days=7, protocols="temporal,item_holdout", label_window_days=1, device="cpu")
D0, D1 = tw.DAYS[-3], tw.DAYS[-2]
FEATURES = ("item_embeddings", "als_model", "content_to_cf", "user_profiles")
PROTOCOLS = ("temporal", "item_holdout")
ARMS = ranker_arm_names(RankingConfig(encoders=("tfidf",)))


def _run(root: str, day, assets: tuple[str, ...], **models) -> dict:
    res = {"lake": LakeResource(root=root), "ingest": IngestResource(), "models": ModelsResource(**{**MODELS, **models})}
    result = dg.materialize(tw.all_assets(), selection=dg.AssetSelection.assets(*FEATURES, *assets), resources=res, partition_key=day.isoformat())
    return tw.metadata(result, "ranker_dataset")


def _files(lake: Lake, day) -> dict[str, bytes]:
    return {str(p.relative_to(lake.root)): p.read_bytes() for pr in PROTOCOLS for arm in ARMS for p in lake.ranker_dataset_dir(day, pr, arm).iterdir()}


def test_night_files_are_linked_from_the_day_before_and_are_the_made_bytes(tmp_path):
    root = str(tmp_path / "lake")
    tw.make_world(root)
    tw.materialize_ingest(root)
    lake = Lake.at(root)
    meta0 = _run(root, D0, ("ranker_examples", "ranker_dataset"))
    meta1 = _run(root, D1, ("ranker_examples", "ranker_dataset"))
    for protocol in PROTOCOLS:
        for arm in ARMS:
            nights0, nights1 = lake.ranker_dataset_files(D0, protocol, arm), lake.ranker_dataset_files(D1, protocol, arm)
            assert meta0[f"{protocol}/{arm}/nights_reused"] == 0
            # D1 trains on D0's nights plus its own: every night D0 made is taken from there, as a link.
            assert [p.name for p in nights1] == [p.name for p in nights0] + [f"examples={D1}.parquet"]
            assert meta1[f"{protocol}/{arm}/nights_reused"] == len(nights0) > 0, meta1
            for a in nights0:
                assert os.stat(a.path).st_ino == os.stat((lake.ranker_dataset_dir(D1, protocol, arm) / a.name).path).st_ino
    linked = _files(lake, D1)
    # ranker_examples records its night's queries from its own stats: the users of the file
    for day in (D0, D1):
        for protocol in PROTOCOLS:
            path = lake.ranker_examples_file(day, protocol)
            queries = json.loads(path.with_suffix(".json").read_bytes())["queries"]
            assert queries == read_parquet(path)["user_id"].n_unique() > 0

    # Made again from nothing (no earlier day's files): the same bytes.
    for protocol in PROTOCOLS:
        for arm in ARMS:
            for p in [*lake.ranker_dataset_dir(D0, protocol, arm).iterdir(), *lake.ranker_dataset_dir(D1, protocol, arm).iterdir()]:
                p.unlink()
    again = _run(root, D1, ("ranker_dataset",))
    assert _files(lake, D1) == linked
    assert all(again[f"{p}/{arm}/nights_reused"] == 0 for p in PROTOCOLS for arm in ARMS)
    # A rerun of the day takes its own files, and removes the one-file layout of earlier code.
    legacy = [lake.ranker_dataset_dir(D1, p, arm).parent / f"{arm}.parquet" for p in PROTOCOLS for arm in ARMS]
    for f in legacy:
        f.write_bytes(b"14 nights of rows, as earlier code stored them")
    rerun = _run(root, D1, ("ranker_dataset",))
    assert _files(lake, D1) == linked and not any(f.exists() for f in legacy)
    assert all(rerun[f"{p}/{arm}/nights_reused"] == rerun[f"{p}/{arm}/nights"] for p in PROTOCOLS for arm in ARMS)

    # Another per-night user cap changes every night's key: each is made again, and its rows are capped.
    capped = _run(root, D1, ("ranker_dataset",), max_train_users=2)
    assert all(capped[f"{p}/{arm}/nights_reused"] == 0 for p in PROTOCOLS for arm in ARMS)
    assert all(capped[f"{p}/{arm}/n_rows"] < rerun[f"{p}/{arm}/n_rows"] for p in PROTOCOLS for arm in ARMS)
    _run(root, D1, ("ranker_dataset",))
    assert _files(lake, D1) == linked

    # Examples republished with one row less (and no digest record, as another writer would leave them): the
    # night is made again from them, the other nights are still taken.
    examples = lake.ranker_examples_file(D1, "temporal")
    examples.with_suffix(".json").unlink()
    rows = read_parquet(examples)
    write_parquet_atomic(rows.slice(1), examples)
    changed = _run(root, D1, ("ranker_dataset",))
    for arm in ARMS:
        assert changed[f"temporal/{arm}/nights_reused"] == rerun[f"temporal/{arm}/nights"] - 1
        night = read_parquet(lake.ranker_night_file(D1, "temporal", arm, D1))
        assert night.height <= pl.read_parquet(linked[str(lake.ranker_night_file(D1, "temporal", arm, D1).relative_to(lake.root))]).height
    assert all(changed[f"item_holdout/{arm}/nights_reused"] == rerun[f"item_holdout/{arm}/nights"] for arm in ARMS)
