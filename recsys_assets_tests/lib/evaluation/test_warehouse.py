"""The DuckDB analyst warehouse: DDL/views, partition replacement, rollback, readers, views."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from datetime import date, timedelta

import duckdb
import polars as pl
import pytest
from upath import UPath

from recsys_assets.lib.evaluation.sql_files import ddl_files, query_files, sql_dir, sql_files, view_names
from recsys_assets.lib.evaluation.warehouse import (
    TABLES,
    Warehouse,
    WarehouseError,
    WarehouseSchemaError,
)

D1 = date(2024, 3, 1)
D2 = date(2024, 3, 2)


def _lift_row(**kw) -> dict:
    row = dict(
        day=D1, snapshot=D1, protocol="item_holdout", scope="full", arm="ranker_minilm",
        baseline_arm="ranker_tfidf", segment_kind="item", segment="new", metric="recall", k=20,
        value=0.2, baseline_value=0.1, abs_lift=0.1, rel_lift=1.0, ci_low=0.05, ci_high=0.15,
        rel_ci_low=0.5, rel_ci_high=1.5, p_value=0.001, p_adjusted=0.004, n_users=120, flag=None, role="primary",
        encoder="minilm", encoder_fingerprint="abc", config_hash="cfg", code_version="v1",
    )
    row.update(kw)
    return row


def _metrics(day: date, value: float, n: int = 3) -> pl.DataFrame:
    return pl.DataFrame({
        "arm": [f"arm{i}" for i in range(n)],
        "value": [value] * n,
        "day": [day] * n,
        "protocol": ["time_split"] * n,
        "scope": ["full"] * n,
        "segment_kind": ["user"] * n,
        "segment": ["new"] * n,
        "metric": ["recall"] * n,
        "k": [20] * n,
        "n_users": [10] * n,
    })


@pytest.fixture()
def wh(tmp_path) -> Warehouse:
    w = Warehouse(tmp_path / "lake" / "warehouse.duckdb", lock_timeout_s=20)
    w.apply_sql()
    return w


def test_sql_files_are_found_in_order():
    assert sql_dir().joinpath("ddl").is_dir()
    files = sql_files()
    assert files[0] == ddl_files()[0] and files[0].name.startswith("001_")
    assert {"latest_lift_by_segment", "lift_trend", "significant_lm_lift", "warmup_crossover"} <= set(view_names())
    assert len(query_files()) >= 3


def test_ddl_and_views_apply_twice(tmp_path):
    w = Warehouse(tmp_path / "warehouse.duckdb")
    w.apply_sql()
    w.replace_partition("arm_metrics", _metrics(D1, 0.1), {"day": D1, "protocol": "time_split"})
    w.apply_sql()  # idempotent, keeps data
    names = set(w.query("SELECT table_name FROM information_schema.tables WHERE table_schema = 'reports'")["table_name"])
    assert set(TABLES) | set(view_names()) <= names
    assert w.query("SELECT count(*) AS n FROM reports.arm_metrics")["n"][0] == 3
    cols = w.table_columns("cold_start_lift_rollup")
    assert "window_start" in cols and "day" not in cols
    assert w.table_columns("encoder_cost")["params"][0] == "BIGINT"


def test_replace_partition_twice_no_duplicates_new_values_win(wh):
    where = {"day": D1, "protocol": "time_split"}
    wh.replace_partition("arm_metrics", _metrics(D1, 0.1), where)
    wh.replace_partition("reports.arm_metrics", _metrics(D2, 0.7), {"day": D2, "protocol": "time_split"})
    wh.replace_partition("arm_metrics", _metrics(D1, 0.5), where)
    out = wh.query("SELECT day, arm, value FROM reports.arm_metrics ORDER BY day, arm")
    assert out.height == 6
    assert out.filter(pl.col("day") == D1)["value"].to_list() == [0.5] * 3
    assert out.filter(pl.col("day") == D2)["value"].to_list() == [0.7] * 3


def test_column_order_missing_nullable_and_where_filled(wh):
    df = _metrics(D1, 0.3).drop("day", "n_users").select(reversed(_metrics(D1, 0.3).drop("day", "n_users").columns))
    wh.replace_partition("arm_metrics", df, {"day": D1, "protocol": "time_split"})
    out = wh.query("SELECT * FROM reports.arm_metrics")
    assert out["day"].to_list() == [D1] * 3
    assert out["n_users"].null_count() == 3 and out["encoder"].null_count() == 3
    assert out["value"].to_list() == [0.3] * 3


def test_unknown_and_missing_columns_raise_clear_errors(wh):
    with pytest.raises(WarehouseSchemaError, match="bogus"):
        wh.replace_partition("arm_metrics", _metrics(D1, 0.1).with_columns(bogus=1), {"day": D1, "protocol": "time_split"})
    with pytest.raises(WarehouseSchemaError, match="metric"):
        wh.replace_partition("arm_metrics", _metrics(D1, 0.1).drop("metric"), {"day": D1, "protocol": "time_split"})
    with pytest.raises(WarehouseError, match="non-empty"):
        wh.replace_partition("arm_metrics", _metrics(D1, 0.1), {})
    with pytest.raises(WarehouseError, match="does not exist"):
        wh.replace_partition("no_such_table", _metrics(D1, 0.1), {"day": D1})


def test_rows_outside_partition_are_rejected_and_rolled_back(wh):
    where = {"day": D1, "protocol": "time_split"}
    wh.replace_partition("arm_metrics", _metrics(D1, 0.1), where)
    with pytest.raises(WarehouseError, match="outside"):
        wh.replace_partition("arm_metrics", _metrics(D2, 0.9), where)
    out = wh.query("SELECT day, value FROM reports.arm_metrics")
    assert out.height == 3 and out["value"].to_list() == [0.1] * 3 and set(out["day"]) == {D1}


def test_failure_mid_insert_rolls_back_old_rows(wh):
    where = {"day": D1, "protocol": "time_split"}
    wh.replace_partition("arm_metrics", _metrics(D1, 0.1), where)
    # A value that cannot be cast to DOUBLE on the LAST row: the delete and the
    # first rows already ran inside the transaction when the insert fails.
    bad = _metrics(D1, 0.2).with_columns(pl.col("value").cast(pl.String))
    bad = bad.with_columns(pl.when(pl.col("arm") == "arm2").then(pl.lit("not-a-number")).otherwise(pl.col("value")).alias("value"))
    with pytest.raises(WarehouseError, match="rolled back"):
        wh.replace_partition("arm_metrics", bad, where)
    # NOT NULL violation also rolls back.
    with pytest.raises(WarehouseError, match="rolled back"):
        wh.replace_partition("arm_metrics", _metrics(D1, 0.2).with_columns(segment=pl.lit(None, pl.String)), where)
    out = wh.query("SELECT value FROM reports.arm_metrics")
    assert out["value"].to_list() == [0.1] * 3
    # The file is still writable afterwards.
    wh.replace_partition("arm_metrics", _metrics(D1, 0.4), where)
    assert wh.query("SELECT value FROM reports.arm_metrics")["value"].to_list() == [0.4] * 3


def test_list_and_null_where_values(wh):
    wh.replace_partition("arm_metrics", _metrics(D1, 0.1), {"day": D1, "protocol": "time_split"})
    wh.replace_partition("arm_metrics", _metrics(D2, 0.2), {"day": D2, "protocol": "time_split"})
    wh.replace_partition("arm_metrics", _metrics(D1, 0.3, n=1), {"day": [D1, D2], "protocol": "time_split"})
    out = wh.query("SELECT day, value FROM reports.arm_metrics")
    assert out.height == 1 and out["value"][0] == 0.3


def test_query_params_and_read_only_connection(wh):
    wh.replace_partition("arm_metrics", _metrics(D1, 0.1), {"day": D1, "protocol": "time_split"})
    out = wh.query("SELECT arm FROM reports.arm_metrics WHERE arm = ? ORDER BY arm", ["arm1"])
    assert out["arm"].to_list() == ["arm1"]
    con = wh.read_only_connect()
    try:
        assert con.execute("SELECT count(*) FROM reports.arm_metrics").fetchone()[0] == 3
        with pytest.raises(duckdb.Error):
            con.execute("DELETE FROM reports.arm_metrics")
    finally:
        con.close()


def test_missing_warehouse_read_says_what_to_do(tmp_path):
    with pytest.raises(WarehouseError, match="apply_sql"):
        Warehouse(tmp_path / "nope.duckdb").query("SELECT 1")


_WRITER = textwrap.dedent(
    """
    import sys, time, polars as pl
    from datetime import date
    from recsys_assets.lib.evaluation.warehouse import Warehouse
    w = Warehouse(sys.argv[1], lock_timeout_s=60)
    d = date(2024, 3, 1)
    for i in range(1, int(sys.argv[2]) + 1):
        n = 2000
        df = pl.DataFrame({"arm": [f"a{j}" for j in range(n)], "value": [float(i)] * n,
                           "scope": "full", "segment_kind": "user", "segment": "new", "metric": "recall", "k": 20})
        w.replace_partition("arm_metrics", df, {"day": d, "protocol": "p"})
        if len(sys.argv) > 3:
            # Handshake instead of a fixed sleep: wait (at most 30 s) until the reader has seen
            # version i, so reads interleave with writes however loaded the machine is. A busy
            # writer can starve a reader whose lock retries back off (up to 0.5 s).
            ack, deadline = sys.argv[3], time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if float(open(ack).read() or -1) >= i:
                        break
                except (OSError, ValueError):
                    pass
                time.sleep(0.01)
    print("done")
    """
)


def test_reader_in_other_process_never_sees_half_a_partition(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    w = Warehouse(path, lock_timeout_s=60)
    w.apply_sql()
    n = 2000
    w.replace_partition(
        "arm_metrics",
        pl.DataFrame({"arm": [f"a{j}" for j in range(n)], "value": [0.0] * n, "scope": "full",
                      "segment_kind": "user", "segment": "new", "metric": "recall", "k": 20}),
        {"day": D1, "protocol": "p"},
    )
    writes = 15
    ack = tmp_path / "reader_saw"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(writes), str(ack)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: list[tuple[int, int, float]] = []
    try:
        while proc.poll() is None or not seen:
            out = w.query("SELECT count(*) AS n, count(DISTINCT value) AS v, min(value) AS m FROM reports.arm_metrics")
            seen.append((out["n"][0], out["v"][0], out["m"][0]))
            ack.write_text(str(out["m"][0]))
    finally:
        stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "done" in stdout
    # Every read saw exactly one whole version of the partition.
    assert all(n_rows == n and distinct == 1 for n_rows, distinct, _ in seen), seen[:5]
    # ... and reads really interleaved with the writes: the reader saw every version.
    assert len({m for *_, m in seen}) >= writes, seen
    assert w.query("SELECT min(value) AS m FROM reports.arm_metrics")["m"][0] == float(writes)


def test_two_writers_serialize_without_duplicates(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    Warehouse(path).apply_sql()
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(path), "5"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    out = Warehouse(path).query("SELECT count(*) AS n FROM reports.arm_metrics")
    assert out["n"][0] == 2000


def test_memory_lake_round_trip():
    url = f"memory://lake-{uuid.uuid4().hex}/warehouse.duckdb"
    w = Warehouse(UPath(url))
    assert not w.is_local
    w.apply_sql()
    w.replace_partition("arm_metrics", _metrics(D1, 0.1), {"day": D1, "protocol": "time_split"})
    w.replace_partition("arm_metrics", _metrics(D1, 0.2), {"day": D1, "protocol": "time_split"})
    assert UPath(url).exists() and UPath(url).stat().st_size > 0
    # A fresh object (another process would download the same bytes) sees the data.
    w2 = Warehouse(url)
    assert w2.query("SELECT value FROM reports.arm_metrics")["value"].to_list() == [0.2] * 3
    # A failed write does not upload anything.
    with pytest.raises(WarehouseSchemaError):
        w2.replace_partition("arm_metrics", _metrics(D1, 0.9).with_columns(bogus=1), {"day": D1, "protocol": "time_split"})
    assert Warehouse(url).query("SELECT value FROM reports.arm_metrics")["value"].to_list() == [0.2] * 3
    w.close()
    w2.close()


# --- views ------------------------------------------------------------------------------


def test_significant_lm_lift_filters(wh):
    rows = [
        _lift_row(arm="ranker_minilm"),                                      # keep
        _lift_row(arm="ranker_minilm", segment="cold", p_adjusted=0.2),       # p too high
        _lift_row(arm="ranker_minilm", segment="warm", ci_low=-0.01),         # CI covers 0
        _lift_row(arm="ranker_tfidf", baseline_arm="ranker_no_text"),         # baseline arm
        _lift_row(arm="ranker_no_text", baseline_arm="als"),                  # baseline arm
        _lift_row(arm="ranker_tfidf+slots2", baseline_arm="ranker_no_text+slots2"),  # baseline arm with policy
        _lift_row(arm="content_minilm", baseline_arm="als"),                  # not a ranker
        _lift_row(arm="ranker_mpnet", segment="warming", abs_lift=-0.05, ci_low=-0.08, ci_high=-0.02),  # significant loss
        _lift_row(arm="rankerXminilm"),                                       # LIKE '_' trap
        _lift_row(arm="ranker_minilm", segment="warm", role="exploratory", p_adjusted=None),  # exploratory: never significant
        _lift_row(arm="ranker_minilm", segment="all", flag="too_few_users"),  # too small, even if primary
    ]
    wh.replace_partition("cold_start_lift", pl.DataFrame(rows), {"day": D1, "protocol": "item_holdout"})
    out = wh.query("SELECT arm, segment, direction FROM reports.significant_lm_lift ORDER BY arm")
    assert out.rows() == [("ranker_minilm", "new", "gain"), ("ranker_mpnet", "warming", "loss")]


def test_latest_lift_by_segment_and_trend(wh):
    for i, d in enumerate([D1, D2, D2 + timedelta(days=1)]):
        rows = [_lift_row(day=d, segment=s, abs_lift=0.1 * (i + 1)) for s in ("warm", "new", "cold")]
        wh.replace_partition("cold_start_lift", pl.DataFrame(rows), {"day": d, "protocol": "item_holdout"})
    # An older-only protocol keeps its own latest day.
    wh.replace_partition("cold_start_lift", pl.DataFrame([_lift_row(protocol="time_split", segment_kind="user")]),
                         {"day": D1, "protocol": "time_split"})
    latest = wh.query("SELECT protocol, day, segment, abs_lift FROM reports.latest_lift_by_segment")
    ih = latest.filter(pl.col("protocol") == "item_holdout")
    assert ih["segment"].to_list() == ["new", "cold", "warm"]  # coldest first
    assert set(ih["day"]) == {D2 + timedelta(days=1)} and ih["abs_lift"].to_list() == pytest.approx([0.3] * 3)
    assert latest.filter(pl.col("protocol") == "time_split")["day"].to_list() == [D1]
    trend = wh.query("SELECT day, abs_lift, abs_lift_7d_mean FROM reports.lift_trend "
                     "WHERE protocol = 'item_holdout' AND segment = 'new'")
    assert trend["day"].to_list() == [D1, D2, D2 + timedelta(days=1)]
    assert trend["abs_lift_7d_mean"].to_list() == pytest.approx([0.1, 0.15, 0.2])


def _warm_row(bucket: str, order: int, lift: float, lo: float, hi: float, **kw) -> dict:
    row = dict(protocol="time_split", scope="full", arm="ranker_minilm", baseline_arm="als", segment_kind="user",
               history_bucket=bucket, bucket_order=order, metric="recall", k=20, value=0.3, baseline_value=0.3 - lift,
               abs_lift=lift, ci_low=lo, ci_high=hi, n_users=50, window_start=D1, window_end=D2)
    row.update(kw)
    return row


def test_warmup_crossover_finds_first_bucket(wh):
    rows = [
        # Inserted out of order on purpose: bucket_order decides.
        _warm_row("5-9", 2, 0.01, -0.01, 0.03),     # CI includes 0 -> crossover here
        _warm_row("0", 0, 0.10, 0.06, 0.14),
        _warm_row("1-4", 1, 0.05, 0.02, 0.08),
        _warm_row("20+", 3, -0.02, -0.04, -0.01),   # later, ignored
        # Second curve: the lift turns <= 0 (CI missing) at bucket 1.
        _warm_row("0", 0, 0.10, None, None, segment_kind="item"),
        _warm_row("1-4", 1, 0.0, None, None, segment_kind="item"),
        # Third curve never catches up.
        _warm_row("0", 0, 0.2, 0.1, 0.3, arm="ranker_mpnet"),
        _warm_row("1-4", 1, 0.1, 0.05, 0.2, arm="ranker_mpnet"),
    ]
    wh.replace_partition("warmup_curve", pl.DataFrame(rows), {"window_end": D2})
    out = wh.query(
        "SELECT arm, segment_kind, caught_up, crossover_bucket, crossover_bucket_order, buckets_observed "
        "FROM reports.warmup_crossover ORDER BY arm, segment_kind"
    )
    assert out.rows() == [
        ("ranker_minilm", "item", True, "1-4", 1, 2),
        ("ranker_minilm", "user", True, "5-9", 2, 4),
        ("ranker_mpnet", "user", False, None, None, 2),
    ]


def test_example_queries_run(wh):
    wh.replace_partition("cold_start_lift", pl.DataFrame([_lift_row()]), {"day": D1, "protocol": "item_holdout"})
    for path in query_files():
        wh.query(path.read_text())  # must parse and bind against the schema
