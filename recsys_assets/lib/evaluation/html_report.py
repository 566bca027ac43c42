"""The HTML lift report: one self-contained file with inline SVG charts (no JS, no CDN).

The machines that build and read it may have no internet, so every chart is
SVG generated here and every style is inline. Sections:

(a) lift by segment with 95% CI error bars (forest plot, one panel per
    protocol x scope at a headline metric@k, recall@20 when present);
(b) lift trend over days (daily rows, new-user / new-item cells);
(c) warm-up curves: abs lift vs history bucket with a CI band;
(d) encoder cost (texts/s) vs lift scatter;
plus readable tables. Empty inputs give "no data yet" instead of failing.

``svg_lift_chart`` and ``markdown_lift_table`` are reused by the Dagster
assets for their UI metadata.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

import polars as pl
from upath import UPath

from recsys_assets.lib.lake import write_bytes_atomic

PALETTE = (
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
    "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22",
)
SEGMENT_ORDER = {"new": 0, "cold": 1, "warming": 2, "warm": 3, "all": 4}
HEADLINE_METRIC = ("recall", 20)
NO_DATA = "no data yet"

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px} h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:14px;margin:16px 0 4px} p.note{color:#555;font-size:13px}
table{border-collapse:collapse;font-size:12px;margin:8px 0}
th,td{border:1px solid #ddd;padding:3px 6px;text-align:right;white-space:nowrap}
th{background:#f4f4f4} td.t{text-align:left}
tr.pos td{background:#eef8ee} tr.neg td{background:#fbeeee}
.empty{color:#888;font-style:italic} svg{display:block;margin:4px 0 12px}
details summary{cursor:pointer;font-size:13px}
"""


# --- small helpers ------------------------------------------------------------------


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _num(value: Any) -> float | None:
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) or math.isinf(f) else f


def _fmt(value: Any, digits: int = 4) -> str:
    f = _num(value)
    if f is None:
        return "" if value is None or isinstance(value, float) else str(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"{f:.{digits}f}"


def _pct(value: Any) -> str:
    f = _num(value)
    return "" if f is None else f"{f * 100:+.1f}%"


def _get(row: dict, key: str, default: Any = None) -> Any:
    return row.get(key, default)


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step) * step
    ticks = []
    t = start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    return ticks


def _tick_label(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 1:
        return f"{v:.3g}"
    return f"{v:.3f}".rstrip("0").rstrip(".") if abs(v) >= 0.001 else f"{v:.1e}"


def _svg_open(width: int, height: int, title: str) -> list[str]:
    """Opening tag, accessible title and the bold heading of a chart."""
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11" role="img">',
        f"<title>{_esc(title)}</title>",
        f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13" font-weight="bold">{_esc(title)}</text>',
    ]


def _y_grid(y_lo: float, y_hi: float, left: float, plot_w: float, py) -> list[str]:
    """Horizontal grid lines with their tick labels."""
    out = []
    for t in _nice_ticks(y_lo, y_hi):
        out.append(f'<line x1="{left}" y1="{py(t):.1f}" x2="{left + plot_w}" y2="{py(t):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{left - 6}" y="{py(t) + 4:.1f}" text-anchor="end" fill="#555">{_esc(_tick_label(t))}</text>')
    return out


def _empty_svg(message: str = NO_DATA, width: int = 480, height: int = 60) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img"><title>{_esc(message)}</title>'
        f'<rect x="0.5" y="0.5" width="{width - 1}" height="{height - 1}" fill="#fafafa" stroke="#ddd"/>'
        f'<text x="{width / 2}" y="{height / 2 + 4}" text-anchor="middle" font-size="13" '
        f'fill="#888" font-style="italic">{_esc(message)}</text></svg>'
    )


def _segment_label(row: dict) -> str:
    kind, seg = _get(row, "segment_kind"), _get(row, "segment")
    if kind is None and seg is None:
        return ""
    if kind in (None, "all") and seg in (None, "all"):
        return "all"
    return f"{kind}:{seg}"


def _pair_label(row: dict) -> str:
    arm, base = _get(row, "arm"), _get(row, "baseline_arm")
    if arm is None:
        return ""
    return f"{arm} vs {base}" if base is not None else str(arm)


def _sort_rows(rows: list[dict]) -> list[dict]:
    def key(r: dict) -> tuple:
        return (
            str(_get(r, "protocol", "")), str(_get(r, "scope", "")), str(_get(r, "arm", "")),
            str(_get(r, "baseline_arm", "")), str(_get(r, "segment_kind", "")),
            SEGMENT_ORDER.get(str(_get(r, "segment", "")), 9), str(_get(r, "segment", "")),
            str(_get(r, "metric", "")), _num(_get(r, "k")) or 0,
        )

    return sorted(rows, key=key)


def _color_map(names: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in names:
        if name not in out:
            out[name] = PALETTE[len(out) % len(PALETTE)]
    return out


def _metric_label(metric: Any, k: Any) -> str:
    return f"{metric}@{k}" if k is not None else str(metric)


def choose_metric(df: pl.DataFrame, preferred: tuple[str, int] = HEADLINE_METRIC) -> tuple[str, int | None] | None:
    """The headline ``(metric, k)`` of ``df``: ``preferred`` if present, else the most frequent."""
    if df.is_empty() or "metric" not in df.columns:
        return None
    has_k = "k" in df.columns
    cols = ["metric", "k"] if has_k else ["metric"]
    counts = df.group_by(cols).len().sort(["len", *cols], descending=[True] + [False] * len(cols))
    for row in counts.iter_rows(named=True):
        if str(row["metric"]).lower() == preferred[0] and (not has_k or row["k"] == preferred[1]):
            return row["metric"], row.get("k")
    top = counts.row(0, named=True)
    return top["metric"], top.get("k")


def _filter_metric(df: pl.DataFrame, metric: tuple[str, int | None] | None) -> pl.DataFrame:
    if metric is None or df.is_empty():
        return df
    out = df.filter(pl.col("metric") == metric[0])
    if "k" in df.columns:
        out = out.filter(pl.col("k").is_null() if metric[1] is None else pl.col("k") == metric[1])
    return out


def _latest_window(df: pl.DataFrame, keys: Sequence[str]) -> pl.DataFrame:
    """Keep the rows of the latest ``window_end`` per ``keys`` (no-op without the column)."""
    if df.is_empty() or "window_end" not in df.columns:
        return df
    keys = [k for k in keys if k in df.columns]
    latest = pl.col("window_end").max().over(keys) if keys else pl.col("window_end").max()
    return df.filter(pl.col("window_end") == latest)


def _groups(df: pl.DataFrame, keys: Sequence[str]) -> list[tuple[tuple, pl.DataFrame]]:
    keys = [k for k in keys if k in df.columns]
    if df.is_empty():
        return []
    if not keys:
        return [((), df)]
    parts = df.partition_by(keys, as_dict=True, maintain_order=True)
    return sorted(parts.items(), key=lambda kv: tuple(str(x) for x in kv[0]))


# --- (a) forest plot of lift with CI ------------------------------------------------------


def svg_lift_chart(df: pl.DataFrame, *, title: str | None = None, width: int = 760) -> str:
    """A forest plot: one row per (arm vs baseline, segment[, metric@k]), dot = abs lift, bar = 95% CI.

    Needs ``abs_lift``; uses ``ci_low``/``ci_high``, ``arm``, ``baseline_arm``,
    ``segment_kind``, ``segment``, ``metric``, ``k``, ``n_users``, ``flag`` when
    present. Flagged rows (e.g. too few users) are drawn hollow and grey.
    Returns an ``<svg>`` string (a "no data yet" box for an empty frame).
    """
    if df is None or df.is_empty() or "abs_lift" not in df.columns:
        return _empty_svg()
    rows = _sort_rows(df.to_dicts())
    multi_metric = "metric" in df.columns and df.select("metric", *(["k"] if "k" in df.columns else [])).n_unique() > 1
    multi_ctx = any(c in df.columns and df[c].n_unique() > 1 for c in ("protocol", "scope"))
    values: list[float] = []
    for r in rows:
        for key in ("abs_lift", "ci_low", "ci_high"):
            f = _num(r.get(key))
            if f is not None:
                values.append(f)
    lo, hi = (min(values + [0.0]), max(values + [0.0])) if values else (-1.0, 1.0)
    pad = (hi - lo) * 0.08 or 0.01
    lo, hi = lo - pad, hi + pad
    label_w, right_w, row_h, top, bottom = 330, 90, 20, 30 if title else 12, 34
    plot_w = max(width - label_w - right_w, 120)
    height = top + row_h * len(rows) + bottom

    def x(v: float) -> float:
        return label_w + (v - lo) / (hi - lo) * plot_w

    colors = _color_map(_pair_label(r) for r in rows)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11" role="img">',
        f"<title>{_esc(title or 'lift with 95% CI')}</title>",
    ]
    if title:
        out.append(f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13" font-weight="bold">{_esc(title)}</text>')
    axis_y = top + row_h * len(rows)
    for i in range(0, len(rows), 2):
        out.append(f'<rect x="0" y="{top + row_h * i}" width="{width}" height="{row_h}" fill="#f8f8f8"/>')
    for t in _nice_ticks(lo, hi):
        tx = x(t)
        out.append(f'<line x1="{tx:.1f}" y1="{top}" x2="{tx:.1f}" y2="{axis_y}" stroke="#eee"/>')
        out.append(f'<text x="{tx:.1f}" y="{axis_y + 14}" text-anchor="middle" fill="#555">{_esc(_tick_label(t))}</text>')
    out.append(f'<line x1="{x(0):.1f}" y1="{top - 4}" x2="{x(0):.1f}" y2="{axis_y}" stroke="#444" stroke-dasharray="3,3"/>')
    out.append(
        f'<text x="{label_w + plot_w / 2}" y="{axis_y + 28}" text-anchor="middle" fill="#333">'
        "absolute lift (arm - baseline), 95% CI</text>"
    )
    out.append(f'<text x="{label_w + plot_w + 8}" y="{top - 2 if title else 10}" fill="#555">n users</text>')
    for i, r in enumerate(rows):
        cy = top + row_h * i + row_h / 2
        label = f"{_pair_label(r)} · {_segment_label(r)}"
        if multi_metric:
            label += f" · {_metric_label(r.get('metric'), r.get('k'))}"
        if multi_ctx:
            label = f"{r.get('protocol', '')}/{r.get('scope', '')} · " + label
        flag = r.get("flag")
        color = "#999" if flag else colors[_pair_label(r)]
        lift, cl, ch = _num(r.get("abs_lift")), _num(r.get("ci_low")), _num(r.get("ci_high"))
        tip = (
            f"{label}: lift {_fmt(lift)} [{_fmt(cl)}, {_fmt(ch)}], value {_fmt(r.get('value'))} vs "
            f"{_fmt(r.get('baseline_value'))}, p_adj {_fmt(r.get('p_adjusted'))}, n={r.get('n_users', '')}"
            + (f", flag: {flag}" if flag else "")
        )
        out.append(f"<g><title>{_esc(tip)}</title>")
        out.append(f'<text x="{label_w - 8}" y="{cy + 4:.1f}" text-anchor="end" fill="{"#999" if flag else "#222"}">{_esc(label[:60])}</text>')
        if cl is not None and ch is not None:
            out.append(f'<line x1="{x(cl):.1f}" y1="{cy:.1f}" x2="{x(ch):.1f}" y2="{cy:.1f}" stroke="{color}" stroke-width="2"/>')
            for v in (cl, ch):
                out.append(f'<line x1="{x(v):.1f}" y1="{cy - 4:.1f}" x2="{x(v):.1f}" y2="{cy + 4:.1f}" stroke="{color}" stroke-width="2"/>')
        if lift is not None:
            fill = "white" if flag else color
            out.append(f'<circle cx="{x(lift):.1f}" cy="{cy:.1f}" r="4" fill="{fill}" stroke="{color}" stroke-width="1.5"/>')
        n = r.get("n_users")
        out.append(f'<text x="{label_w + plot_w + 8}" y="{cy + 4:.1f}" fill="#555">{_esc("" if n is None else n)}{" ⚠" if flag else ""}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)


# --- (b)(c) line charts ---------------------------------------------------------------


def _svg_line_chart(
    series: list[dict],
    *,
    x_labels: dict[float, str],
    title: str,
    y_label: str,
    width: int = 760,
    height: int = 300,
    band: bool = True,
) -> str:
    """series: [{"name", "xs", "ys", "lo", "hi"}]; xs numeric; lo/hi optional CI per point."""
    pts = [(xv, yv) for s in series for xv, yv in zip(s["xs"], s["ys"]) if yv is not None]
    if not pts:
        return _empty_svg()
    ys = [p[1] for p in pts] + [0.0]
    if band:
        for s in series:
            ys += [v for v in s.get("lo", []) + s.get("hi", []) if v is not None]
    xs = [p[0] for p in pts]
    x_lo, x_hi = min(xs), max(xs)
    if x_hi == x_lo:
        x_lo, x_hi = x_lo - 1, x_hi + 1
    y_lo, y_hi = min(ys), max(ys)
    pad = (y_hi - y_lo) * 0.08 or 0.01
    y_lo, y_hi = y_lo - pad, y_hi + pad
    left, right, top, legend_h = 64, 20, 28, 16 * ((len(series) + 1) // 2) + 8
    bottom = 40 + legend_h
    plot_w, plot_h = width - left - right, height - top - bottom

    def px(v: float) -> float:
        return left + (v - x_lo) / (x_hi - x_lo) * plot_w

    def py(v: float) -> float:
        return top + (y_hi - v) / (y_hi - y_lo) * plot_h

    out = _svg_open(width, height, title) + _y_grid(y_lo, y_hi, left, plot_w, py)
    out.append(f'<line x1="{left}" y1="{py(0):.1f}" x2="{left + plot_w}" y2="{py(0):.1f}" stroke="#444" stroke-dasharray="3,3"/>')
    # Thin x labels to at most ~10.
    label_items = sorted(x_labels.items())
    step = max(1, math.ceil(len(label_items) / 10))
    for xv, text in label_items[::step]:
        out.append(f'<text x="{px(xv):.1f}" y="{top + plot_h + 14}" text-anchor="middle" fill="#555">{_esc(text)}</text>')
    out.append(
        f'<text transform="translate(14,{top + plot_h / 2}) rotate(-90)" text-anchor="middle" fill="#333">{_esc(y_label)}</text>'
    )
    for i, s in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        trip = [(xv, yv) for xv, yv in zip(s["xs"], s["ys"]) if yv is not None]
        lo_hi = [
            (xv, lo, hi)
            for xv, lo, hi in zip(s["xs"], s.get("lo") or [None] * len(s["xs"]), s.get("hi") or [None] * len(s["xs"]))
            if lo is not None and hi is not None
        ]
        out.append(f"<g><title>{_esc(s['name'])}</title>")
        if band and len(lo_hi) >= 2:
            poly = [f"{px(a):.1f},{py(h):.1f}" for a, _, h in lo_hi] + [f"{px(a):.1f},{py(lo):.1f}" for a, lo, _ in reversed(lo_hi)]
            out.append(f'<polygon points="{" ".join(poly)}" fill="{color}" fill-opacity="0.15" stroke="none"/>')
        elif band and len(lo_hi) == 1:
            a, lo, hi = lo_hi[0]
            out.append(f'<line x1="{px(a):.1f}" y1="{py(lo):.1f}" x2="{px(a):.1f}" y2="{py(hi):.1f}" stroke="{color}" stroke-opacity="0.5" stroke-width="3"/>')
        if len(trip) >= 2:
            path = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in trip)
            out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for a, b in trip:
            out.append(
                f'<circle cx="{px(a):.1f}" cy="{py(b):.1f}" r="3" fill="{color}"><title>{_esc(s["name"])}: '
                f'{_esc(x_labels.get(a, a))} → {_fmt(b)}</title></circle>'
            )
        out.append("</g>")
        lx = left + (i % 2) * (plot_w / 2)
        ly = top + plot_h + 32 + 16 * (i // 2)
        out.append(f'<rect x="{lx:.1f}" y="{ly - 9}" width="12" height="10" fill="{color}"/>')
        out.append(f'<text x="{lx + 16:.1f}" y="{ly}" fill="#222">{_esc(s["name"][:70])}</text>')
    out.append("</svg>")
    return "".join(out)


def _as_ordinal(v: Any) -> float:
    if isinstance(v, datetime):
        return float(v.date().toordinal())
    if isinstance(v, date):
        return float(v.toordinal())
    return float(v)


def svg_trend_chart(daily: pl.DataFrame, *, title: str, max_series: int = 8) -> str:
    """abs lift per day, one line (with CI band) per arm vs baseline x segment."""
    if daily is None or daily.is_empty() or "day" not in daily.columns:
        return _empty_svg()
    keys = [c for c in ("arm", "baseline_arm", "segment_kind", "segment") if c in daily.columns]
    groups = _groups(daily.sort("day"), keys)
    groups.sort(key=lambda kv: (-kv[1].height, tuple(str(x) for x in kv[0])))
    series, labels = [], {}
    for _, g in groups[:max_series]:
        first = g.row(0, named=True)
        xs = [_as_ordinal(d) for d in g["day"].to_list()]
        for d, xv in zip(g["day"].to_list(), xs):
            labels[xv] = d.isoformat()[5:] if hasattr(d, "isoformat") else str(d)
        series.append({
            "name": f"{_pair_label(first)} · {_segment_label(first)}",
            "xs": xs,
            "ys": [_num(v) for v in g["abs_lift"].to_list()],
            "lo": [_num(v) for v in g["ci_low"].to_list()] if "ci_low" in g.columns else [],
            "hi": [_num(v) for v in g["ci_high"].to_list()] if "ci_high" in g.columns else [],
        })
    return _svg_line_chart(series, x_labels=labels, title=title, y_label="abs lift", band=len(series) <= 3)


def svg_warmup_chart(warmup: pl.DataFrame, *, title: str) -> str:
    """abs lift vs history bucket (ordered by bucket_order), one line + CI band per arm vs baseline."""
    if warmup is None or warmup.is_empty() or "bucket_order" not in warmup.columns:
        return _empty_svg()
    labels = {
        float(o): str(b)
        for o, b in warmup.select("bucket_order", "history_bucket").unique().iter_rows()
        if o is not None
    }
    series = []
    for _, g in _groups(warmup.sort("bucket_order"), ["arm", "baseline_arm"]):
        first = g.row(0, named=True)
        series.append({
            "name": _pair_label(first),
            "xs": [float(v) for v in g["bucket_order"].to_list()],
            "ys": [_num(v) for v in g["abs_lift"].to_list()],
            "lo": [_num(v) for v in g["ci_low"].to_list()] if "ci_low" in g.columns else [],
            "hi": [_num(v) for v in g["ci_high"].to_list()] if "ci_high" in g.columns else [],
        })
    return _svg_line_chart(series, x_labels=labels, title=title, y_label="abs lift (history bucket on x)")


# --- (d) encoder cost vs lift -------------------------------------------------------------


def encoder_cost_vs_lift(encoder_cost: pl.DataFrame, lift: pl.DataFrame) -> pl.DataFrame:
    """One row per encoder x cell: mean texts/s, total seconds, and the text lift of ``ranker_<encoder>``.

    Lift rows: headline metric@k, baseline ``ranker_no_text`` when present
    (text lift, comparable across encoders incl. TF-IDF), new-user / new-item
    segments; the latest window per protocol/scope.
    """
    cols = ["encoder", "texts_per_s", "seconds", "lift", "ci_low", "ci_high", "cell"]
    empty = pl.DataFrame(schema={"encoder": pl.String, "texts_per_s": pl.Float64, "seconds": pl.Float64,
                                 "lift": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64, "cell": pl.String})
    if encoder_cost is None or lift is None or encoder_cost.is_empty() or lift.is_empty():
        return empty
    if "encoder" not in encoder_cost.columns or "arm" not in lift.columns:
        return empty
    agg = [pl.col("texts_per_s").mean().alias("texts_per_s")] if "texts_per_s" in encoder_cost.columns else [pl.lit(None, pl.Float64).alias("texts_per_s")]
    agg.append(pl.col("seconds").sum().alias("seconds") if "seconds" in encoder_cost.columns else pl.lit(None, pl.Float64).alias("seconds"))
    cost = encoder_cost.group_by("encoder").agg(agg)
    lf = _filter_metric(lift, choose_metric(lift))
    lf = _latest_window(lf, ["protocol", "scope"])
    if "baseline_arm" in lf.columns and (lf["baseline_arm"] == "ranker_no_text").any():
        lf = lf.filter(pl.col("baseline_arm") == "ranker_no_text")
    if "segment" in lf.columns and (lf["segment"] == "new").any():
        lf = lf.filter(pl.col("segment") == "new")
    enc_expr = pl.col("arm").str.strip_prefix("ranker_").str.split("+").list.first()
    if "encoder" in lf.columns:
        enc_expr = pl.coalesce(pl.col("encoder"), enc_expr)
    lf = lf.filter(pl.col("arm").str.starts_with("ranker_")).with_columns(enc_expr.alias("_enc"))
    if lf.is_empty():
        return empty
    cell = pl.concat_str(
        [pl.col(c).cast(pl.String).fill_null("") if c in lf.columns else pl.lit("") for c in ("protocol", "scope", "segment_kind", "segment")],
        separator="/",
    )
    lf = lf.select(
        pl.col("_enc").alias("encoder"),
        pl.col("abs_lift").cast(pl.Float64).alias("lift"),
        (pl.col("ci_low") if "ci_low" in lf.columns else pl.lit(None)).cast(pl.Float64).alias("ci_low"),
        (pl.col("ci_high") if "ci_high" in lf.columns else pl.lit(None)).cast(pl.Float64).alias("ci_high"),
        cell.alias("cell"),
    )
    joined = cost.join(lf, on="encoder", how="inner")
    return joined.select(cols).sort("cell", "encoder")


def svg_cost_scatter(points: pl.DataFrame, *, title: str, width: int = 760, height: int = 320) -> str:
    """texts/s (log x when the range is wide) vs lift, one colour per cell, encoder names as labels."""
    if points is None or points.is_empty():
        return _empty_svg()
    pts = [p for p in points.to_dicts() if _num(p.get("texts_per_s")) and _num(p.get("lift")) is not None]
    if not pts:
        return _empty_svg("no encoder with both cost and lift yet")
    tps = [_num(p["texts_per_s"]) for p in pts]
    log_x = min(tps) > 0 and max(tps) / min(tps) > 20
    tx = (lambda v: math.log10(v)) if log_x else (lambda v: v)
    xs = [tx(v) for v in tps]
    ys = [_num(p["lift"]) for p in pts] + [0.0]
    ys += [v for p in pts for v in (_num(p.get("ci_low")), _num(p.get("ci_high"))) if v is not None]
    x_lo, x_hi = min(xs), max(xs)
    if x_hi == x_lo:
        x_lo, x_hi = x_lo - 1, x_hi + 1
    xpad = (x_hi - x_lo) * 0.08
    x_lo, x_hi = x_lo - xpad, x_hi + xpad
    y_lo, y_hi = min(ys), max(ys)
    pad = (y_hi - y_lo) * 0.1 or 0.01
    y_lo, y_hi = y_lo - pad, y_hi + pad
    cells = _color_map(str(p.get("cell")) for p in pts)
    left, right, top = 64, 20, 28
    plot_w, plot_h = width - left - right, height - top - 44
    height = top + plot_h + 44 + 16 * len(cells)

    def px(v: float) -> float:
        return left + (v - x_lo) / (x_hi - x_lo) * plot_w

    def py(v: float) -> float:
        return top + (y_hi - v) / (y_hi - y_lo) * plot_h

    out = _svg_open(width, height, title) + _y_grid(y_lo, y_hi, left, plot_w, py)
    if log_x:
        x_ticks = [
            math.log10(m * 10 ** e)
            for e in range(math.floor(x_lo), math.ceil(x_hi) + 1)
            for m in ((1,) if x_hi - x_lo > 2 else (1, 2, 5))
            if x_lo <= math.log10(m * 10 ** e) <= x_hi
        ]
    else:
        x_ticks = _nice_ticks(x_lo, x_hi)
    for t in x_ticks:
        label = f"{10 ** t:,.0f}" if log_x else _tick_label(t)
        out.append(f'<text x="{px(t):.1f}" y="{top + plot_h + 14}" text-anchor="middle" fill="#555">{_esc(label)}</text>')
    out.append(f'<line x1="{left}" y1="{py(0):.1f}" x2="{left + plot_w}" y2="{py(0):.1f}" stroke="#444" stroke-dasharray="3,3"/>')
    out.append(
        f'<text x="{left + plot_w / 2}" y="{top + plot_h + 30}" text-anchor="middle" fill="#333">'
        f'encoding throughput, texts/s{" (log scale)" if log_x else ""}</text>'
    )
    out.append(f'<text transform="translate(14,{top + plot_h / 2}) rotate(-90)" text-anchor="middle" fill="#333">abs lift</text>')
    for p, xv in zip(pts, xs):
        color = cells[str(p.get("cell"))]
        cx, cy = px(xv), py(_num(p["lift"]))
        lo, hi = _num(p.get("ci_low")), _num(p.get("ci_high"))
        tip = f"{p['encoder']} ({p.get('cell')}): {_fmt(p['texts_per_s'], 1)} texts/s, lift {_fmt(p['lift'])} [{_fmt(lo)}, {_fmt(hi)}]"
        out.append(f"<g><title>{_esc(tip)}</title>")
        if lo is not None and hi is not None:
            out.append(f'<line x1="{cx:.1f}" y1="{py(lo):.1f}" x2="{cx:.1f}" y2="{py(hi):.1f}" stroke="{color}" stroke-opacity="0.6" stroke-width="2"/>')
        out.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="5" fill="{color}"/>')
        out.append(f'<text x="{cx + 7:.1f}" y="{cy - 5:.1f}" fill="#222">{_esc(p["encoder"])}</text>')
        out.append("</g>")
    for i, (cell, color) in enumerate(cells.items()):
        ly = top + plot_h + 46 + 16 * i
        out.append(f'<rect x="{left}" y="{ly - 9}" width="12" height="10" fill="{color}"/>')
        out.append(f'<text x="{left + 16}" y="{ly}" fill="#222">{_esc(cell)}</text>')
    out.append("</svg>")
    return "".join(out)


# --- tables ------------------------------------------------------------------------------


def _text_bar(lift: float | None, lo: float | None, hi: float | None, scale: float, half: int = 8) -> str:
    """A diverging text bar: '┃' is zero, '█' spans 0..lift, '─' the rest of the CI, '·' empty."""
    cells = ["·"] * (2 * half + 1)
    cells[half] = "┃"
    if scale <= 0:
        return "".join(cells)

    def pos(v: float) -> int:
        return max(0, min(2 * half, half + round(v / scale * half)))

    if lo is not None and hi is not None:
        for i in range(pos(lo), pos(hi) + 1):
            if i != half:
                cells[i] = "─"
    if lift is not None:
        a, b = sorted((half, pos(lift)))
        for i in range(a, b + 1):
            if i != half:
                cells[i] = "█"
    return "".join(cells)


def _md_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_lift_table(df: pl.DataFrame, max_rows: int = 40) -> str:
    """A markdown table of lift rows with a text bar of lift and CI (for Dagster UI metadata).

    Bar legend: ``┃`` = 0, ``█`` = lift, ``─`` = 95% CI, common scale over the
    shown rows. Rows with a ``flag`` show it; more than ``max_rows`` rows are
    cut with a note.
    """
    if df is None or df.is_empty():
        return f"_{NO_DATA}_"
    rows = _sort_rows(df.to_dicts())
    shown = rows[:max_rows]
    scale = max(
        [abs(v) for r in shown for v in (_num(r.get("abs_lift")), _num(r.get("ci_low")), _num(r.get("ci_high"))) if v is not None]
        or [0.0]
    )
    ctx_cols = [c for c in ("protocol", "scope") if c in df.columns and df[c].n_unique() > 1]
    header = ctx_cols + ["arm vs baseline", "segment", "metric", "value", "baseline", "abs lift", "rel lift",
                         "95% CI", "p adj", "n", "lift (┃=0)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in shown:
        lift, lo, hi = _num(r.get("abs_lift")), _num(r.get("ci_low")), _num(r.get("ci_high"))
        n = r.get("n_users")
        flag = r.get("flag")
        cells = [str(r.get(c, "")) for c in ctx_cols] + [
            _pair_label(r),
            _segment_label(r),
            _metric_label(r.get("metric"), r.get("k")),
            _fmt(r.get("value")),
            _fmt(r.get("baseline_value")),
            _fmt(lift),
            _pct(r.get("rel_lift")),
            f"[{_fmt(lo)}, {_fmt(hi)}]" if lo is not None and hi is not None else "",
            _fmt(r.get("p_adjusted"), 3),
            ("" if n is None else str(n)) + (f" ⚠ {flag}" if flag else ""),
            "`" + _text_bar(lift, lo, hi, scale) + "`",
        ]
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    if len(rows) > max_rows:
        lines.append(f"\n_{len(rows) - max_rows} more rows not shown (of {len(rows)})._")
    return "\n".join(lines)


def _html_table(df: pl.DataFrame, columns: Sequence[str] | None = None, max_rows: int = 300) -> str:
    if df is None or df.is_empty():
        return f'<p class="empty">{NO_DATA}</p>'
    cols = [c for c in (columns or df.columns) if c in df.columns]
    rows = df.head(max_rows).to_dicts()
    out = ["<table><thead><tr>", "".join(f"<th>{_esc(c)}</th>" for c in cols), "</tr></thead><tbody>"]
    for r in rows:
        lo, hi, padj = _num(r.get("ci_low")), _num(r.get("ci_high")), _num(r.get("p_adjusted"))
        cls = ""
        if lo is not None and hi is not None and (padj is None or padj < 0.05):
            cls = ' class="pos"' if lo > 0 else (' class="neg"' if hi < 0 else "")
        cells = []
        for c in cols:
            v = r.get(c)
            if isinstance(v, float):
                text, td = _fmt(v, 1 if c in ("texts_per_s", "seconds") else 4), "<td>"
            elif isinstance(v, (int, date)):
                text, td = str(v), "<td>"
            else:
                text, td = "" if v is None else str(v), '<td class="t">'
            cells.append(f"{td}{_esc(text)}</td>")
        out.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    if df.height > max_rows:
        out.append(f'<p class="note">{df.height - max_rows} more rows not shown; query the warehouse.</p>')
    return "".join(out)


_LIFT_COLUMNS = (
    "day", "window_start", "window_end", "protocol", "scope", "arm", "baseline_arm", "segment_kind",
    "segment", "metric", "k", "value", "baseline_value", "abs_lift", "rel_lift", "ci_low", "ci_high",
    "p_adjusted", "n_users", "flag", "encoder",
)


def _sorted_frame(df: pl.DataFrame) -> pl.DataFrame:
    if df is None or df.is_empty():
        return df
    return pl.DataFrame(_sort_rows(df.to_dicts()), schema=df.schema)


# --- the report ----------------------------------------------------------------------------


def _ctx_title(key: tuple, names: Sequence[str]) -> str:
    return ", ".join(f"{n}={v}" for n, v in zip(names, key))


def render_html_report(
    lift_rollup: pl.DataFrame,
    lift_daily: pl.DataFrame,
    warmup: pl.DataFrame,
    encoder_cost: pl.DataFrame,
    title: str,
) -> str:
    """The report as an HTML string (see :func:`write_html_report`)."""
    def clean(df: pl.DataFrame | None) -> pl.DataFrame:
        return df if df is not None else pl.DataFrame()

    lift_rollup, lift_daily, warmup, encoder_cost = map(clean, (lift_rollup, lift_daily, warmup, encoder_cost))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_esc(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
        '<p class="note">Lift = arm minus baseline arm on the same users, same truth, same K; '
        "95% paired-bootstrap CI; p adjusted with Holm across segment x metric. <b>full</b> ranks the "
        "whole catalogue, <b>cold_only</b> only the items new at the snapshot: read both, never one as "
        "the other. Grey/hollow points carry a flag (e.g. too few users).</p>",
    ]

    # (a) lift by segment
    parts.append("<h2>Lift by segment</h2>")
    seg_src, seg_note = lift_rollup, "pooled over the window"
    if seg_src.is_empty() and not lift_daily.is_empty():
        seg_src = lift_daily.filter(pl.col("day") == pl.col("day").max().over(["protocol", "scope"])) \
            if {"day", "protocol", "scope"} <= set(lift_daily.columns) else lift_daily
        seg_note = "latest day (no rollup yet)"
    metric = choose_metric(seg_src)
    seg = _latest_window(_filter_metric(seg_src, metric), ["protocol", "scope"])
    if seg.is_empty():
        parts.append(_empty_svg())
    else:
        for key, g in _groups(seg, ["protocol", "scope"]):
            window = ""
            if "window_start" in g.columns and "window_end" in g.columns:
                window = f", window {g['window_start'].min()} .. {g['window_end'].max()}"
            elif "day" in g.columns:
                window = f", day {g['day'].max()}"
            name = _ctx_title(key, [c for c in ("protocol", "scope") if c in g.columns])
            panel_title = f"{name} · {_metric_label(*metric)} · {seg_note}{window}"
            parts.append(f"<h3>{_esc(panel_title)}</h3>")
            parts.append(svg_lift_chart(g, title=f"{name} · {_metric_label(*metric)}"))

    # (b) trend
    parts.append("<h2>Lift trend over days</h2>")
    d_metric = choose_metric(lift_daily)
    trend = _filter_metric(lift_daily, d_metric)
    if not trend.is_empty() and "segment" in trend.columns and (trend["segment"] == "new").any():
        trend = trend.filter(pl.col("segment") == "new")
        parts.append('<p class="note">New-user and new-item cells; all cells are in the warehouse view reports.lift_trend.</p>')
    if trend.is_empty() or "day" not in trend.columns:
        parts.append(_empty_svg())
    else:
        for key, g in _groups(trend, ["protocol", "scope"]):
            name = _ctx_title(key, [c for c in ("protocol", "scope") if c in g.columns])
            parts.append(svg_trend_chart(g, title=f"{name} · {_metric_label(*d_metric)} · abs lift per day"))

    # (c) warm-up
    parts.append("<h2>Warm-up curves: where does ID-only catch up?</h2>")
    w_metric = choose_metric(warmup)
    wu = _latest_window(_filter_metric(warmup, w_metric), ["protocol", "scope"])
    if wu.is_empty():
        parts.append(_empty_svg())
    else:
        parts.append('<p class="note">Lift of each arm over its baseline by amount of prior history; '
                     "the band is the 95% CI. Where the band covers 0 the baseline has caught up.</p>")
        for key, g in _groups(wu, ["protocol", "scope", "segment_kind"]):
            name = _ctx_title(key, [c for c in ("protocol", "scope", "segment_kind") if c in g.columns])
            parts.append(svg_warmup_chart(g, title=f"{name} · {_metric_label(*w_metric)}"))

    # (d) cost vs lift
    parts.append("<h2>Encoder cost vs lift</h2>")
    points = encoder_cost_vs_lift(encoder_cost, lift_rollup if not lift_rollup.is_empty() else lift_daily)
    lift_metric = choose_metric(lift_rollup if not lift_rollup.is_empty() else lift_daily)
    scatter_title = "texts/s vs text lift of ranker_<encoder>"
    if lift_metric:
        scatter_title += f" · {_metric_label(*lift_metric)}"
    parts.append(svg_cost_scatter(points, title=scatter_title))
    parts.append(_html_table(points))

    # tables
    parts.append("<h2>Tables</h2>")
    parts.append("<h3>Lift, pooled over the window</h3>")
    parts.append(_html_table(_sorted_frame(lift_rollup), _LIFT_COLUMNS))
    parts.append("<h3>Lift, latest day</h3>")
    latest = lift_daily
    if not latest.is_empty() and "day" in latest.columns:
        latest = latest.filter(pl.col("day") == pl.col("day").max())
    parts.append(_html_table(_sorted_frame(latest), _LIFT_COLUMNS))
    parts.append("<h3>Warm-up curves</h3>")
    wu_table = warmup
    if not wu_table.is_empty():
        sort_cols = [c for c in ("protocol", "scope", "segment_kind", "arm", "baseline_arm", "metric", "k", "bucket_order") if c in wu_table.columns]
        wu_table = wu_table.sort(sort_cols, nulls_last=True)
    parts.append(_html_table(wu_table))
    parts.append("<h3>Encoder cost</h3>")
    ec = encoder_cost
    if not ec.is_empty() and {"day", "encoder"} <= set(ec.columns):
        ec = ec.sort(["day", "encoder"], descending=[True, False])
    parts.append(_html_table(ec))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html_report(
    target: UPath,
    lift_rollup: pl.DataFrame,
    lift_daily: pl.DataFrame,
    warmup: pl.DataFrame,
    encoder_cost: pl.DataFrame,
    title: str,
) -> None:
    """Write the self-contained HTML report to ``target`` atomically (any UPath)."""
    text = render_html_report(lift_rollup, lift_daily, warmup, encoder_cost, title)
    target = target if isinstance(target, UPath) else UPath(target)
    write_bytes_atomic(target, text.encode("utf-8"))
