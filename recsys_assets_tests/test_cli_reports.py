"""The demo's choice of evaluation window and the lift table printer."""

from datetime import date, timedelta

import polars as pl
import pytest

from recsys_assets.cli_reports import densest_window, format_lift_table
from recsys_assets.lib.errors import RecsysError


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


def test_lift_table_shows_only_the_asked_metric():
    rows = pl.DataFrame(
        {
            "protocol": ["temporal"] * 2, "scope": ["full"] * 2, "arm": ["ranker_minilm-l6"] * 2,
            "baseline_arm": ["ranker_no_text"] * 2, "segment_kind": ["all"] * 2, "segment": ["all"] * 2,
            "metric": ["recall", "ndcg"], "k": [20, 20], "value": [0.5, 0.4], "baseline_value": [0.25, 0.3],
            "abs_lift": [0.25, 0.777], "ci_low": [0.1, 0.0], "ci_high": [0.4, 0.2], "p_adjusted": [0.01, 0.5],
            "n_users": [100, 100], "flag": [None, None],
        }
    )
    text = format_lift_table(rows, "recall", 20)
    assert text.startswith("recall@20:")
    assert "0.2500" in text
    assert "0.7770" not in text
    assert text.count("ranker_minilm-l6") == 1
