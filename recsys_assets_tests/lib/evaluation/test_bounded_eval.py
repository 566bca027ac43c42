"""The evaluation's memory-bounded pieces give what the plain polars calls give: sort_rows is frame.sort,
FrameSpill is pl.concat, and the rollup's read-time filter of trivial cells is the join it replaced."""

from __future__ import annotations

import io
from datetime import date

import numpy as np
import polars as pl
import pytest

from recsys_assets.lib.evaluation.evaluate import ARM_STATS_SCHEMA, PER_USER_KEYS, PER_USER_SCHEMA, RANKED_ITEMS, FrameSpill, sort_rows
from recsys_assets.lib.evaluation.lift import pool_days
from recsys_assets.lib.evaluation.reporting import drop_trivial, load_per_user, pooled_window, ranked_items, save_eval
from recsys_assets.lib.lake import Lake

D0 = date(2024, 3, 1)


def _rows(n: int, seed: int) -> pl.DataFrame:
    """Per-user rows in random order: string keys (non-ASCII and upper case too), an integer key, unique keys."""
    rng = np.random.default_rng(seed)
    frame = pl.DataFrame(
        {
            "protocol": rng.choice(["temporal", "item_holdout"], n),
            "scope": rng.choice(["full", "cold_only"], n),
            "arm": rng.choice(["als", "Popularity", "ranker_é", "ranker_tfidf"], n),
            "segment_kind": rng.choice(["all", "user", "item_bucket"], n),
            "segment": rng.choice(["all", "new", "10-19", "3-4", "50+"], n),
            "bucket_order": rng.integers(0, 7, n).astype(np.int32),
            "user_id": [f"u{i}" for i in rng.integers(0, n // 3 + 1, n)],
            "metric": rng.choice(["recall", "ndcg", "mrr"], n),
            "k": rng.choice([10, 20, 5], n),
            "value": rng.random(n),
        }
    ).cast(PER_USER_SCHEMA)
    return frame.unique(PER_USER_KEYS, keep="first", maintain_order=True)


@pytest.mark.parametrize("seed", [0, 1])
def test_sort_rows_is_frame_sort_and_writes_the_same_bytes(seed):
    frame = _rows(20_000, seed)
    ref = frame.sort(PER_USER_KEYS)
    got = sort_rows(frame, PER_USER_KEYS)
    assert got.equals(ref)
    # Already sorted but in several chunks (protocols concatenated): one chunk out, the same Parquet bytes.
    chunked = pl.concat([ref.slice(0, 7_000), ref.slice(7_000)], rechunk=False)
    assert chunked.n_chunks() > 1
    again = sort_rows(chunked, PER_USER_KEYS)
    assert again.n_chunks() == 1 and again.equals(ref)
    a, b = io.BytesIO(), io.BytesIO()
    again.write_parquet(a, compression="zstd", compression_level=3, statistics=True)
    ref.write_parquet(b, compression="zstd", compression_level=3, statistics=True)
    assert a.getvalue() == b.getvalue()


def test_sort_rows_ties_and_nulls_keep_frame_sort_order():
    frame = pl.DataFrame({"a": ["b", "a", "b", "a", None], "k": [2, 1, 2, 1, 3], "i": [0, 1, 2, 3, 4]})
    assert sort_rows(frame, ["a", "k"]).equals(frame.sort(["a", "k"], maintain_order=True))  # nulls: plain sort
    no_null = frame.head(4)
    assert sort_rows(no_null, ["a", "k"])["i"].to_list() == [1, 3, 0, 2]  # ties keep their order


def test_frame_spill_collects_the_concatenation():
    frames = [_rows(1_000, s) for s in range(3)]
    spill = FrameSpill(PER_USER_SCHEMA)
    spill.add(frames[:2])
    spill.add([])
    spill.add(frames[2:])
    assert spill.collect().equals(pl.concat(frames))
    assert spill.collect().equals(pl.DataFrame(schema=PER_USER_SCHEMA))  # emptied by collect


def test_trivial_cells_dropped_while_reading_equal_the_join(tmp_path):
    lake = Lake.at(str(tmp_path / "lake"))
    per_user = _rows(5_000, 3).sort(PER_USER_KEYS)
    # cold_only ranked 10 items under temporal (k 10 and 20 are trivial), 500 under item_holdout; full has no stat.
    stats = pl.DataFrame(
        [("temporal", "cold_only", "als", RANKED_ITEMS, 0, 10.0, 5), ("item_holdout", "cold_only", "als", RANKED_ITEMS, 0, 500.0, 5)],
        schema=ARM_STATS_SCHEMA,
        orient="row",
    )
    save_eval(lake, D0, [per_user], stats, config_hash="h")
    ranked = ranked_items(stats)
    joined = (
        per_user.join(ranked, on=["protocol", "scope"], how="left", maintain_order="left")
        .filter(pl.col("n_ranked").is_null() | (pl.col("k").cast(pl.Float64) < pl.col("n_ranked")))
        .drop("n_ranked")
    )
    assert 0 < joined.height < per_user.height
    assert drop_trivial(per_user, stats).equals(joined)
    pooled, _ = pooled_window(lake, [D0])
    assert pooled.equals(pool_days({D0: joined}))
    assert load_per_user(lake, D0).equals(per_user)


def test_save_eval_writes_protocol_frames_as_the_one_sorted_file(tmp_path):
    rows = _rows(6_000, 4)
    one, parts = Lake.at(str(tmp_path / "one")), Lake.at(str(tmp_path / "parts"))
    stats = pl.DataFrame(schema=ARM_STATS_SCHEMA)
    save_eval(one, D0, [rows], stats, config_hash="h")
    # One frame per protocol, in protocol order, each unsorted: the same file, byte for byte.
    by_protocol = [rows.filter(pl.col("protocol") == p) for p in ("item_holdout", "temporal")]
    save_eval(parts, D0, iter(by_protocol), stats, config_hash="h")
    files = [lake.eval_dir(D0).joinpath("per_user.parquet") for lake in (one, parts)]
    assert files[0].read_bytes() == files[1].read_bytes()
    assert load_per_user(one, D0).equals(sort_rows(rows, PER_USER_KEYS))
    with pytest.raises(ValueError, match="whole protocols in order"):
        save_eval(parts, D0, by_protocol[::-1], stats, config_hash="h")
    assert files[1].read_bytes() == files[0].read_bytes()  # the failed write left the file as it was
    save_eval(parts, D0, [], stats, config_hash="h")
    assert load_per_user(parts, D0).equals(pl.DataFrame(schema=PER_USER_SCHEMA))
