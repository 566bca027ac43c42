"""The study's report rows of one window, from the pooled per-user evaluation.

Every lift here comes from :func:`evaluation.lift.lift_rows` (the same two-way /
user-cluster bootstrap statistics as every other lift table, docs/statistics.md) over
the window's user-days, restricted to the study's primary cells and metric; nothing
here is new statistics. These comparisons are exploratory (CIs, no verdict): the
confirmatory family stays the headline's six endpoints.

- ``reports.encoder_study``: one row per (protocol, cell, encoder): cost on this machine
  and the lifts of ``ranker_<enc>`` over ``ranker_no_text`` and ``ranker_tfidf`` and of
  ``content_<enc>`` over ``content_tfidf``; students also get the share of their
  teacher's lift kept and their encode speed-up; ``pareto`` marks the encoders no other
  encoder beats on both catalogue seconds and lift over no text.
- ``reports.fusion_ablation``: one row per (protocol, cell, variant): the lift of the
  variant's ranker over no text and over the previous variant's ranker.
- ``reports.new_user_text``: the new-user cell, per protocol: each text arm (serving new
  users from their encoded profile text) and ``content_attributes`` (attribute popularity: the same profile
  attributes as plain categories) against ``popularity``, and the text arms against
  ``content_attributes``.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from recsys_assets.lib.evaluation.lift import LiftConfig, lift_rows, pool_days
from recsys_assets.lib.evaluation.reporting import comparable_window, pooled_window
from recsys_assets.lib.features.encoders import encoder_spec
from recsys_assets.lib.lake import Lake, read_parquet, write_parquet_atomic
from recsys_assets.lib.study.cost import EncoderCost
from recsys_assets.lib.study.new_users import ATTRIBUTE_ARM
from recsys_assets.lib.study.plan import FusionVariant, StudyConfig

NO_TEXT = "ranker_no_text"
TFIDF = "tfidf"

ENCODER_STUDY_SCHEMA: dict[str, pl.DataType] = {
    "window_start": pl.Date, "window_end": pl.Date, "days_pooled": pl.Int64, "protocol": pl.String, "cell": pl.String,
    "encoder": pl.String, "is_lm": pl.Boolean, "teacher": pl.String, "params": pl.Int64, "dim": pl.Int64,
    "texts_per_s": pl.Float64, "catalogue_seconds": pl.Float64, "catalogue_texts": pl.Int64, "vector_bytes": pl.Int64,
    "precision": pl.String, "device": pl.String, "metric": pl.String, "k": pl.Int32, "value": pl.Float64,
    "lift_vs_no_text": pl.Float64, "ci_low_vs_no_text": pl.Float64, "ci_high_vs_no_text": pl.Float64,
    "lift_vs_tfidf": pl.Float64, "ci_low_vs_tfidf": pl.Float64, "ci_high_vs_tfidf": pl.Float64,
    "content_lift_vs_tfidf": pl.Float64, "content_ci_low_vs_tfidf": pl.Float64, "content_ci_high_vs_tfidf": pl.Float64,
    "n_users": pl.Int64, "n_items": pl.Int64, "flag": pl.String,
    "share_of_teacher_lift": pl.Float64, "speedup_vs_teacher": pl.Float64, "pareto": pl.Boolean,
}
FUSION_SCHEMA: dict[str, pl.DataType] = {
    "window_start": pl.Date, "window_end": pl.Date, "days_pooled": pl.Int64, "protocol": pl.String, "cell": pl.String,
    "step": pl.Int32, "variant": pl.String, "inputs": pl.String, "encoder": pl.String, "note": pl.String,
    "metric": pl.String, "k": pl.Int32, "value": pl.Float64,
    "lift_vs_no_text": pl.Float64, "ci_low_vs_no_text": pl.Float64, "ci_high_vs_no_text": pl.Float64,
    "previous_variant": pl.String, "lift_vs_previous": pl.Float64, "ci_low_vs_previous": pl.Float64, "ci_high_vs_previous": pl.Float64,
    "n_users": pl.Int64, "flag": pl.String,
}
NEW_USER_SCHEMA: dict[str, pl.DataType] = {
    "window_start": pl.Date, "window_end": pl.Date, "days_pooled": pl.Int64, "protocol": pl.String,
    "arm": pl.String, "encoder": pl.String, "baseline_arm": pl.String, "metric": pl.String, "k": pl.Int32,
    "value": pl.Float64, "baseline_value": pl.Float64, "abs_lift": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64,
    "n_users": pl.Int64, "flag": pl.String,
}


# --- the attribute arm's files ---------------------------------------------------------------


def attribute_paths(lake: Lake, day: date):
    """(per-user, per-pair) files of ``content_attributes`` for day D, next to the day's evaluation."""
    folder = lake.eval_dir(day)
    return folder.joinpath("study_attribute_per_user.parquet"), folder.joinpath("study_attribute_per_pair.parquet")


def save_attribute_eval(lake: Lake, day: date, per_user: pl.DataFrame, per_pair: pl.DataFrame) -> None:
    pu, pp = attribute_paths(lake, day)
    write_parquet_atomic(per_user, pu)
    write_parquet_atomic(per_pair, pp)


# --- pooling ---------------------------------------------------------------------------------


def pooled_study_window(
    lake: Lake, end: date, n_days: int, cfg: StudyConfig, config_hash: str
) -> tuple[pl.DataFrame, pl.DataFrame | None, list[date], dict[date, str]]:
    """(user-days in the study cells with the attribute arm's rows, their pairs, days pooled, {day left out: why}).

    The days are the rollup's (``comparable_window``): a day evaluated under another configuration
    (another ranker, encoder set...) or before provenance was recorded is left out, so the study's
    tables never mix two treatments, nor disagree with ``lift_rollup`` about which days they pool.
    """
    days, excluded = comparable_window(lake, end, n_days, config_hash)
    # Only the study's metric, K and cells are read (the rest of a 10M world's day, 19M rows, never loads).
    in_cells = pl.lit(False)
    for c in cfg.cells:
        in_cells = in_cells | ((pl.col("scope") == c.scope) & (pl.col("segment_kind") == c.segment_kind) & (pl.col("segment") == c.segment))
    keep_users = (pl.col("metric") == cfg.metric) & (pl.col("k") == cfg.k) & in_cells
    keep_pairs = pl.col("scope").is_in(sorted({c.scope for c in cfg.cells}))
    pooled, pairs = pooled_window(lake, days, keep_users, keep_pairs)
    if pooled.height == 0:
        return pooled, None, days, excluded
    attribute = {d: attribute_paths(lake, d) for d in days}
    attribute = {d: paths for d, paths in attribute.items() if paths[0].exists()}
    if attribute:
        pooled = pl.concat([pooled, pool_days({d: read_parquet(pu).filter(keep_users) for d, (pu, _) in attribute.items()})])
        if pairs is not None:
            pairs = pl.concat([pairs, pool_days({d: read_parquet(pp).filter(keep_pairs) for d, (_, pp) in attribute.items()})])
    return pooled, pairs, days, excluded


def _lifts(pooled: pl.DataFrame, pairs: pl.DataFrame | None, comparisons: list[tuple[str, str]]) -> pl.DataFrame:
    present = set(pooled["arm"].unique().to_list()) if pooled.height else set()
    comps = sorted({(a, b) for a, b in comparisons if a in present and b in present and a != b})
    if not comps:
        return pl.DataFrame()
    return lift_rows(pooled, comps, LiftConfig(), kinds=("all", "user"), per_pair=pairs)


def _cell_of(cfg: StudyConfig) -> pl.Expr:
    expr = pl.lit(None, pl.String)
    for c in cfg.cells:
        expr = pl.when((pl.col("scope") == c.scope) & (pl.col("segment_kind") == c.segment_kind) & (pl.col("segment") == c.segment)).then(pl.lit(c.name)).otherwise(expr)
    return expr


def _index(lift: pl.DataFrame, cfg: StudyConfig) -> dict[tuple, dict]:
    if lift.height == 0:
        return {}
    return {(r["protocol"], r["cell"], r["arm"], r["baseline_arm"]): r for r in lift.with_columns(cell=_cell_of(cfg)).iter_rows(named=True)}


def _values(pooled: pl.DataFrame, cfg: StudyConfig) -> dict[tuple, float]:
    if pooled.height == 0:
        return {}
    means = pooled.with_columns(cell=_cell_of(cfg)).group_by("protocol", "cell", "arm").agg(pl.col("value").mean())
    return {(p, c, a): v for p, c, a, v in means.iter_rows()}


def pareto_front(points: list[tuple[str, float | None, float | None]]) -> set[str]:
    """Names not dominated by another point (lower cost and higher lift, one of them strictly)."""
    ok = [(n, c, l) for n, c, l in points if c is not None and l is not None]
    front = set()
    for n, c, l in ok:
        if not any((c2 <= c and l2 >= l and (c2 < c or l2 > l)) for n2, c2, l2 in ok if n2 != n):
            front.add(n)
    return front


# --- the three tables ------------------------------------------------------------------------


def encoder_study_rows(
    pooled: pl.DataFrame, pairs: pl.DataFrame | None, days: list[date], encoders: list[str], costs: dict[str, EncoderCost], cfg: StudyConfig
) -> pl.DataFrame:
    """``reports.encoder_study`` rows of the window (see the module docstring)."""
    if not days or pooled.height == 0:
        return pl.DataFrame(schema=ENCODER_STUDY_SCHEMA)
    comps = []
    for e in encoders:
        comps += [(f"ranker_{e}", NO_TEXT), (f"ranker_{e}", f"ranker_{TFIDF}"), (f"content_{e}", f"content_{TFIDF}")]
    idx = _index(_lifts(pooled, pairs, comps), cfg)
    values = _values(pooled, cfg)
    rows = []
    for protocol in sorted(pooled["protocol"].unique().to_list()):
        for cell in cfg.cells:
            block = []
            for e in encoders:
                spec, cost = encoder_spec(e), costs.get(e)
                nt = idx.get((protocol, cell.name, f"ranker_{e}", NO_TEXT), {})
                tf = idx.get((protocol, cell.name, f"ranker_{e}", f"ranker_{TFIDF}"), {})
                ct = idx.get((protocol, cell.name, f"content_{e}", f"content_{TFIDF}"), {})
                block.append({
                    "window_start": days[0], "window_end": days[-1], "days_pooled": len(days), "protocol": protocol, "cell": cell.name,
                    "encoder": e, "is_lm": spec.is_lm, "teacher": spec.teacher,
                    "params": cost.params if cost else spec.params, "dim": cost.dim if cost else spec.dim,
                    "texts_per_s": cost.texts_per_s if cost else None, "catalogue_seconds": cost.seconds if cost else None,
                    "catalogue_texts": cost.texts if cost else None, "vector_bytes": cost.vector_bytes if cost else None,
                    "precision": cost.precision if cost else None, "device": cost.device if cost else None,
                    "metric": cfg.metric, "k": cfg.k, "value": values.get((protocol, cell.name, f"ranker_{e}")),
                    "lift_vs_no_text": nt.get("abs_lift"), "ci_low_vs_no_text": nt.get("ci_low"), "ci_high_vs_no_text": nt.get("ci_high"),
                    "lift_vs_tfidf": tf.get("abs_lift"), "ci_low_vs_tfidf": tf.get("ci_low"), "ci_high_vs_tfidf": tf.get("ci_high"),
                    "content_lift_vs_tfidf": ct.get("abs_lift"), "content_ci_low_vs_tfidf": ct.get("ci_low"), "content_ci_high_vs_tfidf": ct.get("ci_high"),
                    "n_users": nt.get("n_clusters") if nt else None, "n_items": nt.get("n_items") if nt else None, "flag": nt.get("flag") if nt else "missing",
                })
            by_name = {r["encoder"]: r for r in block}
            for r in block:
                teacher = by_name.get(r["teacher"]) if r["teacher"] else None
                if teacher is not None:
                    # A share of a lift that is not there means nothing: only when the teacher's CI is above 0.
                    t_lift, t_low = teacher["lift_vs_no_text"], teacher["ci_low_vs_no_text"]
                    if t_lift is not None and t_low is not None and t_low > 0 and r["lift_vs_no_text"] is not None:
                        r["share_of_teacher_lift"] = r["lift_vs_no_text"] / t_lift
                    if teacher["texts_per_s"] and r["texts_per_s"]:
                        r["speedup_vs_teacher"] = r["texts_per_s"] / teacher["texts_per_s"]
            front = pareto_front([(r["encoder"], r["catalogue_seconds"], r["lift_vs_no_text"]) for r in block])
            for r in block:
                r["pareto"] = r["encoder"] in front
            rows += block
    return pl.DataFrame(rows, schema=ENCODER_STUDY_SCHEMA).sort("protocol", "cell", "encoder")


def fusion_rows(
    pooled: pl.DataFrame, pairs: pl.DataFrame | None, days: list[date], fusion: list[FusionVariant], cfg: StudyConfig, reference: str | None = "metadata"
) -> pl.DataFrame:
    """``reports.fusion_ablation`` rows: each variant's ranker vs no text and vs the previous variant (+ the metadata encoder)."""
    if not days or pooled.height == 0 or not fusion:
        return pl.DataFrame(schema=FUSION_SCHEMA)
    steps: list[tuple[str, str, str | None, str]] = []
    if reference:
        steps.append(("no language model", "categories/year one-hot (metadata encoder)", reference, ""))
    steps += [(f.variant, f.inputs, f.encoder, f.note) for f in fusion]
    comps = []
    prev = None
    for _, _, e, _ in steps:
        if e is None:
            continue
        comps.append((f"ranker_{e}", NO_TEXT))
        if prev is not None and prev != e:
            comps.append((f"ranker_{e}", f"ranker_{prev}"))
        prev = e
    idx = _index(_lifts(pooled, pairs, comps), cfg)
    values = _values(pooled, cfg)
    rows = []
    for protocol in sorted(pooled["protocol"].unique().to_list()):
        for cell in cfg.cells:
            prev_name, prev_enc = None, None
            for step, (variant, inputs, e, note) in enumerate(steps):
                nt = idx.get((protocol, cell.name, f"ranker_{e}", NO_TEXT), {}) if e else {}
                pv = idx.get((protocol, cell.name, f"ranker_{e}", f"ranker_{prev_enc}"), {}) if e and prev_enc and prev_enc != e else {}
                rows.append({
                    "window_start": days[0], "window_end": days[-1], "days_pooled": len(days), "protocol": protocol, "cell": cell.name,
                    "step": step, "variant": variant, "inputs": inputs, "encoder": e, "note": note or None,
                    "metric": cfg.metric, "k": cfg.k, "value": values.get((protocol, cell.name, f"ranker_{e}")) if e else None,
                    "lift_vs_no_text": nt.get("abs_lift"), "ci_low_vs_no_text": nt.get("ci_low"), "ci_high_vs_no_text": nt.get("ci_high"),
                    "previous_variant": prev_name, "lift_vs_previous": pv.get("abs_lift"), "ci_low_vs_previous": pv.get("ci_low"), "ci_high_vs_previous": pv.get("ci_high"),
                    "n_users": nt.get("n_clusters") if nt else None, "flag": nt.get("flag") if nt else ("missing" if e else "skipped"),
                })
                if e is not None and step > 0:  # the metadata reference does not start the chain of inputs
                    prev_name, prev_enc = variant, e
    return pl.DataFrame(rows, schema=FUSION_SCHEMA).sort("protocol", "cell", "step")


def new_user_rows(pooled: pl.DataFrame, pairs: pl.DataFrame | None, days: list[date], encoders: list[str], cfg: StudyConfig) -> pl.DataFrame:
    """``reports.new_user_text`` rows: the new-user cell, text arms and content_attributes vs popularity and vs each other."""
    cell = next((c for c in cfg.cells if c.name == "new_users"), None)
    if not days or pooled.height == 0 or cell is None:
        return pl.DataFrame(schema=NEW_USER_SCHEMA)
    data = pooled.filter((pl.col("scope") == cell.scope) & (pl.col("segment_kind") == cell.segment_kind) & (pl.col("segment") == cell.segment))
    arms = [ATTRIBUTE_ARM, NO_TEXT] + [f"{kind}_{e}" for e in encoders for kind in ("content", "ranker")]
    comps = [(a, "popularity") for a in arms] + [(a, ATTRIBUTE_ARM) for a in arms if a not in (ATTRIBUTE_ARM, NO_TEXT)]
    lift = _lifts(data, pairs, comps)
    if lift.height == 0:
        return pl.DataFrame(schema=NEW_USER_SCHEMA)
    def encoder_of(arm: str) -> str | None:
        kind, _, enc = arm.partition("_")
        return enc if kind in ("content", "ranker") and arm != NO_TEXT else None

    out = lift.filter((pl.col("metric") == cfg.metric) & (pl.col("k") == cfg.k)).with_columns(
        window_start=pl.lit(days[0]), window_end=pl.lit(days[-1]), days_pooled=pl.lit(len(days), pl.Int64),
        encoder=pl.col("arm").map_elements(encoder_of, return_dtype=pl.String),
        n_users=pl.col("n_clusters"),
    )
    return out.select(list(NEW_USER_SCHEMA)).cast(NEW_USER_SCHEMA).sort("protocol", "baseline_arm", "arm")
