"""reports.headline: the table contract and read_headline."""

from datetime import date

import polars as pl
import pytest

from recsys_assets.lib.evaluation.headline import HEADLINE_COLUMNS, HEADLINE_SCHEMA, read_headline
from recsys_assets.lib.evaluation.warehouse import Warehouse, WarehouseError


def _row(start, end, kind, protocol, endpoint, verdict="lift"):
    return {
        "window_start": start, "window_end": end, "window_kind": kind, "protocol": protocol, "endpoint": endpoint,
        "arm": "ranker_minilm-l6", "baseline_arm": "ranker_no_text", "scope": "cold_only", "segment_kind": "all",
        "segment": "all", "metric": "recall", "k": 20, "value": 0.2, "baseline_value": 0.1, "abs_lift": 0.1,
        "rel_lift": 1.0, "ci_low": 0.05, "ci_high": 0.15, "p_value": 1e-5, "p_adjusted": 4e-5, "n_users": 200,
        "n_items": 40, "verdict": verdict,
    }


def test_read_headline_latest_window_and_columns(tmp_path):
    wh = Warehouse(tmp_path / "warehouse.duckdb")
    wh.apply_sql()
    assert read_headline(wh.path).columns == HEADLINE_COLUMNS  # table exists, no rows yet
    old = pl.DataFrame([_row(date(2000, 1, 1), date(2000, 1, 10), "window", "temporal", "lm_vs_tfidf/cold_items")], schema=HEADLINE_SCHEMA)
    new = pl.DataFrame(
        [_row(date(2000, 1, 2), date(2000, 1, 11), "window", p, e) for p in ("temporal", "item_holdout") for e in ("lm_vs_tfidf/cold_items", "lm_vs_no_text/new_users")],
        schema=HEADLINE_SCHEMA,
    )
    day = pl.DataFrame([_row(date(2000, 1, 11), date(2000, 1, 11), "day", "temporal", "lm_vs_tfidf/cold_items", "too few")], schema=HEADLINE_SCHEMA)
    wh.replace_partition("headline", old, {"window_end": date(2000, 1, 10), "window_kind": "window"})
    wh.replace_partition("headline", new, {"window_end": date(2000, 1, 11), "window_kind": "window"})
    wh.replace_partition("headline", day, {"window_end": date(2000, 1, 11), "window_kind": "day"})
    got = read_headline(wh.path)
    assert got.columns == HEADLINE_COLUMNS
    assert dict(got.schema) == HEADLINE_SCHEMA
    assert got.height == 4 and set(got["window_end"]) == {date(2000, 1, 11)}
    assert got["protocol"].to_list() == ["item_holdout", "item_holdout", "temporal", "temporal"]
    assert read_headline(wh.path, latest=False).height == 5
    days = read_headline(wh.path, window_kind="day")
    assert days["verdict"].to_list() == ["too few"]


def test_read_headline_errors(tmp_path):
    with pytest.raises(WarehouseError, match="No warehouse"):
        read_headline(tmp_path / "none.duckdb")
    wh = Warehouse(tmp_path / "w.duckdb")
    wh.apply_sql()
    with pytest.raises(WarehouseError, match="window_kind"):
        read_headline(wh.path, window_kind="month")


def test_headline_rows_verdicts_and_missing_endpoints():
    from recsys_assets.lib.evaluation.headline import headline_rows, verdict

    assert verdict(0.05, 0.001, None) == "lift"
    assert verdict(-0.05, 0.001, None) == "harm"
    assert verdict(0.05, 0.2, None) == "no detectable lift"
    assert verdict(0.05, 0.001, "too_few_users") == "too few"
    assert verdict(0.05, None, None) == "too few"
    lift = pl.DataFrame(
        [
            {"protocol": "temporal", "scope": "cold_only", "arm": "ranker_minilm-l6", "baseline_arm": "ranker_no_text", "segment_kind": "all",
             "segment": "all", "metric": "recall", "k": 20, "value": 0.3, "baseline_value": 0.2, "abs_lift": 0.1, "rel_lift": 0.5,
             "ci_low": 0.05, "ci_high": 0.15, "p_value": 1e-6, "p_adjusted": 2e-6, "n_users": 300, "n_items": 25, "flag": None},
        ]
    )
    comps = [("ranker_minilm-l6", "ranker_tfidf"), ("ranker_minilm-l6", "ranker_no_text"), ("content_minilm-l6", "content_tfidf")]
    head = headline_rows(lift, date(2000, 1, 1), date(2000, 1, 7), "window", ["temporal"], comps)
    assert head.columns == HEADLINE_COLUMNS and head.height == 6
    got = dict(zip(head["endpoint"], head["verdict"]))
    assert got["lm_vs_no_text/cold_items"] == "lift"
    assert got["lm_vs_tfidf/cold_items"] == "too few"  # no lift row: not run, empty or trivial
    row = head.filter(pl.col("endpoint") == "lm_vs_no_text/cold_items").row(0, named=True)
    assert row["arm"] == "ranker_minilm-l6" and row["n_items"] == 25 and row["p_adjusted"] == 2e-6
    assert head.filter(pl.col("endpoint") == "content_lm_vs_tfidf/new_users")["arm"].to_list() == ["content_minilm-l6"]
