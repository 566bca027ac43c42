"""Ranker ablation on days before the evaluated window (docs/ranker.md, "How the findings were measured").

For each day D of [START, END] (every STEP days) and protocol: both snapshots built with
the library (``build_view`` + the feature stage's ``fit_view_als``: ALS refit, no text), the
label-window training frame, one ranker per variant, served on D and scored on D's truth
next to ``popularity`` and ``als`` (same users). One JSON line per (day, protocol,
variant); a summary table at the end; ``OUT=file.parquet`` keeps the per-user metrics.
``INSAMPLE=1`` also scores each variant inside the label window (75/25 user split): the
train/serve skew check of finding 1.

    .venv/bin/python benchmarks/bench_ranker_ablation.py LAKE 1998-02-20 1998-03-26 temporal,item_holdout before,final

The lake needs published events (``recsys-assets ingest``). Variants: see VARIANTS.
"""
from __future__ import annotations

import os
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import json
import sys
import time
from dataclasses import replace
from datetime import date, timedelta

import numpy as np
import polars as pl

from recsys_assets.lib.evaluation.metrics import per_user_metrics
from recsys_assets.lib.features.als import ALSConfig
from recsys_assets.lib.interactions import InteractionConfig
from recsys_assets.lib.ingest.catalog import read_catalog
from recsys_assets.lib.lake import Lake
from recsys_assets.lib.ranking.arms import recommend, top_k_from_scores
from recsys_assets.lib.ranking.candidates import arm_sources, generate_candidates, candidate_recall
from recsys_assets.lib.ranking.config import RankingConfig
from recsys_assets.lib.ranking.features import FEATURES_NO_TEXT, ranker_features
from recsys_assets.lib.features.nightly import FeatureConfig, fit_view_als
from recsys_assets.lib.ranking.inputs import SnapshotFeatures
from recsys_assets.lib.ranking.ranker import train_ranker
from recsys_assets.lib.snapshot import ProtocolConfig, build_view, day_start, positives_excluding_seen
from dataclasses import dataclass


@dataclass(frozen=True)
class LabCfg(RankingConfig):
    extra: tuple = ()

    def lgb_params(self, feature_names=None):
        p = super().lgb_params(feature_names)
        p.update(dict(self.extra))
        return p


def insample(tf, fn, rc, name):
    """Train on 75% of the labelled users; recall@20 inside the label window on the other 25% of
    the model's order, the popularity order and the ALS order."""
    from recsys_assets.lib.ranking.inputs import hash_u64
    us = tf["user_id"].unique().sort().to_list()
    h = hash_u64(us, "lab-split")
    va = set(np.asarray(us, dtype=object)[(h.astype(np.float64) / 2**64) < 0.25].tolist())
    trf = tf.filter(~pl.col("user_id").is_in(list(va)))
    vaf = tf.filter(pl.col("user_id").is_in(list(va)))
    m = train_ranker(trf, fn, replace(rc, validation_fraction=0.0), arm=name)
    vaf = vaf.with_columns(pl.Series("m", m.predict(vaf)), (-pl.col("pop_rank_log")).alias("p"), pl.col("als_score").fill_nan(None).fill_null(-1e9).alias("a"))
    out = {}
    npos = vaf.group_by("user_id").agg(pl.col("label").sum().alias("n"))
    for c in ("m", "p", "a"):
        top = vaf.sort(["user_id", c], descending=[False, True]).group_by("user_id", maintain_order=True).head(20)
        hits = top.group_by("user_id").agg(pl.col("label").sum().alias("h")).join(npos, on="user_id").filter(pl.col("n") > 0)
        out[c] = round(float((hits["h"] / hits["n"].clip(upper_bound=20)).mean()), 4)
    return out

INTER = InteractionConfig()
ALS = ALSConfig(factors=64, iterations=15, min_user_events_for_fit=3, num_threads=1)


def extra_features(feats, frame: pl.DataFrame) -> pl.DataFrame:
    """The pre-change raw log counts (``pop_recent_log``, ``pop_all_log``) for the ``before`` variants."""
    icol = frame.join(feats.item_index, on="item_id", how="left", maintain_order="left").get_column("icol").to_numpy()
    return frame.with_columns(
        pl.Series("pop_recent_log", np.log1p(feats.item_array("n_recent").astype(np.float64)[icol]).astype(np.float32)),
        pl.Series("pop_all_log", np.log1p(feats.item_array("n_interactions").astype(np.float64)[icol]).astype(np.float32)),
    )


def frame_for(feats, users, cfg, labels=None):
    cands = generate_candidates(feats, users, arm_sources("ranker_no_text"), cfg)
    fr = ranker_features(feats, cands, None)
    fr = extra_features(feats, fr)
    if labels is not None:
        lab2 = labels.rename({"grade": "label"}) if "grade" in labels.columns else labels.with_columns(label=pl.lit(1, pl.Int8))
        fr = fr.join(lab2, on=["user_id", "item_id"], how="left", maintain_order="left").with_columns(pl.col("label").fill_null(0))
    return fr, cands


def metrics(recs, truth, users):
    m = per_user_metrics(recs, truth, users, (20,))
    return m.filter(pl.col("metric").is_in(["recall", "ndcg"]))


def run(lake_root, start, end, protocols, variants, step=1):
    lake = Lake.at(lake_root)
    items = read_catalog(lake, "items")
    events = lake.read_events(before=end + timedelta(days=1))
    pcfg = ProtocolConfig()
    cfg = LabCfg(encoders=())
    rows = []
    d = start
    while d <= end:
        before = events.filter(pl.col("ts") < day_start(d))
        day_ev = events.filter((pl.col("ts") >= day_start(d)) & (pl.col("ts") < day_start(d + timedelta(days=1))))
        if day_ev.height == 0:
            d += timedelta(days=step)
            continue
        for protocol in protocols:
            t0 = time.time()
            sv = build_view(before, items, d, protocol, "serve", pcfg)
            tv = build_view(before, items, d, protocol, "train", pcfg)
            serve = SnapshotFeatures(sv, als=fit_view_als(sv, FeatureConfig(als=ALS, interactions=INTER, protocol=pcfg))[0], protocol=pcfg)
            train = SnapshotFeatures(tv, als=fit_view_als(tv, FeatureConfig(als=ALS, interactions=INTER, protocol=pcfg))[0], protocol=pcfg)
            truth = positives_excluding_seen(day_ev, sv.seen, INTER, sv.catalog["item_id"])
            if truth.height == 0:
                continue
            eval_users = truth["user_id"].unique().sort().to_list()
            t1 = time.time()
            base = {}
            for arm in ("popularity", "als"):
                r, _ = recommend(arm, serve, eval_users, 20, None, cfg)
                base[arm] = metrics(r, truth, eval_users)
            sframe, scands = frame_for(serve, eval_users, cfg)
            cache = {}
            for name, v in variants.items():
                h = v.get("label_days", 14)
                key = (h, v.get("max_users"), v.get("graded"))
                if key not in cache:
                    win = before.filter((pl.col("ts") >= day_start(tv.cutoff)) & (pl.col("ts") < day_start(tv.cutoff + timedelta(days=h))))
                    lab = positives_excluding_seen(win, tv.seen, INTER, tv.catalog["item_id"]).select("user_id", "item_id")
                    if v.get("graded"):
                        first = win.group_by("user_id", "item_id").agg(pl.col("ts").min().alias("t0"))
                        off = (pl.col("t0") - pl.lit(day_start(tv.cutoff))).dt.total_hours() / 24.0
                        g1, g2 = v["graded"]
                        lab = lab.join(first, on=["user_id", "item_id"], how="left").with_columns(
                            grade=(1 + (off < g2).cast(pl.Int8) + (off < g1).cast(pl.Int8)).cast(pl.Int8)).select("user_id", "item_id", "grade")
                    users = sorted(lab["user_id"].unique().to_list())
                    if v.get("max_users") and len(users) > v["max_users"]:
                        from recsys_assets.lib.ranking.inputs import hash_u64
                        hh = hash_u64(users, "train-users")
                        users = sorted(np.asarray(users, dtype=object)[np.argsort(hh, kind="stable")[: v["max_users"]]].tolist())
                        lab = lab.filter(pl.col("user_id").is_in(users))
                    tf, tc = frame_for(train, users, cfg, lab)
                    cache[key] = (tf.sort("user_id", "item_id"), candidate_recall(tc, lab), len(users))
                tf, crec, nu = cache[key]
                fn = v["features"]
                extra = list(v.get("extra", ()))
                rc = LabCfg(encoders=(), extra=tuple(extra), **v.get("cfg", {}))
                ins = insample(tf, fn, rc, name) if os.environ.get("INSAMPLE") else {}
                model = train_ranker(tf, fn, rc, arm=name)
                sc = sframe.select("user_id", "item_id").with_columns(pl.Series("score", model.predict(sframe)))
                recs = top_k_from_scores(sc, 20, serve)
                m = metrics(recs, truth, eval_users)
                for arm_name, mm in [(name, m)] + ([(a, base[a]) for a in base] if name == next(iter(variants)) else []):
                    rows.append(mm.with_columns(day=pl.lit(str(d)), protocol=pl.lit(protocol), arm=pl.lit(arm_name)))
                print(json.dumps({"day": str(d), "p": protocol, "v": name, "best_it": model.best_iteration, "n_train_users": model.meta.get("n_train_users"), "n_valid": model.meta.get("n_valid_users"), "lab_users": nu, "cand_recall": round(crec, 3), "ins": ins,
                                  "r20": round(float(m.filter(pl.col("metric") == "recall")["value"].mean()), 4),
                                  "pop": round(float(base["popularity"].filter(pl.col("metric") == "recall")["value"].mean()), 4),
                                  "als": round(float(base["als"].filter(pl.col("metric") == "recall")["value"].mean()), 4)}), flush=True)
            print(f"# {d} {protocol} views+als {t1 - t0:.1f}s total {time.time() - t0:.1f}s", flush=True)
        d += timedelta(days=step)
    return pl.concat(rows) if rows else pl.DataFrame()


def summary(df):
    s = df.group_by("protocol", "arm", "metric").agg(pl.col("value").mean(), pl.len().alias("n")).sort("protocol", "metric", "value", descending=[False, False, True])
    with pl.Config(tbl_rows=-1, float_precision=4):
        print(s)


FINAL = list(FEATURES_NO_TEXT)
"""The shipped feature set (raw counts replaced by places in the popularity list and shares)."""
BEFORE = ["als_score", "als_rank", "pop_recent_log", "pop_all_log", "item_age_days", "user_hist_len", "user_is_new", "item_is_new",
          "user_segment", "item_segment", "category_overlap", "source_als", "source_popular", "source_new"]
"""The feature set before the change (raw log counts; recomputed by extra_features)."""
OLD = {"num_leaves": 31, "min_data_in_leaf": 20, "learning_rate": 0.1, "monotone": ()}
SMALL = {"num_leaves": 7, "min_data_in_leaf": 100, "learning_rate": 0.05}
VARIANTS = {
    "before": {"features": BEFORE, "cfg": OLD},
    "before_cap400": {"features": BEFORE, "cfg": OLD, "max_users": 400},
    "before_mono": {"features": BEFORE, "cfg": {k: v for k, v in OLD.items() if k != "monotone"}},
    "before_L3": {"features": BEFORE, "cfg": OLD, "label_days": 3},
    "before_L7": {"features": BEFORE, "cfg": OLD, "label_days": 7},
    "final": {"features": FINAL},
    "final_nomono": {"features": FINAL, "cfg": {"monotone": ()}},
    "final_small": {"features": FINAL, "cfg": SMALL},
    "final_cap400": {"features": FINAL, "max_users": 400},
    "final_L3": {"features": FINAL, "label_days": 3},
    "final_g13": {"features": FINAL, "graded": (1, 3)},
    "final_g37": {"features": FINAL, "graded": (3, 7)},
}
for _f in BEFORE:
    if not _f.startswith("source_") and _f not in ("als_score", "als_rank"):
        VARIANTS[f"before_drop_{_f}"] = {"features": [g for g in BEFORE if g != _f], "cfg": OLD}
for _f in FINAL:
    if not _f.startswith("source_"):
        VARIANTS[f"final_drop_{_f}"] = {"features": [g for g in FINAL if g != _f]}


if __name__ == "__main__":
    lake, s, e = sys.argv[1], date.fromisoformat(sys.argv[2]), date.fromisoformat(sys.argv[3])
    protocols = sys.argv[4].split(",") if len(sys.argv) > 4 else ["temporal"]
    names = sys.argv[5].split(",") if len(sys.argv) > 5 else list(VARIANTS)
    step = int(os.environ.get("STEP", "1"))
    df = run(lake, s, e, protocols, {n: VARIANTS[n] for n in names}, step)
    out = os.environ.get("OUT")
    if out:
        df.write_parquet(out)
    summary(df)
