"""Lift of each arm over its baselines: paired bootstrap over users, Holm across a report's cells."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from recsys_assets.lib.evaluation.stats import MIN_USERS_DEFAULT, cell_flag, holm_adjust, paired_bootstrap

LIFT_COLUMNS = [
    "protocol", "scope", "arm", "baseline_arm", "segment_kind", "segment", "metric", "k", "value", "baseline_value",
    "abs_lift", "rel_lift", "ci_low", "ci_high", "rel_ci_low", "rel_ci_high", "p_value", "p_adjusted", "n_users", "flag",
]
WARMUP_COLUMNS = [
    "protocol", "scope", "arm", "baseline_arm", "segment_kind", "history_bucket", "bucket_order", "metric", "k",
    "value", "baseline_value", "abs_lift", "ci_low", "ci_high", "n_users",
]


@dataclass(frozen=True)
class LiftConfig:
    """How lift cells are computed."""

    n_boot: int = 1000
    """Bootstrap resamples per cell."""
    seed: int = 0
    """Bootstrap seed (fixed: the same data gives the same CI)."""
    min_users: int = MIN_USERS_DEFAULT
    """Cells with fewer users are flagged ``too_few_users`` (still reported)."""
    warmup_metrics: tuple[str, ...] = ("recall", "ndcg")
    """Metrics of the warm-up curves."""


def comparisons_for(arms: list[str], lm_encoders: list[str]) -> list[tuple[str, str]]:
    """(arm, baseline) pairs of EVALUATION.md that exist among ``arms``."""
    pairs = []
    present = set(arms)
    for lm in lm_encoders:
        for suffix in sorted({a.split("+", 1)[1] for a in arms if "+" in a} | {""}):
            tag = f"+{suffix}" if suffix else ""
            arm = f"ranker_{lm}{tag}"
            for base in (f"ranker_tfidf{tag}", f"ranker_no_text{tag}", "als", "popularity"):
                pairs.append((arm, base))
        pairs.append((f"content_{lm}", "content_tfidf"))
    pairs.append(("ranker_tfidf", "ranker_no_text"))
    seen, out = set(), []
    for a, b in pairs:
        if a in present and b in present and a != b and (a, b) not in seen:
            seen.add((a, b))
            out.append((a, b))
    return out


def _paired(per_user: pl.DataFrame, arm: str, base: str, keys: list[str]) -> pl.DataFrame:
    t = per_user.filter(pl.col("arm") == arm).drop("arm")
    b = per_user.filter(pl.col("arm") == base).drop("arm").rename({"value": "baseline"})
    return t.join(b, on=[*keys, "user_id"], how="inner")


def lift_rows(per_user: pl.DataFrame, comparisons: list[tuple[str, str]], cfg: LiftConfig, kinds=("all", "user", "item")) -> pl.DataFrame:
    """One row per (protocol, scope, arm, baseline, segment, metric, k) with CI, p and Holm-adjusted p."""
    keys = ["protocol", "scope", "segment_kind", "segment", "metric", "k"]
    data = per_user.filter(pl.col("segment_kind").is_in(list(kinds)))
    rows = []
    for arm, base in comparisons:
        paired = _paired(data.drop("bucket_order"), arm, base, keys)
        for key, grp in paired.group_by(keys, maintain_order=True):
            st = paired_bootstrap(grp["value"].to_numpy(), grp["baseline"].to_numpy(), n_boot=cfg.n_boot, seed=cfg.seed)
            rows.append({**dict(zip(keys, key)), "arm": arm, "baseline_arm": base, **st.as_dict(), "flag": cell_flag(st.n_users, cfg.min_users)})
    if not rows:
        return pl.DataFrame(schema={c: (pl.String if c in ("protocol", "scope", "arm", "baseline_arm", "segment_kind", "segment", "metric", "flag") else pl.Float64) for c in LIFT_COLUMNS})
    # Every row decides the schema: a flag first seen after row 100 must not break inference.
    out = pl.DataFrame(rows, infer_schema_length=None).with_columns(pl.col("k").cast(pl.Int64), pl.col("n_users").cast(pl.Int64))
    # Holm across the segment x metric x K family of one (protocol, scope, arm, baseline) report.
    adjusted = []
    for _, grp in out.with_row_index("_i").group_by(["protocol", "scope", "arm", "baseline_arm"], maintain_order=True):
        adj = holm_adjust(grp["p_value"].to_numpy().astype(float))
        adjusted.append(pl.DataFrame({"_i": grp["_i"], "p_adjusted": adj}))
    out = out.with_row_index("_i").join(pl.concat(adjusted), on="_i").drop("_i")
    return out.select(LIFT_COLUMNS).sort("protocol", "scope", "arm", "baseline_arm", "segment_kind", "segment", "metric", "k")


def warmup_rows(per_user: pl.DataFrame, comparisons: list[tuple[str, str]], cfg: LiftConfig) -> pl.DataFrame:
    """Lift per history bucket (users by their events, items by theirs at the snapshot)."""
    data = per_user.filter(pl.col("segment_kind").is_in(["user_bucket", "item_bucket"]) & pl.col("metric").is_in(list(cfg.warmup_metrics)))
    keys = ["protocol", "scope", "segment_kind", "segment", "bucket_order", "metric", "k"]
    rows = []
    for arm, base in comparisons:
        paired = _paired(data, arm, base, keys)
        for key, grp in paired.group_by(keys, maintain_order=True):
            st = paired_bootstrap(grp["value"].to_numpy(), grp["baseline"].to_numpy(), n_boot=cfg.n_boot, seed=cfg.seed)
            d = dict(zip(keys, key))
            rows.append(
                {
                    "protocol": d["protocol"], "scope": d["scope"], "arm": arm, "baseline_arm": base,
                    "segment_kind": d["segment_kind"].removesuffix("_bucket"), "history_bucket": d["segment"],
                    "bucket_order": d["bucket_order"], "metric": d["metric"], "k": d["k"], "value": st.value,
                    "baseline_value": st.baseline_value, "abs_lift": st.abs_lift, "ci_low": st.ci_low,
                    "ci_high": st.ci_high, "n_users": st.n_users,
                }
            )
    if not rows:
        return pl.DataFrame(schema={c: pl.Float64 for c in WARMUP_COLUMNS})
    return pl.DataFrame(rows, infer_schema_length=None).select(WARMUP_COLUMNS).sort("protocol", "scope", "arm", "baseline_arm", "segment_kind", "bucket_order", "metric", "k")


def pool_days(per_user_by_day: dict) -> pl.DataFrame:
    """Concatenate daily per-user frames; a user evaluated on two days counts as two observations."""
    frames = [f.with_columns(user_id=pl.format("{}|{}", pl.lit(str(d)), pl.col("user_id"))) for d, f in sorted(per_user_by_day.items())]
    return pl.concat(frames) if frames else pl.DataFrame()
