"""The self-contained HTML lift report and its reusable SVG / markdown pieces."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from html.parser import HTMLParser

import polars as pl
import pytest
from upath import UPath

from recsys_assets.lib.evaluation.html_report import (
    choose_metric,
    encoder_cost_vs_lift,
    markdown_lift_table,
    render_html_report,
    svg_lift_chart,
    write_html_report,
)

D0 = date(2024, 3, 1)
ARMS = [("ranker_minilm", "ranker_no_text"), ("ranker_tfidf", "ranker_no_text"), ("ranker_minilm", "ranker_tfidf")]


def _lift_rows(day: date | None = None, window: tuple[date, date] | None = None) -> list[dict]:
    rows = []
    for protocol, scope in (("item_holdout", "cold_only"), ("time_split", "full")):
        for arm, base in ARMS:
            for kind, seg in (("item", "new"), ("user", "new"), ("user", "warm"), ("all", "all")):
                for metric, k in (("recall", 20), ("ndcg", 10)):
                    lift = 0.05 if "minilm" in arm else 0.01
                    row = dict(
                        protocol=protocol, scope=scope, arm=arm, baseline_arm=base, segment_kind=kind,
                        segment=seg, metric=metric, k=k, value=0.1 + lift, baseline_value=0.1,
                        abs_lift=lift, rel_lift=lift / 0.1, ci_low=lift - 0.02, ci_high=lift + 0.02,
                        p_value=0.01, p_adjusted=0.03, n_users=40 if seg == "new" else 300,
                        flag="too_few_users" if (seg == "warm" and arm == "ranker_tfidf") else None,
                        encoder=arm.removeprefix("ranker_"),
                    )
                    if day is not None:
                        row.update(day=day, snapshot=day)
                    if window is not None:
                        row.update(window_start=window[0], window_end=window[1])
                    rows.append(row)
    return rows


def _frames() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    rollup = pl.DataFrame(_lift_rows(window=(D0, D0 + timedelta(days=6))))
    daily = pl.DataFrame([r for i in range(7) for r in _lift_rows(day=D0 + timedelta(days=i))])
    buckets = ["0", "1-4", "5-19", "20+"]
    warm = pl.DataFrame([
        dict(protocol="time_split", scope="full", arm=arm, baseline_arm="als", segment_kind=kind,
             history_bucket=b, bucket_order=i, metric="recall", k=20, value=0.2, baseline_value=0.2 - 0.08 / (i + 1),
             abs_lift=0.08 / (i + 1), ci_low=0.08 / (i + 1) - 0.03, ci_high=0.08 / (i + 1) + 0.03, n_users=100,
             window_start=D0, window_end=D0 + timedelta(days=6))
        for arm in ("ranker_minilm", "ranker_no_text") for kind in ("user", "item") for i, b in enumerate(buckets)
    ])
    cost = pl.DataFrame([
        dict(day=D0 + timedelta(days=i), encoder=enc, encoder_fingerprint="f", params=p, dim=dim, texts_total=1000,
             texts_encoded=100, cache_hits=900, seconds=100 / tps, texts_per_s=tps, device="cpu", precision="fp32")
        for i in range(2) for enc, p, dim, tps in (("minilm", 22_700_000, 384, 600.0), ("tfidf", 0, 5000, 50_000.0))
    ])
    return rollup, daily, warm, cost


class _Checker(HTMLParser):
    VOID = {"meta", "br", "hr", "img", "input", "link", "col"}

    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.tags: dict[str, int] = {}
        self.errors: list[str] = []
        self.external: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        for name, value in attrs:
            if name in ("src", "href") and value and "://" in value:
                self.external.append(value)
        if tag in ("script", "link"):
            self.external.append(tag)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1

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


def test_report_has_charts_arm_names_and_is_well_formed(tmp_path):
    rollup, daily, warm, cost = _frames()
    target = UPath(tmp_path / "reports" / "lift.html")
    write_html_report(target, rollup, daily, warm, cost, title="Cold-start <lift> report")
    text = target.read_text(encoding="utf-8")
    parsed = _parse(text)
    assert parsed.errors == [] and parsed.stack == []
    assert parsed.external == []  # self-contained: no scripts, no linked CSS, no URLs to fetch
    # (a) 2 protocol panels, (b) 2 trend panels, (c) 2 warm-up panels, (d) 1 scatter
    assert parsed.tags["svg"] >= 7
    assert parsed.tags.get("polygon", 0) >= 1  # warm-up CI band
    body = "".join(parsed.text)
    for name in ("ranker_minilm", "ranker_tfidf", "ranker_no_text", "item_holdout", "cold_only", "recall@20"):
        assert name in body
    assert "Cold-start <lift> report" in body and "<lift>" not in text  # escaped
    assert "no data yet" not in body


def test_report_on_empty_frames_says_no_data(tmp_path):
    target = UPath(tmp_path / "empty.html")
    empty = pl.DataFrame()
    write_html_report(target, empty, empty, empty, empty, title="Nothing yet")
    text = target.read_text()
    parsed = _parse(text)
    assert parsed.errors == [] and parsed.stack == []
    assert text.count("no data yet") >= 4


def test_report_uses_daily_when_no_rollup_and_writes_to_memory_lake():
    _, daily, _, cost = _frames()
    schema_only = daily.head(0)
    url = f"memory://lake-{uuid.uuid4().hex}/reports/lift.html"
    write_html_report(UPath(url), schema_only, daily, pl.DataFrame(), cost, title="t")
    text = UPath(url).read_text()
    assert "latest day (no rollup yet)" in text and "ranker_minilm" in text
    assert _parse(text).errors == []


def test_svg_lift_chart_rows_and_empty():
    rollup, *_ = _frames()
    one = rollup.filter((pl.col("protocol") == "time_split") & (pl.col("metric") == "recall"))
    svg = svg_lift_chart(one, title="t")
    parsed = _parse(svg)
    assert parsed.errors == [] and svg.startswith("<svg")
    assert parsed.tags["circle"] == one.height  # one point per row
    assert "ranker_minilm vs ranker_tfidf" in svg and "item:new" in svg
    assert "no data yet" in svg_lift_chart(pl.DataFrame())


def test_choose_metric_prefers_recall_at_20_else_most_common():
    rollup, *_ = _frames()
    assert choose_metric(rollup) == ("recall", 20)
    only_ndcg = rollup.filter(pl.col("metric") == "ndcg")
    assert choose_metric(only_ndcg) == ("ndcg", 10)
    assert choose_metric(pl.DataFrame()) is None


def test_encoder_cost_vs_lift_pairs_encoders_with_their_ranker():
    rollup, _, _, cost = _frames()
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
