"""The self-contained HTML lift report: answer card first, matplotlib charts inline, detail collapsed."""

from __future__ import annotations

import functools
import re
import uuid
from html.parser import HTMLParser

import polars as pl
import pytest
from upath import UPath

from recsys_assets.lib.evaluation.html_report import (
    choose_metric,
    encoder_cost_vs_lift,
    markdown_lift_table,
    render_html_report,
    write_html_report,
)
from recsys_assets_tests.lib.evaluation.report_fixtures import daily_headline, headline_frame, report_frames


class _Checker(HTMLParser):
    VOID = {"meta", "br", "hr", "img", "input", "link", "col"}

    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.tags: dict[str, int] = {}
        self.errors: list[str] = []
        self.external: list[str] = []
        self.text: list[str] = []
        self.order: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        attrs_d = dict(attrs)
        self.order.append((tag, attrs_d))
        for name, value in attrs:
            if name in ("src", "href") and value and "://" in value and not value.startswith("http://www.w3.org/"):
                self.external.append(value)
        if tag in ("script", "link", "img"):
            self.external.append(tag)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        self.order.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}>, open: {self.stack[-3:]}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def _parse(text: str) -> _Checker:
    checker = _Checker()
    checker.feed(text)
    checker.close()
    return checker


@functools.cache
def _full_report(title: str = "Cold-start <lift> report") -> str:
    rollup, daily, warm, cost = report_frames()
    return render_html_report(rollup, daily, warm, cost, title, headline_frame(), daily_headline())


def test_report_opens_on_the_answer_card_then_the_charts_then_the_detail(tmp_path):
    rollup, daily, warm, cost = report_frames()
    target = UPath(tmp_path / "reports" / "index.html")
    write_html_report(target, rollup, daily, warm, cost, "Cold-start <lift> report", headline_frame(), daily_headline())
    text = target.read_text(encoding="utf-8")
    assert text == _full_report()
    parsed = _parse(text)
    assert parsed.errors == [] and parsed.stack == []
    assert parsed.external == []  # self-contained: no scripts, images, linked CSS or URLs to fetch
    assert "Cold-start <lift> report" in "".join(parsed.text) and "<lift>" not in text  # escaped
    # Order: answer card, lift over days, warm-up, cost, per-segment detail.
    pos = [text.index(s) for s in ('id="answer"', 'data-chart="lift_over_days"', 'data-chart="warmup"', 'data-chart="cost"', 'class="detail"')]
    assert pos == sorted(pos)
    card = text[text.index('id="answer"'):text.index("</section>")]
    # The card: window, verdict counts, one sentence per protocol, every endpoint with its verdict.
    assert "2024-03-01 to 2024-03-21" in card
    assert "1 lift" in card and "2 no detectable lift" in card and "1 harm" in card and "1 too few" in card
    assert card.count("<li>") == 2
    assert "ranker_minilm-l6 lifts recall@20 over ranker_no_text (+0.062, 95% CI [+0.010, +0.100])" in card
    for endpoint in headline_frame()["endpoint"].unique():
        assert endpoint in card
    assert "Encoding cost over the window" in card
    assert "no data yet" not in text


def test_every_chart_is_an_inline_matplotlib_svg_with_text():
    text = _full_report()
    figures = re.findall(r'<figure class="chart" data-chart="(\w+)">.*?</figure>', text, flags=re.S)
    # Lift over days: one figure per protocol; warm-up: one per protocol of the warm-up rows (the fixture has 1);
    # one cost chart; one forest plot per protocol x scope.
    assert figures.count("lift_over_days") == 2
    assert figures.count("warmup") == 1 and figures.count("cost") == 1
    assert figures.count("forest") >= 2
    for block in re.findall(r'<figure class="chart".*?</figure>', text, flags=re.S):
        svg = block[block.index("<svg"):]
        assert svg.count("<svg") == 1 and "id=\"figure_1\"" in svg and "id=\"axes_1\"" in svg  # drawn by matplotlib
        assert "<text" in svg  # labels stay text (svg.fonttype none)
    # Bands: lift over days and warm-up curves fill their CI (a PolyCollection path with opacity).
    assert "fill-opacity: 0.2" in text or 'fill-opacity="0.2"' in text


def test_detail_is_collapsed_by_protocol_and_scope_with_small_cells_behind_a_toggle():
    text = _full_report()
    parsed = _parse(text)
    details = [a for tag, a in parsed.order if tag == "details" and a.get("class") == "detail"]
    assert {(d["data-protocol"], d["data-scope"]) for d in details} == {("item_holdout", "cold_only"), ("time_split", "full")}
    assert all("open" not in d for d in details)
    # The fixture flags user:warm of ranker_tfidf as too few users: it sits in the small-cells toggle only.
    for block in re.findall(r'<details class="detail".*?</details>\s*</details>|<details class="detail".*?</details>', text, flags=re.S):
        if 'class="small"' in block:
            main, small = block.split('<details class="small">', 1)
            assert "too_few_users" in small and "too_few_users" not in main
            assert re.search(r"\d+ small cells \(under 20 users, or trivial\)", small)


def test_report_is_byte_identical_on_rerun(tmp_path):
    rollup, daily, warm, cost = report_frames()
    a, b = UPath(tmp_path / "a.html"), UPath(tmp_path / "b.html")
    for target in (a, b):
        write_html_report(target, rollup, daily, warm, cost, "t", headline_frame(), daily_headline())
    assert a.read_bytes() == b.read_bytes()


def test_report_on_empty_frames_says_no_data(tmp_path):
    target = UPath(tmp_path / "empty.html")
    empty = pl.DataFrame()
    write_html_report(target, empty, empty, empty, empty, title="Nothing yet")
    text = target.read_text()
    parsed = _parse(text)
    assert parsed.errors == [] and parsed.stack == []
    assert "No headline yet" in text
    assert text.count("no data yet") >= 4
    assert "<svg" not in text


def test_without_headline_rows_the_trend_uses_the_daily_new_cells_and_writes_to_memory_lake():
    rollup, daily, _, cost = report_frames()
    url = f"memory://lake-{uuid.uuid4().hex}/reports/index.html"
    write_html_report(UPath(url), rollup, daily, pl.DataFrame(), cost, title="t")
    text = UPath(url).read_text()
    assert "No headline yet" in text
    assert "no headline rows for these days" in text and 'data-chart="lift_over_days"' in text
    assert _parse(text).errors == []


def test_choose_metric_prefers_recall_at_20_else_most_common():
    rollup, *_ = report_frames()
    assert choose_metric(rollup) == ("recall", 20)
    only_ndcg = rollup.filter(pl.col("metric") == "ndcg")
    assert choose_metric(only_ndcg) == ("ndcg", 10)
    assert choose_metric(pl.DataFrame()) is None


def test_encoder_cost_vs_lift_pairs_encoders_with_their_ranker():
    rollup, _, _, cost = report_frames()
    pts = encoder_cost_vs_lift(cost, rollup)
    assert set(pts["encoder"]) == {"minilm", "tfidf"}
    minilm = pts.filter((pl.col("encoder") == "minilm") & (pl.col("cell") == "item_holdout/cold_only/item/new"))
    assert minilm["lift"].to_list() == pytest.approx([0.05])  # vs ranker_no_text, recall@20
    assert minilm["texts_per_s"].to_list() == pytest.approx([600.0])


def test_markdown_lift_table_bars_and_truncation():
    rows = pl.DataFrame([
        dict(arm="ranker_minilm", baseline_arm="ranker_tfidf", segment_kind="item", segment="new", metric="recall",
             k=20, value=0.2, baseline_value=0.1, abs_lift=0.1, rel_lift=1.0, ci_low=0.05, ci_high=0.15,
             p_adjusted=0.01, n_users=50, flag=None),
        dict(arm="ranker_minilm", baseline_arm="ranker_tfidf", segment_kind="user", segment="new", metric="recall",
             k=20, value=0.1, baseline_value=0.12, abs_lift=-0.02, rel_lift=-0.17, ci_low=-0.05, ci_high=0.01,
             p_adjusted=0.4, n_users=7, flag="too_few_users"),
    ])
    md = markdown_lift_table(rows)
    lines = md.splitlines()
    assert lines[0].startswith("| arm vs baseline") and len(lines) == 4
    pos, neg = lines[2], lines[3]
    bar_pos = pos.split("`")[1]
    bar_neg = neg.split("`")[1]
    zero = bar_pos.index("┃")
    assert "█" in bar_pos[zero:] and "█" not in bar_pos[:zero]  # positive lift right of zero
    assert "█" in bar_neg[:zero] and "─" in bar_neg[zero:]      # negative lift, CI crosses zero
    assert "+100.0%" in pos and "too_few_users" in neg and "item:new" in pos
    assert all(line.count("|") == lines[0].count("|") for line in lines[:4])  # no stray pipes
    big = pl.concat([rows] * 30)
    assert "more rows not shown" in markdown_lift_table(big, max_rows=10)
    assert "no data yet" in markdown_lift_table(pl.DataFrame())
