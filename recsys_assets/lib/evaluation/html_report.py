"""The HTML lift report: one self-contained file that opens on the answer.

Order of the page: (1) the answer card (headline table of the primary
endpoints with their verdicts, one sentence per protocol, the window and the
encoding cost); (2) the charts a reader wants: lift of the primary endpoints
over days with its 95% band, the warm-up curve (where ID-only catches up),
lift against encoder cost; (3) the per-segment detail, collapsed by protocol
and scope, small cells behind their own toggle; (4) the data tables.

Charts are drawn by matplotlib and inlined as SVG (no scripts, no CDN: the
machines that build and read the report may be offline); a rerun on the same
rows writes the same bytes. ``markdown_lift_table`` is reused by the Dagster
assets for their UI metadata.
"""

from __future__ import annotations

import html
import io
import math
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import polars as pl
from upath import UPath

from recsys_assets.lib.evaluation import answer
from recsys_assets.lib.evaluation.answer import finite_or_none as _num
from recsys_assets.lib.evaluation.ranker_check import ranker_check_notes, ranker_check_warnings
from recsys_assets.lib.evaluation.stats import MIN_USERS_DEFAULT, TOO_FEW_USERS
from recsys_assets.lib.lake import write_bytes_atomic

SEGMENT_ORDER = {"new": 0, "cold": 1, "warming": 2, "warm": 3, "all": 4}
HEADLINE_METRIC = ("recall", 20)
NO_DATA = "no data yet"
TEXT_BASELINES = ("ranker_no_text", "ranker_tfidf")
"""Baselines of the text arms shown in the warm-up and trend charts (when present)."""

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;color:#222;max-width:1180px;padding:0 16px}
h1{font-size:22px;margin-bottom:4px} h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:14px;margin:16px 0 4px} p.note{color:#555;font-size:13px}
table{border-collapse:collapse;font-size:12px;margin:8px 0}
th,td{border:1px solid #ddd;padding:3px 6px;text-align:right;white-space:nowrap}
th{background:#f4f4f4} td.t{text-align:left}
tr.pos td{background:#eef8ee} tr.neg td{background:#fbeeee}
.empty{color:#888;font-style:italic}
.card{border:2px solid #2b6cb0;border-radius:8px;padding:12px 18px;margin:16px 0;background:#f7fafd}
.card h2{margin-top:4px;border:none}
.card ul{padding-left:18px} .card li{margin:6px 0;line-height:1.4}
.window{font-size:14px;color:#333}
.badge{display:inline-block;border-radius:10px;padding:1px 9px;margin-right:6px;font-size:12px;font-weight:bold}
.v-lift{background:#c6f6d5;color:#22543d} .v-harm{background:#fed7d7;color:#742a2a}
.v-none{background:#edf2f7;color:#2d3748} .v-few{background:#fefcbf;color:#744210}
.warning{border:2px solid #c53030;background:#fff5f5;color:#742a2a;border-radius:6px;padding:8px 12px;margin:8px 0;font-size:14px}
figure.chart{margin:8px 0 20px} figure.chart svg{max-width:100%;height:auto;display:block}
figcaption{font-size:13px;color:#444;margin-bottom:4px}
details{margin:6px 0} details summary{cursor:pointer;font-size:14px}
details details{margin-left:18px} details details summary{font-size:13px;color:#555}
"""

VERDICT_CLASS = {"lift": "v-lift", "harm": "v-harm", "no detectable lift": "v-none", "too few": "v-few"}
"""CSS class of each verdict badge."""


# --- small helpers ------------------------------------------------------------------


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


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





def _as_date(v: Any) -> date | None:
    if isinstance(v, datetime):
        return v.date()
    return v if isinstance(v, date) else None


HIDDEN_FLAGS = (TOO_FEW_USERS, "trivial")
"""Flags of cells shown only behind the small-cells toggle (too few users; a ranked set of no more than K items)."""


def is_small(row: dict, min_users: int = MIN_USERS_DEFAULT) -> bool:
    """A cell shown only behind the small-cells toggle: flagged (see :data:`HIDDEN_FLAGS`) or under ``min_users``."""
    n = row.get("n_users")
    return row.get("flag") in HIDDEN_FLAGS or n is None or int(n) < min_users


# --- charts (matplotlib -> inline SVG) ----------------------------------------------------


def _figure(width_in: float, height_in: float):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=100, layout="constrained")
    return fig, fig.add_subplot()


def _panels(n: int, ncols: int, panel_h: float, width_in: float = 11.0, sharey: bool = True):
    """A figure with ``n`` small-multiple axes, ``ncols`` per row; unused slots removed."""
    from matplotlib.figure import Figure

    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(width_in, 0.6 + panel_h * nrows), dpi=100, layout="constrained")
    axes = fig.subplots(nrows, ncols, sharey=sharey, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        fig.delaxes(ax)
    return fig, axes[:n]


def _line_with_band(ax, xs: list, ys: list, lo: list, hi: list, color: str, label: str | None = None) -> None:
    band = [(x, a, b) for x, a, b in zip(xs, lo, hi) if a is not None and b is not None]
    if band:
        ax.fill_between([b[0] for b in band], [b[1] for b in band], [b[2] for b in band], color=color, alpha=0.2, linewidth=0)
    pts = [(x, y) for x, y in zip(xs, ys) if y is not None]
    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3, color=color, label=label)


def _svg(fig) -> str:
    """The figure as an ``<svg>`` element (text kept as text; fixed ids so reruns give the same bytes)."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "recsys-assets", "svg.id": None}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _figure_html(name: str, caption: str, svg: str) -> str:
    return f'<figure class="chart" data-chart="{_esc(name)}"><figcaption>{_esc(caption)}</figcaption>{svg}</figure>'


def _empty(message: str = NO_DATA) -> str:
    return f'<p class="empty">{_esc(message)}</p>'


def _zero_line(ax) -> None:
    ax.axhline(0, color="#444", linewidth=0.8, linestyle="--")


def chart_lift_over_days(series: pl.DataFrame, *, title: str) -> str:
    """Small multiples, one panel per ``label``: abs lift per day with its 95% band.

    ``series`` columns: day, label, abs_lift, ci_low, ci_high (a missing lift is a gap).
    """
    if series is None or series.is_empty():
        return ""
    groups = _groups(series.sort("day"), ["label"])
    # Each panel on its own scale: one noisy day must not flatten the others.
    fig, axes = _panels(len(groups), 3 if len(groups) > 4 else 2, 2.3, sharey=False)
    for i, ((key,), g) in enumerate(groups):
        ax = axes[i]
        days = [_as_date(d) for d in g["day"].to_list()]
        _line_with_band(ax, days, [_num(v) for v in g["abs_lift"].to_list()], [_num(v) for v in g["ci_low"].to_list()],
                        [_num(v) for v in g["ci_high"].to_list()], f"C{i % 10}")
        _zero_line(ax)
        lo, hi = ax.get_ylim()
        ax.set_ylim(max(lo, -1.05), min(hi, 1.05))  # a lift of a metric in [0, 1] lies in [-1, 1]
        ax.set_title(str(key), fontsize=8)
        ax.tick_params(axis="x", labelsize=7, labelrotation=30)
        ax.tick_params(axis="y", labelsize=7)
    axes[0].set_ylabel("abs lift", fontsize=8)
    fig.suptitle(title, fontsize=11)
    return _svg(fig)


def chart_warmup(warm: pl.DataFrame, *, title: str) -> str:
    """Small multiples, one panel per (scope, whose history): abs lift by history bucket, one line + band per arm pair."""
    if warm is None or warm.is_empty():
        return ""
    labels = dict(warm.select("bucket_order", "history_bucket").unique().sort("bucket_order").iter_rows())
    panels = _groups(warm.sort("bucket_order"), ["scope", "segment_kind"])
    pairs = sorted({f"{a} vs {b}" for a, b in warm.select("arm", "baseline_arm").unique().iter_rows()})
    color = {p: f"C{i % 10}" for i, p in enumerate(pairs)}
    fig, axes = _panels(len(panels), 2, 2.6)
    for ax, ((scope, kind), g) in zip(axes, panels):
        for (arm, base), h in _groups(g, ["arm", "baseline_arm"]):
            pair = f"{arm} vs {base}"
            _line_with_band(ax, h["bucket_order"].to_list(), [_num(v) for v in h["abs_lift"].to_list()],
                            [_num(v) for v in h["ci_low"].to_list()], [_num(v) for v in h["ci_high"].to_list()], color[pair],
                            pair if ax is axes[0] else None)
        _zero_line(ax)
        ax.set_xticks(list(labels), [str(v) for v in labels.values()], fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_title(f"scope={scope}, history of the {kind}", fontsize=8)
    axes[0].set_ylabel("abs lift", fontsize=8)
    fig.suptitle(f"{title} · x: prior interactions at the snapshot", fontsize=11)
    fig.legend(fontsize=8, loc="outside lower center", ncols=min(3, len(pairs)), frameon=False)
    return _svg(fig)


def chart_cost(points: pl.DataFrame, *, title: str) -> str:
    """Encoding throughput (texts/s, log scale) against text lift, one colour per cell, encoders labelled."""
    if points is None or points.is_empty():
        return ""
    pts = [p for p in points.to_dicts() if _num(p.get("texts_per_s")) and _num(p.get("lift")) is not None]
    if not pts:
        return ""
    fig, ax = _figure(10, 3.6)
    cells = sorted({str(p["cell"]) for p in pts})
    for i, cell in enumerate(cells):
        mine = [p for p in pts if str(p["cell"]) == cell]
        xs = [_num(p["texts_per_s"]) for p in mine]
        ys = [_num(p["lift"]) for p in mine]
        err = [
            [max(0.0, y - (_num(p.get("ci_low")) if _num(p.get("ci_low")) is not None else y)) for p, y in zip(mine, ys)],
            [max(0.0, (_num(p.get("ci_high")) if _num(p.get("ci_high")) is not None else y) - y) for p, y in zip(mine, ys)],
        ]
        ax.errorbar(xs, ys, yerr=err, fmt="o", color=f"C{i % 10}", capsize=3, label=cell)
        for p, x, y in zip(mine, xs, ys):
            ax.annotate(str(p["encoder"]), (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
    _zero_line(ax)
    ax.set_xscale("log")
    ax.set_xlabel("encoding throughput, texts/s (log scale)")
    ax.set_ylabel("abs lift vs ranker_no_text")
    ax.set_title(title, fontsize=11)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _svg(fig)


def chart_forest(df: pl.DataFrame, *, title: str) -> str:
    """A forest plot: one row per (arm vs baseline, segment), dot = abs lift, bar = 95% CI."""
    if df is None or df.is_empty():
        return ""
    rows = _sort_rows(df.to_dicts())[::-1]
    fig, ax = _figure(10, 0.9 + 0.24 * len(rows))
    pairs = sorted({_pair_label(r) for r in rows})
    color = {p: f"C{i % 10}" for i, p in enumerate(pairs)}
    seen: set[str] = set()
    for y, r in enumerate(rows):
        lift, lo, hi = _num(r.get("abs_lift")), _num(r.get("ci_low")), _num(r.get("ci_high"))
        pair = _pair_label(r)
        if lo is not None and hi is not None:
            ax.plot([lo, hi], [y, y], color=color[pair], linewidth=2)
        if lift is not None:
            ax.plot([lift], [y], "o", color=color[pair], label=None if pair in seen else pair)
            seen.add(pair)
    ax.axvline(0, color="#444", linewidth=0.8, linestyle="--")
    ax.set_yticks(range(len(rows)), [f"{_segment_label(r)} (n={r.get('n_users')})" for r in rows], fontsize=8)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel("abs lift (arm - baseline), 95% CI")
    ax.set_title(title, fontsize=11)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _svg(fig)


def chart_pareto(study: pl.DataFrame, *, title: str) -> str:
    """The encoder study's lift against cost: catalogue seconds (log x) vs lift over no text (95% CI),
    one point per encoder, the Pareto front (no encoder both cheaper and better) joined by a line."""
    if study is None or study.is_empty():
        return ""
    pts = [p for p in study.to_dicts() if _num(p.get("catalogue_seconds")) and _num(p.get("lift_vs_no_text")) is not None]
    if not pts:
        return ""
    fig, ax = _figure(10, 3.8)
    for p in pts:
        x, y = _num(p["catalogue_seconds"]), _num(p["lift_vs_no_text"])
        lo, hi = _num(p.get("ci_low_vs_no_text")), _num(p.get("ci_high_vs_no_text"))
        color = "C1" if p.get("teacher") else ("C0" if p.get("is_lm") else "C7")
        err = [[max(0.0, y - lo)], [max(0.0, hi - y)]] if lo is not None and hi is not None else None
        ax.errorbar([x], [y], yerr=err, fmt="o", color=color, capsize=3)
        ax.annotate(str(p["encoder"]), (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
    front = sorted((_num(p["catalogue_seconds"]), _num(p["lift_vs_no_text"])) for p in pts if p.get("pareto"))
    if len(front) > 1:
        ax.plot([f[0] for f in front], [f[1] for f in front], "--", color="C2", linewidth=1.2, label="Pareto front")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    _zero_line(ax)
    ax.set_xscale("log")
    ax.set_xlabel("seconds to encode the catalogue on this machine (log scale)")
    ax.set_ylabel("abs lift vs ranker_no_text")
    ax.set_title(title, fontsize=11)
    return _svg(fig)


def study_section(study: pl.DataFrame | None) -> list[str]:
    """The encoder study (reports.encoder_study): one Pareto chart per protocol x cell, then the rows."""
    parts = ["<h2>Encoder study: lift against cost (Pareto front)</h2>"]
    if study is None or study.is_empty():
        return parts + [_empty("no reports.encoder_study rows for this window (run `recsys-assets study`)")]
    parts.append('<p class="note">Each encoder\'s ranker lift over ranker_no_text (95% CI, exploratory) against the seconds one cold '
                 "encode of the catalogue took on this machine (blue: pretrained LMs, orange: distilled students, grey: TF-IDF / "
                 "metadata). The dashed line joins the encoders no other encoder beats on both. Table: reports.encoder_study.</p>")
    for (protocol, cell), g in _groups(study, ["protocol", "cell"]):
        name = f"{protocol} · {cell}"
        parts.append(_figure_html("pareto", name, chart_pareto(g, title=name)))
    cols = [c for c in ("protocol", "cell", "encoder", "params", "dim", "texts_per_s", "catalogue_seconds", "vector_bytes", "value",
                        "lift_vs_no_text", "ci_low_vs_no_text", "ci_high_vs_no_text", "lift_vs_tfidf", "ci_low_vs_tfidf", "ci_high_vs_tfidf",
                        "share_of_teacher_lift", "n_users", "pareto") if c in study.columns]
    parts.append(f"<details><summary>Encoder study rows</summary>{_html_table(study.sort('protocol', 'cell', 'encoder'), cols)}</details>")
    return parts


# --- encoder cost vs lift -----------------------------------------------------------------


def encoder_cost_vs_lift(encoder_cost: pl.DataFrame, lift: pl.DataFrame, cells: set[str] | None = None) -> pl.DataFrame:
    """One row per encoder x cell: texts/s, total seconds, and the text lift of ``ranker_<encoder>``.

    texts/s = texts encoded / seconds over the rows (the mean of the daily rates when
    ``texts_encoded`` is absent). Lift rows: headline metric@k, baseline
    ``ranker_no_text`` when present (text lift, comparable across encoders incl.
    TF-IDF), the latest window per protocol/scope, and either the ``cells`` given
    (``protocol/scope/segment_kind/segment``, e.g. the headline's) or the new-user /
    new-item segments.
    """
    cols = ["encoder", "texts_per_s", "seconds", "lift", "ci_low", "ci_high", "cell"]
    empty = pl.DataFrame(schema={"encoder": pl.String, "texts_per_s": pl.Float64, "seconds": pl.Float64,
                                 "lift": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64, "cell": pl.String})
    if encoder_cost is None or lift is None or encoder_cost.is_empty() or lift.is_empty():
        return empty
    if "encoder" not in encoder_cost.columns or "arm" not in lift.columns:
        return empty
    if {"texts_encoded", "seconds"} <= set(encoder_cost.columns):
        rate = pl.col("texts_encoded").sum() / pl.col("seconds").sum()
        agg = [pl.when(pl.col("seconds").sum() > 0).then(rate).otherwise(None).cast(pl.Float64).alias("texts_per_s")]
    elif "texts_per_s" in encoder_cost.columns:
        agg = [pl.col("texts_per_s").mean().alias("texts_per_s")]
    else:
        agg = [pl.lit(None, pl.Float64).alias("texts_per_s")]
    agg.append(pl.col("seconds").sum().alias("seconds") if "seconds" in encoder_cost.columns else pl.lit(None, pl.Float64).alias("seconds"))
    cost = encoder_cost.group_by("encoder").agg(agg)
    lf = _filter_metric(lift, choose_metric(lift))
    lf = _latest_window(lf, ["protocol", "scope"])
    if "baseline_arm" in lf.columns and (lf["baseline_arm"] == "ranker_no_text").any():
        lf = lf.filter(pl.col("baseline_arm") == "ranker_no_text")
    if cells is None and "segment" in lf.columns and (lf["segment"] == "new").any():
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
    if cells is not None:
        lf = lf.filter(pl.col("cell").is_in(sorted(cells)))
    joined = cost.join(lf, on="encoder", how="inner")
    return joined.select(cols).sort("cell", "encoder")



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
    "p_adjusted", "n_users", "n_items", "flag", "role", "encoder",
)


def _sorted_frame(df: pl.DataFrame) -> pl.DataFrame:
    if df is None or df.is_empty():
        return df
    return pl.DataFrame(_sort_rows(df.to_dicts()), schema=df.schema)




# --- the report ----------------------------------------------------------------------------


def _ctx_title(key: tuple, names: Sequence[str]) -> str:
    return ", ".join(f"{n}={v}" for n, v in zip(names, key))


def _headline_table(headline: pl.DataFrame) -> str:
    shown = answer.headline_display(headline)
    out = ['<table class="headline"><thead><tr>', "".join(f"<th>{_esc(answer.header(c, headline))}</th>" for c in answer.TABLE_COLUMNS), "</tr></thead><tbody>"]
    for r, verdict in zip(shown.iter_rows(named=True), headline.sort("protocol", "endpoint", maintain_order=True)["verdict"].to_list()):
        cells = []
        for c in answer.TABLE_COLUMNS:
            if c == "verdict":
                cells.append(f'<td class="t"><span class="badge {VERDICT_CLASS.get(verdict, "")}">{_esc(r[c])}</span></td>')
            else:
                cells.append(f'<td class="{"t" if c in ("protocol", "endpoint", "arm vs baseline", "metric") else ""}">{_esc(r[c])}</td>')
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def treatment_check_html(check: pl.DataFrame | None) -> str:
    """The treatment check inside the answer card: a red box per ranker cell significantly below the
    best of popularity/ALS, then the summary line and the check's rows (collapsed)."""
    if check is None or check.is_empty():
        return ""
    parts = [f'<div class="warning" id="treatment-warning">{_esc(line)}</div>' for line in ranker_check_warnings(check)]
    parts += [f'<p class="note">{_esc(line)}</p>' for line in ranker_check_notes(check)]
    cols = ["protocol", "arm", "metric", "k", "value", "best_baseline", "baseline_value", "abs_lift", "ci_low", "ci_high", "n_users", "status"]
    parts.append(f"<details><summary>Treatment check: every ranker vs the best of popularity/ALS</summary>{_html_table(check.sort('protocol', 'metric', 'arm'), cols)}</details>")
    return "".join(parts)


def answer_card(
    headline: pl.DataFrame, encoder_cost: pl.DataFrame, window: str, days_pooled: int | None = None, ranker_check: pl.DataFrame | None = None
) -> str:
    """The first thing on the page: window, the treatment check when a ranker loses to a baseline, verdict counts,
    one sentence per protocol, the headline table, cost."""
    pooled = f" ({days_pooled} evaluated days pooled)" if days_pooled else ""
    parts = ['<section id="answer" class="card">', "<h2>The answer</h2>", f'<p class="window">Window: <b>{_esc(window)}</b>{pooled}</p>']
    parts.append(treatment_check_html(ranker_check))
    if headline is None or headline.is_empty():
        parts.append('<p class="empty">No headline yet: reports.headline has no rows for this window.</p></section>')
        return "".join(parts)
    counts = answer.verdict_counts(headline)
    parts.append('<p class="verdicts">' + "".join(
        f'<span class="badge {VERDICT_CLASS[v]}">{n} {_esc(v)}</span>' for v, n in counts.items() if n
    ) + f' of {headline.height} primary endpoints</p>')
    parts.append('<ul class="sentences">' + "".join(f"<li>{_esc(s)}</li>" for s in answer.answer_sentences(headline)) + "</ul>")
    parts.append(_headline_table(headline))
    parts += [f'<p class="note"><b>Note:</b> {_esc(c)}</p>' for c in answer.caveats(headline)]
    cost = answer.cost_sentence(encoder_cost)
    if cost:
        parts.append(f'<p class="note">{_esc(cost)}</p>')
    parts.append('<p class="note">Lift = arm minus baseline arm on the same users, the same truth and the same K. '
                 "Verdicts come from the primary endpoints only (Holm-adjusted within the window x protocol); every other "
                 "cell below is exploratory. See docs/protocol.md in the repository.</p>")
    parts.append("</section>")
    return "".join(parts)


def _trend_series(headline_days: pl.DataFrame, lift_daily: pl.DataFrame) -> tuple[pl.DataFrame, str]:
    """Per-day lift series (protocol, label, day, abs_lift, ci_low, ci_high) and what they are."""
    cols = ["protocol", "label", "day", "abs_lift", "ci_low", "ci_high"]
    if headline_days is not None and not headline_days.is_empty():
        out = headline_days.with_columns(label=pl.col("endpoint"), day=pl.col("window_end"))
        return out.select(cols), "the primary endpoints, evaluated day by day"
    if lift_daily is None or lift_daily.is_empty() or "day" not in lift_daily.columns:
        return pl.DataFrame(), ""
    df = _filter_metric(lift_daily, choose_metric(lift_daily))
    df = df.filter(pl.col("baseline_arm").is_in(TEXT_BASELINES) & (pl.col("segment") == "new") & pl.col("arm").str.starts_with("ranker_"))
    out = df.with_columns(
        label=pl.concat_str([pl.col("scope"), pl.lit(" · "), pl.col("segment_kind"), pl.lit(":new ("), pl.col("arm"), pl.lit(" vs "), pl.col("baseline_arm"), pl.lit(")")])
    )
    return out.select(cols), "new-user and new-item cells of the text arms (no headline rows for these days)"


def _detail_section(cells: pl.DataFrame, metric: tuple[str, int | None] | None) -> list[str]:
    """Per protocol x scope, collapsed: a forest plot and table of the adequate cells, small cells behind a toggle."""
    parts = ["<h2>Per-segment detail (exploratory)</h2>"]
    if cells is None or cells.is_empty():
        return parts + [_empty()]
    parts.append(f'<p class="note">Pooled lift of every arm pair and segment at {_esc(_metric_label(*metric)) if metric else ""}; '
                 f"cells under {MIN_USERS_DEFAULT} users are behind their own toggle. Every metric and K is in the warehouse "
                 "table reports.cold_start_lift_rollup.</p>")
    shown = _latest_window(_filter_metric(cells, metric), ["protocol", "scope"])
    for key, g in _groups(shown, ["protocol", "scope"]):
        name = _ctx_title(key, ["protocol", "scope"])
        rows = g.to_dicts()
        small = [r for r in rows if is_small(r)]
        big = [r for r in rows if not is_small(r)]
        parts.append(f'<details class="detail" data-protocol="{_esc(key[0])}" data-scope="{_esc(key[1])}">'
                     f"<summary>{_esc(name)}: {len(big)} cells, {len(small)} small</summary>")
        if big:
            big_df = pl.DataFrame(big, schema=g.schema)
            parts.append(_figure_html("forest", f"{name} · {_metric_label(*metric) if metric else ''}",
                                      chart_forest(big_df, title=f"{name} · {_metric_label(*metric) if metric else ''}")))
            parts.append(_html_table(_sorted_frame(big_df), _LIFT_COLUMNS))
        else:
            parts.append(_empty(f"no cell with {MIN_USERS_DEFAULT}+ users"))
        if small:
            parts.append(f'<details class="small"><summary>{len(small)} small cells (under {MIN_USERS_DEFAULT} users, or trivial)</summary>')
            parts.append(_html_table(_sorted_frame(pl.DataFrame(small, schema=g.schema)), _LIFT_COLUMNS))
            parts.append("</details>")
        parts.append("</details>")
    return parts


def render_html_report(
    lift_rollup: pl.DataFrame,
    lift_daily: pl.DataFrame,
    warmup: pl.DataFrame,
    encoder_cost: pl.DataFrame,
    title: str,
    headline: pl.DataFrame | None = None,
    headline_days: pl.DataFrame | None = None,
    encoder_study: pl.DataFrame | None = None,
    ranker_check: pl.DataFrame | None = None,
) -> str:
    """The report as an HTML string (see :func:`write_html_report`)."""
    def clean(df: pl.DataFrame | None) -> pl.DataFrame:
        return df if df is not None else pl.DataFrame()

    lift_rollup, lift_daily, warmup, encoder_cost, headline, headline_days = map(
        clean, (lift_rollup, lift_daily, warmup, encoder_cost, headline, headline_days)
    )
    window, days_pooled = "", None
    if not headline.is_empty():
        window = answer.window_words(headline)
    elif not lift_rollup.is_empty() and "window_start" in lift_rollup.columns:
        window = f"{lift_rollup['window_start'].min()} to {lift_rollup['window_end'].max()}"
    elif not lift_daily.is_empty() and "day" in lift_daily.columns:
        window = f"{lift_daily['day'].min()} to {lift_daily['day'].max()}"
    if not lift_daily.is_empty() and "day" in lift_daily.columns:
        days_pooled = lift_daily["day"].n_unique()
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_esc(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
        answer_card(headline, encoder_cost, window or NO_DATA, days_pooled, ranker_check),
    ]

    # Lift over days, with its band.
    parts.append("<h2>Lift over days</h2>")
    trend, what = _trend_series(headline_days, lift_daily)
    if trend.is_empty():
        parts.append(_empty())
    else:
        parts.append(f'<p class="note">Absolute lift per evaluated day of {_esc(what)}; the band is the 95% CI of each day. '
                     "Single days are noisy: the answer above pools the window.</p>")
        for key, g in _groups(trend, ["protocol"]):
            parts.append(_figure_html("lift_over_days", f"protocol={key[0]}", chart_lift_over_days(g, title=f"{key[0]}: lift per day")))

    # Warm-up.
    parts.append("<h2>Warm-up: where does ID-only catch up?</h2>")
    w_metric = choose_metric(warmup)
    wu = _latest_window(_filter_metric(warmup, w_metric), ["protocol", "scope"])
    if not wu.is_empty() and "baseline_arm" in wu.columns and wu["baseline_arm"].is_in(TEXT_BASELINES).any():
        wu = wu.filter(pl.col("baseline_arm").is_in(TEXT_BASELINES))
    if wu.is_empty():
        parts.append(_empty())
    else:
        parts.append('<p class="note">Lift of the text rankers by how much history the user or item had at the snapshot; '
                     "the band is the 95% CI. Where the band covers 0 the arm without text has caught up.</p>")
        for (protocol,), g in _groups(wu, ["protocol"]):
            parts.append(_figure_html("warmup", f"protocol={protocol}", chart_warmup(g, title=f"{protocol} · {_metric_label(*w_metric)}")))

    # Cost vs lift.
    parts.append("<h2>Lift against encoder cost</h2>")
    lift_src = lift_rollup if not lift_rollup.is_empty() else lift_daily
    cells = None
    if not headline.is_empty():
        cells = {"/".join(r) for r in headline.select("protocol", "scope", "segment_kind", "segment").unique().iter_rows()}
    points = encoder_cost_vs_lift(encoder_cost, lift_src, cells)
    svg = chart_cost(points, title="texts/s vs text lift of ranker_<encoder> over ranker_no_text")
    if svg:
        which = "the headline's cells" if cells else "new-user / new-item cells"
        parts.append(_figure_html("cost", f"encoder cost vs lift ({which})", svg))
        parts.append(_html_table(points))
    else:
        parts.append(_empty())

    if encoder_study is not None:
        parts += study_section(encoder_study)

    # Per-segment detail, collapsed.
    parts += _detail_section(lift_rollup, choose_metric(lift_rollup))

    # Data tables, collapsed.
    parts.append("<h2>Data</h2>")
    latest = lift_daily
    if not latest.is_empty() and "day" in latest.columns:
        latest = latest.filter(pl.col("day") == pl.col("day").max())
    wu_table = warmup
    if not wu_table.is_empty():
        sort_cols = [c for c in ("protocol", "scope", "segment_kind", "arm", "baseline_arm", "metric", "k", "bucket_order") if c in wu_table.columns]
        wu_table = wu_table.sort(sort_cols, nulls_last=True)
    ec = encoder_cost
    if not ec.is_empty() and {"day", "encoder"} <= set(ec.columns):
        ec = ec.sort(["day", "encoder"], descending=[True, False])
    for name, table in (
        ("Lift, latest day (every cell)", _html_table(_sorted_frame(latest), _LIFT_COLUMNS)),
        ("Warm-up curves", _html_table(wu_table)),
        ("Encoder cost per day", _html_table(ec)),
    ):
        parts.append(f"<details><summary>{_esc(name)}</summary>{table}</details>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html_report(
    target: UPath,
    lift_rollup: pl.DataFrame,
    lift_daily: pl.DataFrame,
    warmup: pl.DataFrame,
    encoder_cost: pl.DataFrame,
    title: str,
    headline: pl.DataFrame | None = None,
    headline_days: pl.DataFrame | None = None,
    encoder_study: pl.DataFrame | None = None,
    ranker_check: pl.DataFrame | None = None,
) -> None:
    """Write the self-contained HTML report to ``target`` atomically (any UPath).

    ``headline``: the window's ``reports.headline`` rows (the answer card);
    ``headline_days``: the daily headline rows of the window (lift over days);
    ``encoder_study``: the window's ``reports.encoder_study`` rows (the Pareto chart; None leaves the section out);
    ``ranker_check``: the window's ``reports.ranker_check`` rows (the treatment check in the answer card).
    """
    text = render_html_report(lift_rollup, lift_daily, warmup, encoder_cost, title, headline, headline_days, encoder_study, ranker_check)
    target = target if isinstance(target, UPath) else UPath(target)
    write_bytes_atomic(target, text.encode("utf-8"))
