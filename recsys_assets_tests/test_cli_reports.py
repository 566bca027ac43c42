"""The demo's choice of evaluation window, and `recsys-assets report`: the headline first, --all, --format csv|json."""

import csv
import io
import json
from datetime import date, timedelta

import polars as pl
import pytest

from recsys_assets.cli import main
from recsys_assets.cli_reports import answer_text, densest_window
from recsys_assets.lib.errors import RecsysError
from recsys_assets.lib.evaluation.headline import HEADLINE_COLUMNS
from recsys_assets.lib.evaluation.reporting import open_warehouse
from recsys_assets.lib.lake import Lake
from recsys_assets_tests.lib.evaluation.report_fixtures import END, START, headline_frame, lift_rows


def _days(n: int) -> list[date]:
    return [date(2024, 1, 1) + timedelta(days=i) for i in range(n)]


def test_densest_window_picks_the_busiest_days_after_the_history():
    days = _days(100)
    counts = {d: 1 for d in days}
    # A burst on days 70..76 (inside the range allowed after 30 days of history).
    for d in days[70:77]:
        counts[d] = 100
    # An even bigger burst inside the history period must be ignored.
    for d in days[0:7]:
        counts[d] = 1000
    start, end = densest_window(days, counts, 7, 30)
    assert (start, end) == (days[70], days[76])


def test_densest_window_refuses_data_too_short():
    days = _days(40)
    with pytest.raises(RecsysError, match="too short"):
        densest_window(days, {d: 1 for d in days}, 21, 30)


def test_answer_text_is_a_short_table_and_one_sentence_per_protocol():
    text = answer_text(headline_frame())
    lines = text.splitlines()
    assert lines[0] == f"Headline, {START} to {END}: 5 primary endpoints, recall@20 (1 lift, 2 no detectable lift, 1 harm, 1 too few)"
    table = lines[1:lines.index("")]
    assert len(table) == 2 + headline_frame().height  # header, rule, one line per endpoint
    assert table[0].split() == ["protocol", "endpoint", "value", "baseline", "abs", "lift", "95%", "CI", "rel", "p", "adj", "user-days", "items", "verdict"]
    sentences = [line for line in lines if line.startswith("- ")]
    assert [s.split(" ")[1] for s in sentences] == ["item_holdout", "temporal"]
    assert "ranker_minilm-l6 lifts recall@20 over ranker_no_text (+0.062, 95% CI [+0.010, +0.100])" in sentences[0]
    assert "and shows no detectable lift over ranker_tfidf (+0.011, 95% CI [-0.020, +0.041])" in sentences[0]
    assert "on new users (12 user-days, 40 items), ranker_minilm-l6 has too few users to be judged against ranker_no_text" in sentences[0]
    assert "lowers recall@20 against ranker_no_text (-0.031, 95% CI [-0.052, -0.010])" in sentences[1]
    assert "no rows yet" in answer_text(headline_frame().head(0))


@pytest.fixture
def lake_with_reports(tmp_path):
    lake = Lake.at(str(tmp_path / "lake"))
    wh = open_warehouse(lake)
    wh.replace_partition("headline", headline_frame(), {"window_end": END, "window_kind": "window"})
    rollup = pl.DataFrame(lift_rows(window=(START, END)))
    wh.replace_partition("cold_start_lift_rollup", rollup.select(wh.table_columns("reports.cold_start_lift_rollup").keys() & set(rollup.columns)), {"window_end": END})
    return lake, rollup


def test_report_prints_the_headline_then_the_paths(lake_with_reports, capsys):
    lake, _ = lake_with_reports
    assert main(["report", "--lake", str(lake.root)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Headline, 2024-03-01 to 2024-03-21")
    assert out.rstrip().endswith(f"HTML report: {lake.reports.joinpath('index.html')}")
    assert f"DuckDB:      {lake.warehouse}" in out
    assert "lm_vs_tfidf/cold_items" in out and "ranker_minilm-l6 lifts recall@20 over ranker_no_text" in out


def test_report_all_prints_every_cell(lake_with_reports, capsys):
    lake, rollup = lake_with_reports
    assert main(["report", "--all", "--lake", str(lake.root)]) == 0
    out = capsys.readouterr().out
    assert f"({rollup.height} rows)" in out
    assert out.count("ranker_tfidf") >= rollup.filter(pl.col("arm") == "ranker_tfidf").height
    assert "Headline," in out  # and still ends on the answer


def test_report_csv_and_json_are_the_headline_rows(lake_with_reports, capsys):
    lake, rollup = lake_with_reports
    assert main(["report", "--format", "csv", "--lake", str(lake.root)]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == headline_frame().height and list(rows[0]) == HEADLINE_COLUMNS
    assert {r["verdict"] for r in rows} == {"lift", "no detectable lift", "harm", "too few"}
    assert main(["report", "--format", "json", "--lake", str(lake.root)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(d["protocol"], d["endpoint"]) for d in data] == sorted(headline_frame().select("protocol", "endpoint").rows())
    assert data[0]["window_end"] == END.isoformat() and isinstance(data[0]["abs_lift"], float)
    assert main(["report", "--all", "--format", "json", "--lake", str(lake.root)]) == 0
    assert len(json.loads(capsys.readouterr().out)) == rollup.height


def test_report_without_a_warehouse_says_what_to_run(tmp_path, capsys):
    assert main(["report", "--lake", str(tmp_path / "nothing")]) == 2
    assert "run `recsys-assets demo`" in capsys.readouterr().err


def test_endpoints_without_users_are_said_once_not_per_comparison():
    from recsys_assets.lib.evaluation.answer import answer_sentences, headline_texts

    empty = headline_frame().with_columns(
        *(pl.lit(None, dtype=pl.Float64).alias(c) for c in ("value", "abs_lift", "rel_lift", "ci_low", "ci_high", "p_value", "p_adjusted")),
        pl.lit(None, dtype=pl.Int64).alias("n_users"), pl.lit(None, dtype=pl.Int64).alias("n_items"), pl.lit("too few").alias("verdict"),
    )
    sentences = answer_sentences(empty)
    assert len(sentences) == 2 and all("no primary endpoint has evaluated users" in s for s in sentences)
    texts = headline_texts(empty)
    assert texts["temporal/lm_vs_tfidf/cold_items"] == "? too few: ranker_minilm-l6 vs ranker_tfidf, recall@20 (no evaluated cell)"


def test_a_daily_headline_counts_users_a_window_counts_user_days():
    from recsys_assets.lib.evaluation.answer import answer_sentences, format_headline_table

    day = headline_frame(START, START, "day")
    assert "(224 users, 51 items)" in answer_sentences(day)[0]
    assert format_headline_table(day).splitlines()[0].split()[-3] == "users"
    assert "(224 user-days, 51 items)" in answer_sentences(headline_frame())[0]


def test_a_ci_excluding_zero_without_a_lift_verdict_is_explained():
    from recsys_assets.lib.evaluation.answer import caveats

    assert caveats(headline_frame()) == []
    odd = headline_frame().with_columns(
        verdict=pl.when(pl.col("verdict") == "lift").then(pl.lit("no detectable lift")).otherwise(pl.col("verdict"))
    )
    notes = caveats(odd)
    assert len(notes) == 1 and "(item_holdout/lm_vs_no_text/cold_items)" in notes[0]
    assert "Note: The 95% CIs are per endpoint" in answer_text(odd)


def test_report_piped_into_a_reader_that_stops_early_is_not_an_error(lake_with_reports):
    """`report --format csv | head -1`: the reader closes the pipe; the CLI exits 0 without a traceback.

    The child's stdout is a pipe whose read end is already closed, so every write fails with EPIPE
    (what `head` causes, without the race)."""
    import subprocess
    import sys

    lake, _ = lake_with_reports
    code = (
        "import os, sys; r, w = os.pipe(); os.close(r); os.dup2(w, 1); "
        "from recsys_assets.cli import main; "
        f"sys.exit(main(['report', '--format', 'csv', '--lake', {str(lake.root)!r}]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stderr


def test_demo_flags_become_the_models_resource_config():
    from recsys_assets.cli import build_parser
    from recsys_assets.cli_reports import _resource_config
    from recsys_assets.defs.resources import ModelsResource

    args = build_parser().parse_args(["demo", "--encoders", "tfidf", "--rollup-days", "7", "--ranker-prior-profile-new", "3"])
    cfg = _resource_config(args)["models"]["config"]
    models = ModelsResource(**cfg)
    assert (models.encoders, models.rollup_days, models.ranker_prior_profile_new) == ("tfidf", 7, 3.0)
    assert models.ranking_settings()["prior_profile_new"] == 3.0
    # Without the flags the resource keeps its defaults: no config at all.
    assert _resource_config(build_parser().parse_args(["demo"])) == {}
