"""Serve-like ranker training, measured on days before the evaluated window (docs/ranker.md).

For each day d of [START - max(K), END] and protocol, the SERVE snapshot of d is built with the
library (``build_view`` + ``assemble_snapshot_features``: ALS refit, no text) and its
"examples" are kept: the candidates of the users with a positive on day d, their features,
and label = that positive (exactly what the ranker is asked on a served day). For each
evaluated day D of [START, END] the variants train on the examples of the nights before D
and are scored on D's truth next to ``popularity`` and ``als`` (same users):

- ``window``: the previous design (snapshot D - 14, labels = the 14 days after it);
- ``n<k>``: the k nights D - k .. D - 1, validation users by hash (the library's default split);
- ``n<k>_none``: the k nights, no validation: ``rounds_without_validation`` rounds;
- ``n<k>_last``: nights D - k .. D - 2 train, night D - 1 is the validation set for early
  stopping, and the model is refit on all k nights with the rounds found (``_lastonly``: no refit).

One JSON line per (day, protocol, variant) and a summary (mean over days of the per-day mean
recall@20 / NDCG@20, and ranker minus the better baseline).

    .venv/bin/python benchmarks/bench_serve_like.py LAKE 1998-02-20 1998-03-26 temporal,item_holdout window,n7,n7_last
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
from recsys_assets.lib.ranking.arms import popularity_tiebreak, recommend, top_k_from_scores
from recsys_assets.lib.ranking.candidates import arm_sources, candidate_recall, generate_candidates
from recsys_assets.lib.ranking.config import RankingConfig
from recsys_assets.lib.ranking.features import FEATURES_NO_TEXT, ranker_features
from recsys_assets.lib.ranking.inputs import assemble_snapshot_features
from recsys_assets.lib.ranking.ranker import fit_lgb, LgbData, prepare_lgb_data, RankerModel
from recsys_assets.lib.snapshot import ProtocolConfig, build_view, day_start, positives_excluding_seen

INTER = InteractionConfig()
ALS = ALSConfig(factors=64, iterations=15, min_user_events_for_fit=3, num_threads=1)
FN = list(FEATURES_NO_TEXT)


def frame_for(feats, users, cfg, labels=None):
    cands = generate_candidates(feats, users, arm_sources("ranker_no_text"), cfg)
    fr = ranker_features(feats, cands, None)
    if labels is not None:
        fr = fr.join(labels.with_columns(label=pl.lit(1, pl.Int8)), on=["user_id", "item_id"], how="left", maintain_order="left").with_columns(
            pl.col("label").fill_null(0)
        )
    return fr, cands


def metric_means(recs, truth, users):
    m = per_user_metrics(recs, truth, users, (20,))
    return m.filter(pl.col("metric").is_in(["recall", "ndcg"]))


def train(frames: list[tuple[str, pl.DataFrame]], cfg: RankingConfig, mode: str) -> tuple[RankerModel, dict]:
    """frames = [(night, frame)], oldest first; the query group is (night, user)."""
    tagged = [f.with_columns(pl.concat_str([pl.lit(n), pl.lit("|"), pl.col("user_id")]).alias("user_id")) for n, f in frames]
    last_users = frames[-1][1].filter(pl.col("label") > 0)["user_id"].n_unique()
    if mode == "none":
        cfg = replace(cfg, validation_fraction=0.0)
    if mode in ("hash", "none") or len(frames) < 2 or last_users < cfg.min_valid_users:
        # Too few users on the last night to early-stop on (as the library: fixed rounds instead).
        cfg = cfg if mode in ("hash", "none") else replace(cfg, validation_fraction=0.0)
        data = prepare_lgb_data(pl.concat(tagged).sort("user_id", "item_id"), FN, cfg)
        booster = fit_lgb(data, FN, cfg)
        best = int(booster.best_iteration or 0) or booster.current_iteration()
        return RankerModel(booster, FN, {"best_iteration": best}), {"valid": data.stats["n_valid_users"], "users": data.stats["n_users"]}
    nv = replace(cfg, validation_fraction=0.0)
    tr = prepare_lgb_data(pl.concat(tagged[:-1]).sort("user_id", "item_id"), FN, nv)
    va = prepare_lgb_data(tagged[-1].sort("user_id", "item_id"), FN, nv)
    data = LgbData(tr.x_train, tr.y_train, tr.group_train, va.x_train, va.y_train, va.group_train)
    booster = fit_lgb(data, FN, cfg)
    best = int(booster.best_iteration or 0) or booster.current_iteration()
    info = {"valid": int(len(va.group_train)), "users": int(len(tr.group_train) + len(va.group_train)), "best": best}
    if mode == "last_refit":
        full = prepare_lgb_data(pl.concat(tagged).sort("user_id", "item_id"), FN, nv)
        booster = fit_lgb(full, FN, replace(cfg, num_boost_round=best, rounds_without_validation=best))
        best = booster.current_iteration()
    return RankerModel(booster, FN, {"best_iteration": best}), info


def parse_variant(name: str) -> tuple[int, str]:
    if name == "window":
        return 0, "window"
    k, _, mode = name[1:].partition("_")
    return int(k), {"": "hash", "last": "last_refit", "lastonly": "last_only", "none": "none"}[mode]


def run(lake_root, start, end, protocols, variants):
    lake = Lake.at(lake_root)
    items = read_catalog(lake, "items")
    events = lake.read_events(before=end + timedelta(days=1))
    pcfg = ProtocolConfig()
    cfg = RankingConfig(encoders=())
    parsed = {v: parse_variant(v) for v in variants}
    kmax = max([k for k, _ in parsed.values()] + [1])
    rows = []
    for protocol in protocols:
        examples: dict[date, pl.DataFrame] = {}
        d = start - timedelta(days=kmax)
        while d <= end:
            t0 = time.time()
            before = events.filter(pl.col("ts") < day_start(d))
            day_ev = events.filter((pl.col("ts") >= day_start(d)) & (pl.col("ts") < day_start(d + timedelta(days=1))))
            sv = build_view(before, items, d, protocol, "serve", pcfg)
            truth = positives_excluding_seen(day_ev, sv.seen, INTER, sv.catalog["item_id"])
            if truth.height == 0:
                d += timedelta(days=1)
                continue
            serve = assemble_snapshot_features(sv, {}, als_config=ALS, interaction_config=INTER, protocol=pcfg)
            users = truth["user_id"].unique().sort().to_list()
            ex, cands = frame_for(serve, users, cfg, truth)
            examples[d] = ex.sort("user_id", "item_id")
            if d >= start:
                base = {arm: metric_means(recommend(arm, serve, users, 20, None, cfg)[0], truth, users) for arm in ("popularity", "als")}
                for arm, m in base.items():
                    rows.append(m.with_columns(day=pl.lit(str(d)), protocol=pl.lit(protocol), arm=pl.lit(arm)))
                for name, (k, mode) in parsed.items():
                    if mode == "window":
                        tv = build_view(before, items, d, protocol, "train", pcfg)
                        tfe = assemble_snapshot_features(tv, {}, als_config=ALS, interaction_config=INTER, protocol=pcfg)
                        win = before.filter(pl.col("ts") >= day_start(tv.cutoff))
                        lab = positives_excluding_seen(win, tv.seen, INTER, tv.catalog["item_id"]).select("user_id", "item_id")
                        tf, _ = frame_for(tfe, sorted(lab["user_id"].unique().to_list()), cfg, lab)
                        model, info = train([("w", tf.sort("user_id", "item_id"))], cfg, "hash")
                    else:
                        nights = [(str(n), examples[n]) for n in sorted(examples) if d - timedelta(days=k) <= n < d]
                        if not nights:
                            continue
                        model, info = train(nights, cfg, mode)
                        info["nights"] = len(nights)
                    sc = ex.select("user_id", "item_id").with_columns(pl.Series("score", model.predict(ex)))
                    m = metric_means(top_k_from_scores(sc, 20, serve, popularity_tiebreak(serve)), truth, users)
                    rows.append(m.with_columns(day=pl.lit(str(d)), protocol=pl.lit(protocol), arm=pl.lit(name)))
                    r = lambda f: round(float(f.filter(pl.col("metric") == "recall")["value"].mean()), 4)  # noqa: E731
                    print(json.dumps({"day": str(d), "p": protocol, "v": name, "best_it": model.best_iteration, **info, "users": len(users),
                                      "r20": r(m), "pop": r(base["popularity"]), "als": r(base["als"])}), flush=True)
            print(f"# {d} {protocol} {len(users)} labelled users, cand_recall {candidate_recall(cands, truth):.3f}, {time.time() - t0:.1f}s", flush=True)
            d += timedelta(days=1)
    return pl.concat(rows)


def summary(df: pl.DataFrame) -> pl.DataFrame:
    per_day = df.group_by("protocol", "metric", "day", "arm").agg(pl.col("value").mean())
    best = (
        per_day.filter(pl.col("arm").is_in(["popularity", "als"]))
        .group_by("protocol", "metric", "day")
        .agg(pl.col("value").max().alias("best_day"))
    )
    # "r - best": per day, arm minus the better of popularity/als on that day's users (as the gate, but per day).
    s = (
        per_day.join(best, on=["protocol", "metric", "day"])
        .group_by("protocol", "metric", "arm")
        .agg(pl.col("value").mean().alias("mean"), (pl.col("value") - pl.col("best_day")).mean().alias("minus_best_day"), pl.len().alias("days"))
        .sort("protocol", "metric", "mean", descending=[False, False, True])
    )
    return s


if __name__ == "__main__":
    lake, s, e = sys.argv[1], date.fromisoformat(sys.argv[2]), date.fromisoformat(sys.argv[3])
    protocols = sys.argv[4].split(",")
    names = sys.argv[5].split(",")
    df = run(lake, s, e, protocols, names)
    out = os.environ.get("OUT")
    if out:
        df.write_parquet(out)
    with pl.Config(tbl_rows=-1, float_precision=4, tbl_width_chars=200):
        print(summary(df))
