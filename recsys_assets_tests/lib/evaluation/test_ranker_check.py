"""The treatment check: every ranker vs the best of popularity/ALS, and the report saying so loudly."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl

from recsys_assets.cli_reports import answer_text
from recsys_assets.lib.evaluation.evaluate import PER_USER_SCHEMA
from recsys_assets.lib.evaluation.html_report import render_html_report
from recsys_assets.lib.evaluation.lift import LiftConfig
from recsys_assets.lib.evaluation.ranker_check import ranker_check_notes, ranker_check_rows, ranker_check_warnings
from recsys_assets_tests.lib.evaluation.report_fixtures import headline_frame

D0, D1 = date(2024, 3, 1), date(2024, 3, 7)
# Per-user offsets from a shared base: popularity is the best baseline, ALS a little worse.
OFFSETS = {"popularity": 0.0, "als": -0.05, "ranker_no_text": 0.0, "ranker_tfidf": -0.15, "ranker_minilm-l6": 0.1}


def _per_user(n: int = 300, seed: int = 0, noise: float = 0.02) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for metric in ("recall", "ndcg"):
        base = rng.uniform(0.2, 0.6, n)
        for arm, off in OFFSETS.items():
            vals = np.clip(base + off + rng.normal(0, noise, n), 0, 1)
            for i, v in enumerate(vals):
                rows.append(("temporal", "full", arm, "all", "all", None, f"u{i}", metric, 20, float(v)))
                # Cells the check must ignore: another scope, a user segment, another K.
                rows.append(("temporal", "cold_only", arm, "all", "all", None, f"u{i}", metric, 20, 0.0))
                rows.append(("temporal", "full", arm, "user", "new", None, f"u{i}", metric, 20, 0.0))
                rows.append(("temporal", "full", arm, "all", "all", None, f"u{i}", metric, 10, 0.0))
    return pl.DataFrame(rows, schema=list(PER_USER_SCHEMA), orient="row").cast(PER_USER_SCHEMA)


def test_each_ranker_is_compared_with_the_better_baseline_and_classified():
    check = ranker_check_rows(_per_user(), LiftConfig(), D0, D1)
    assert check.height == 3 * 2  # three rankers x (recall@20, ndcg@20), one protocol
    assert set(check["best_baseline"]) == {"popularity"}
    status = {(r["arm"], r["metric"]): r["status"] for r in check.iter_rows(named=True)}
    for metric in ("recall", "ndcg"):
        assert status[("ranker_minilm-l6", metric)] == "above"
        assert status[("ranker_tfidf", metric)] == "below"
        assert status[("ranker_no_text", metric)] in ("reaches", "short")  # same as popularity up to noise
    tfidf = check.filter((pl.col("arm") == "ranker_tfidf") & (pl.col("metric") == "recall")).row(0, named=True)
    assert abs(tfidf["abs_lift"] + 0.15) < 0.02 and tfidf["ci_high"] < 0 and tfidf["n_users"] == 300


def test_a_missing_baseline_is_too_few_not_a_pass():
    pu = _per_user().filter(pl.col("arm") != "als")
    check = ranker_check_rows(pu, LiftConfig(), D0, D1)
    assert set(check["status"]) == {"too few"}


def test_the_answer_and_the_html_report_say_so_loudly():
    check = ranker_check_rows(_per_user(), LiftConfig(), D0, D1)
    warnings = ranker_check_warnings(check)
    assert len(warnings) == 2 and all(w.startswith("WARNING: ranker_tfidf") and "popularity" in w for w in warnings)
    assert "of 6 ranker cells do NOT reach" in ranker_check_notes(check)[-1]
    text = answer_text(headline_frame(), None, check)
    assert text.startswith("WARNING: ranker_tfidf is significantly below popularity")  # before the headline
    html = render_html_report(pl.DataFrame(), pl.DataFrame(), pl.DataFrame(), pl.DataFrame(), "t", headline=headline_frame(), ranker_check=check)
    assert 'id="treatment-warning"' in html and html.index("treatment-warning") < html.index("primary endpoints")
    # A ranker that reaches its baselines gets no warning, only the summary line.
    fine = check.filter(pl.col("arm") != "ranker_tfidf")
    assert not ranker_check_warnings(fine)
    assert "every ranker reaches the best of popularity and ALS" in ranker_check_notes(fine.filter(pl.col("status") != "short"))[-1]
