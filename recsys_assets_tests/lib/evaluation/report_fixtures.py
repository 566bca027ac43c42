"""Report inputs for presentation tests: lift rows, warm-up, encoder cost, and headline frames (HEADLINE_COLUMNS)."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl

from recsys_assets.lib.evaluation.headline import HEADLINE_SCHEMA

START, END = date(2024, 3, 1), date(2024, 3, 21)

# (protocol, endpoint, arm, baseline, scope, segment_kind, segment, abs_lift, ci_low, ci_high, p_adj, n_users, n_items, verdict)
CELLS = [
    ("item_holdout", "lm_vs_no_text/cold_items", "ranker_minilm-l6", "ranker_no_text", "cold_only", "item", "new", 0.062, 0.010, 0.100, 0.004, 224, 51, "lift"),
    ("item_holdout", "lm_vs_tfidf/cold_items", "ranker_minilm-l6", "ranker_tfidf", "cold_only", "item", "new", 0.011, -0.020, 0.041, 0.61, 224, 51, "no detectable lift"),
    ("item_holdout", "lm_vs_no_text/new_users", "ranker_minilm-l6", "ranker_no_text", "full", "user", "new", 0.004, -0.050, 0.060, None, 12, 40, "too few"),
    ("temporal", "lm_vs_no_text/cold_items", "ranker_minilm-l6", "ranker_no_text", "cold_only", "item", "cold", -0.031, -0.052, -0.010, 0.01, 310, 88, "harm"),
    ("temporal", "lm_vs_tfidf/cold_items", "ranker_minilm-l6", "ranker_tfidf", "cold_only", "item", "cold", 0.002, -0.015, 0.019, 0.8, 310, 88, "no detectable lift"),
]


def headline_frame(start: date = START, end: date = END, kind: str = "window", scale: float = 1.0) -> pl.DataFrame:
    rows = []
    for (protocol, endpoint, arm, base, scope, sk, seg, lift, lo, hi, padj, nu, ni, verdict) in CELLS:
        base_value = 0.13
        rows.append(dict(
            window_start=start, window_end=end, window_kind=kind, protocol=protocol, endpoint=endpoint, arm=arm,
            baseline_arm=base, scope=scope, segment_kind=sk, segment=seg, metric="recall", k=20,
            value=base_value + lift * scale, baseline_value=base_value, abs_lift=lift * scale, rel_lift=lift * scale / base_value,
            ci_low=lo * scale, ci_high=hi * scale, p_value=padj, p_adjusted=padj, n_users=nu, n_items=ni, verdict=verdict,
        ))
    return pl.DataFrame(rows, schema=HEADLINE_SCHEMA)


def daily_headline(start: date = START, n_days: int = 7) -> pl.DataFrame:
    return pl.concat([headline_frame(start + timedelta(days=i), start + timedelta(days=i), "day", 1.0 + 0.1 * i) for i in range(n_days)])


D0 = date(2024, 3, 1)
ARMS = [("ranker_minilm", "ranker_no_text"), ("ranker_tfidf", "ranker_no_text"), ("ranker_minilm", "ranker_tfidf")]


def lift_rows(day: date | None = None, window: tuple[date, date] | None = None) -> list[dict]:
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


def report_frames() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    rollup = pl.DataFrame(lift_rows(window=(D0, D0 + timedelta(days=6))))
    daily = pl.DataFrame([r for i in range(7) for r in lift_rows(day=D0 + timedelta(days=i))])
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
