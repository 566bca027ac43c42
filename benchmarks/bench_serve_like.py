"""Serve-like ranker training, measured on days before the evaluated window (docs/ranker.md).

For each day d of [START - max(K), END] and protocol, the SERVE snapshot of d is built with the
library (``build_view`` + the feature stage's ``fit_view_als``: ALS refit, no text) and its
"examples" are kept: the candidates of the users with a positive on day d, their features,
and label = that positive (exactly what the ranker is asked on a served day). For each
evaluated day D of [START, END] the variants train on the examples of the nights before D
and are scored on D's truth next to ``popularity`` and ``als`` (same users):

- ``window``: the previous design (snapshot D - 14, labels = the 14 days after it);
- ``n<k>``: the k nights D - k .. D - 1, validation users by hash (the library's default split);
- ``n<k>_none``: the k nights, no validation: ``rounds_without_validation`` rounds;
- ``n<k>_last``: nights D - k .. D - 2 train, night D - 1 is the validation set for early
  stopping, and the model is refit on all k nights with the rounds found (``_lastonly``: no refit).

Settings suffixes (round 3), any order after the mode: ``p<s>`` = popularity prior of scale s
(``p0`` = no prior, ``p05`` = 0.5; LightGBM ``init_score``, lib/ranking/ranker.py), ``r<n>`` = rounds,
``lr<x>`` = learning rate (``lr005`` = 0.05), ``t<n>`` = lambdarank_truncation_level,
``ml<n>`` = min_data_in_leaf, ``nl<n>`` = num_leaves, ``mv<n>`` = min_valid_users.
Without one, the library default. Round 4: ``hashed`` = train and score with the popularity place
of round 3 (ties, never-seen items among them, in the popularity list's hashed order) instead of
the library's shared place of tied items (``features.popularity_place``); the same examples otherwise
(each night's examples keep both, ``pop_rank_log_hashed`` / ``pop_pct_hashed``).
Round 5: ``x<group>`` = train and score WITHOUT a group of features (the same examples otherwise):
``xcooc`` = ``last_cooc``, ``xprof`` = ``profile_lift``, ``xall`` = both (round 4's feature set).
``pa<alpha>`` = ``profile_lift`` with ``alpha`` pseudo-events (``PROFILE_ALPHAS``; the library's is
``features.PROFILE_SMOOTHING``). ``mono`` = ``profile_lift`` monotone increasing too (``last_cooc`` is
by default, ``RankingConfig.monotone``). The exploration's other features (ALS cosines with the last
items) and tokens are in the bench at commit daf0def (docs/ranker.md round 5).
Round 6: ``pp<b>`` / ``pc<c>`` = the prior adds ``b * profile_lift`` / ``c * log-share of last_cooc``
(``RankingConfig.prior_profile`` / ``prior_cooc``; ``pn<b>``: ``prior_profile_new``, new users only; ``ranker.prior_scores``; ``pp05`` = 0.5).
E.g. ``n14_none_p1_r50``.

With ``CACHE=DIR`` each (protocol, day)'s examples, truth and baseline metrics are written
there once and read back on later runs (only the LightGBM fits are repeated).

One JSON line per (day, protocol, variant) and a summary (mean over days of the per-day mean
recall@20 / NDCG@20, and of the variant minus popularity on the same users); ``OUT=FILE.parquet``
keeps the rows, ``--summarize FILE.parquet`` prints their summary again, ``--compare BASE ml-100k=A.parquet
ml-1m=B.parquet`` every variant minus BASE per (dataset, protocol) cell and on average (round 5's rule).

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
from recsys_assets.lib.ranking.arms import recommend, top_k_from_scores
from recsys_assets.lib.ranking.candidates import arm_sources, candidate_recall, generate_candidates
from recsys_assets.lib.ranking.config import RankingConfig
from recsys_assets.lib.ranking import features as features_mod
from recsys_assets.lib.ranking.features import FEATURES_NO_TEXT, ranker_features
from recsys_assets.lib.features.nightly import FeatureConfig, fit_view_als
from recsys_assets.lib.ranking.inputs import SnapshotFeatures
from recsys_assets.lib.ranking.ranker import fit_lgb, LgbData, prepare_lgb_data, prior_of, RankerModel, resolve_prior
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


def train(frames: list[tuple[str, pl.DataFrame]], cfg: RankingConfig, mode: str, fn: list[str] = FN) -> tuple[RankerModel, dict]:
    """frames = [(night, frame)], oldest first; the query group is (night, user)."""
    tagged = [f.with_columns(pl.concat_str([pl.lit(n), pl.lit("|"), pl.col("user_id")]).alias("user_id")) for n, f in frames]
    last_users = frames[-1][1].filter(pl.col("label") > 0)["user_id"].n_unique()
    # prior_profile_new None (the product's default) is chosen on these nights, as train_ranker does; pn<b> fixes it.
    cfg, _ = resolve_prior(pl.concat(tagged), cfg)
    if mode == "none":
        cfg = replace(cfg, validation_fraction=0.0)
    if mode in ("hash", "none") or len(frames) < 2 or last_users < cfg.min_valid_users:
        # Too few users on the last night to early-stop on (as the library: fixed rounds instead).
        cfg = cfg if mode in ("hash", "none") else replace(cfg, validation_fraction=0.0)
        data = prepare_lgb_data(pl.concat(tagged).sort("user_id", "item_id"), fn, cfg)
        booster = fit_lgb(data, fn, cfg)
        best = int(booster.best_iteration or 0) or booster.current_iteration()
        meta = {"best_iteration": best, "prior": prior_of(cfg)}
        return RankerModel(booster, fn, meta), {"valid": data.stats["n_valid_users"], "users": data.stats["n_users"]}
    nv = replace(cfg, validation_fraction=0.0)
    tr = prepare_lgb_data(pl.concat(tagged[:-1]).sort("user_id", "item_id"), fn, nv)
    va = prepare_lgb_data(tagged[-1].sort("user_id", "item_id"), fn, nv)
    data = LgbData(tr.x_train, tr.y_train, tr.group_train, va.x_train, va.y_train, va.group_train, init_train=tr.init_train, init_valid=va.init_train)
    booster = fit_lgb(data, fn, cfg)
    best = int(booster.best_iteration or 0) or booster.current_iteration()
    info = {"valid": int(len(va.group_train)), "users": int(len(tr.group_train) + len(va.group_train)), "best": best}
    if mode == "last_refit":
        full = prepare_lgb_data(pl.concat(tagged).sort("user_id", "item_id"), fn, nv)
        booster = fit_lgb(full, fn, replace(cfg, num_boost_round=best, rounds_without_validation=best))
        best = booster.current_iteration()
    return RankerModel(booster, fn, {"best_iteration": best, "prior": prior_of(cfg)}), info


SETTINGS = {
    "p": "prior_scale", "r": "rounds", "lr": "learning_rate", "t": "lambdarank_truncation_level", "ml": "min_data_in_leaf", "nl": "num_leaves",
    "mv": "min_valid_users", "pp": "prior_profile", "pn": "prior_profile_new", "pc": "prior_cooc",
}


DROP = {
    "cooc": ["last_cooc"],
    "prof": ["profile_lift"],
    "all": ["last_cooc", "profile_lift"],
}
"""Feature groups a variant's ``x<group>`` token leaves out (round 5's ablations)."""


def parse_variant(name: str) -> tuple[int, str, dict]:
    """``n14_none_p1_r50`` -> (14, "none", {"prior_scale": 1.0, "rounds": 50})."""
    if name == "window":
        return 0, "window", {}
    k, *tokens = name[1:].split("_")
    mode, settings = "hash", {}
    for t in tokens:
        if t.startswith("x") and t[1:] in DROP:
            settings.setdefault("drop", []).extend(DROP[t[1:]])
            continue
        if t == "hashed":
            settings["hashed"] = True
            continue
        if t.startswith("pa") and t[2:].isdigit():
            settings["profile_alpha"] = int(t[2:])
            continue
        if t == "mono":
            settings["mono"] = ["profile_lift"]
            continue
        if t in ("last", "lastonly", "none"):
            mode = {"last": "last_refit", "lastonly": "last_only", "none": "none"}[t]
            continue
        key = next(p for p in sorted(SETTINGS, key=len, reverse=True) if t.startswith(p))
        v = t[len(key):]
        # p05 = 0.5, lr005 = 0.05: a leading 0 starts the decimals
        settings[SETTINGS[key]] = float("0." + v[1:]) if key in ("p", "lr", "pp", "pn", "pc") and v.startswith("0") and len(v) > 1 else float(v)
    return int(k), mode, settings


def variant_config(cfg: RankingConfig, settings: dict) -> RankingConfig:
    out = cfg
    for name, v in settings.items():
        if name in ("hashed", "drop", "profile_alpha"):
            continue
        if name == "mono":
            out = replace(out, monotone=tuple(out.monotone) + tuple((f, 1) for f in v if f not in dict(out.monotone)))
            continue
        if name == "prior_scale":
            out = replace(out, prior="popularity" if v > 0 else "none", prior_scale=v)
        elif name == "rounds":
            out = replace(out, rounds_without_validation=int(v), num_boost_round=max(int(v), out.num_boost_round))
        elif name == "lambdarank_truncation_level":
            out = replace(out, lambdarank_truncation_level=int(v))
        elif name in ("min_data_in_leaf", "num_leaves", "min_valid_users"):
            out = replace(out, **{name: int(v)})
        else:
            out = replace(out, **{name: v})
    return out


def tiebreak_of(ex: pl.DataFrame) -> pl.DataFrame:
    """The popularity arm's order of the candidates, the serving tie-break of ranker arms
    (``arms.popularity_tiebreak``): kept with each night's examples (older caches: from the hashed
    pop_rank_log, log1p of the place in that list)."""
    col = "tiebreak" if "tiebreak" in ex.columns else "pop_rank_log"
    return ex.group_by("item_id").agg(pl.col(col).first()).select("item_id", pl.col(col).rank("ordinal").cast(pl.UInt64).alias("tiebreak"))


PROFILE_ALPHAS = (1, 10)
"""Other ``profile_lift`` smoothings kept with each night's examples (round 5; token ``pa<alpha>``)."""

HASHED = {"pop_rank_log": "pop_rank_log_hashed", "pop_pct": "pop_pct_hashed"}


def hashed_places(ex: pl.DataFrame) -> pl.DataFrame:
    """The examples with round 3's popularity place (the list's hashed order of ties) as the features."""
    missing = [c for c in HASHED.values() if c not in ex.columns]
    if missing:
        raise SystemExit(f"variant 'hashed' needs examples cached by this version (missing {missing}); use a new CACHE")
    return ex.with_columns(pl.col(h).alias(c) for c, h in HASHED.items())


def variant_columns(settings: dict):
    """The examples as a variant sees them: round 3's hashed places, another profile_lift smoothing."""
    def prep(ex: pl.DataFrame) -> pl.DataFrame:
        if settings.get("hashed"):
            ex = hashed_places(ex)
        if "profile_alpha" in settings:
            ex = ex.with_columns(pl.col(f"profile_lift_a{settings['profile_alpha']}").alias("profile_lift"))
        return ex
    return prep


def night(events, items, d, protocol, pcfg, cfg, cache, user_catalog=None):
    """(examples, truth, users, baseline metric rows) of day d's serve snapshot, cached under ``cache``."""
    key = cache and os.path.join(cache, f"{protocol}_{d}")
    if key and os.path.exists(key + "_ex.parquet"):
        ex = pl.read_parquet(key + "_ex.parquet")
        truth = pl.read_parquet(key + "_truth.parquet")
        base = pl.read_parquet(key + "_base.parquet")
        return ex, truth, truth["user_id"].unique().sort().to_list(), base
    before = events.filter(pl.col("ts") < day_start(d))
    day_ev = events.filter((pl.col("ts") >= day_start(d)) & (pl.col("ts") < day_start(d + timedelta(days=1))))
    sv = build_view(before, items, d, protocol, "serve", pcfg)
    truth = positives_excluding_seen(day_ev, sv.seen, INTER, sv.catalog["item_id"])
    if truth.height == 0:
        return None
    serve = SnapshotFeatures(sv, als=fit_view_als(sv, FeatureConfig(als=ALS, interactions=INTER, protocol=pcfg))[0], protocol=pcfg, users=user_catalog)
    users = truth["user_id"].unique().sort().to_list()
    ex, cands = frame_for(serve, users, cfg, truth)
    pos = pl.Series("tiebreak", serve.popularity_position, dtype=pl.Int64)
    places = serve.item_index.select("item_id", pos, pos.cast(pl.Float64).log1p().cast(pl.Float32).alias("pop_rank_log_hashed"),
                                     (1.0 - pos.cast(pl.Float64) / max(len(serve.item_ids), 1)).cast(pl.Float32).alias("pop_pct_hashed"))
    ex = ex.join(places, on="item_id", how="left").sort("user_id", "item_id")
    # profile_lift with other smoothings (variant token pa<alpha>), on the same rows
    p = ex.select("user_id", "item_id").join(serve.item_index, on="item_id", how="left", maintain_order="left")
    pu = p.get_column("user_id").unique(maintain_order=True).to_list()
    urow = p.join(pl.DataFrame({"user_id": pu, "urow": np.arange(len(pu))}), on="user_id", how="left", maintain_order="left").get_column("urow").to_numpy()
    ex = ex.with_columns(
        pl.Series(f"profile_lift_a{a}", features_mod._profile_lift(serve, pu, urow, p.get_column("icol").to_numpy(), float(a)), dtype=pl.Float32)
        for a in PROFILE_ALPHAS
    )
    base = pl.concat(
        [metric_means(recommend(arm, serve, users, 20, None, cfg)[0], truth, users).with_columns(arm=pl.lit(arm)) for arm in ("popularity", "als")]
    )
    print(f"# {d} {protocol} {len(users)} labelled users, cand_recall {candidate_recall(cands, truth):.3f}", flush=True)
    if key:
        ex.write_parquet(key + "_ex.parquet")
        truth.write_parquet(key + "_truth.parquet")
        base.write_parquet(key + "_base.parquet")
    return ex, truth, users, base


def run(lake_root, start, end, protocols, variants):
    lake = Lake.at(lake_root)
    items = read_catalog(lake, "items")
    user_catalog = read_catalog(lake, "users")
    events = lake.read_events(before=end + timedelta(days=1))
    pcfg = ProtocolConfig()
    cfg = RankingConfig(encoders=())
    cache = os.environ.get("CACHE")
    if cache:
        os.makedirs(cache, exist_ok=True)
    parsed = {v: parse_variant(v) for v in variants}
    kmax = max([k for k, _, _ in parsed.values()] + [1])
    rows = []
    for protocol in protocols:
        examples: dict[date, pl.DataFrame] = {}
        d = start - timedelta(days=kmax)
        while d <= end:
            t0 = time.time()
            got = night(events, items, d, protocol, pcfg, cfg, cache, user_catalog)
            if got is None:
                d += timedelta(days=1)
                continue
            ex, truth, users, base = got
            examples[d] = ex
            if d >= start:
                rows.append(base.with_columns(day=pl.lit(str(d)), protocol=pl.lit(protocol)))
                tb = tiebreak_of(ex)
                for name, (k, mode, settings) in parsed.items():
                    vcfg = variant_config(cfg, settings)
                    prep = variant_columns(settings)
                    if mode == "window":
                        before = events.filter(pl.col("ts") < day_start(d))
                        tv = build_view(before, items, d, protocol, "train", pcfg)
                        tfe = SnapshotFeatures(tv, als=fit_view_als(tv, FeatureConfig(als=ALS, interactions=INTER, protocol=pcfg))[0], protocol=pcfg, users=user_catalog)
                        win = before.filter(pl.col("ts") >= day_start(tv.cutoff))
                        lab = positives_excluding_seen(win, tv.seen, INTER, tv.catalog["item_id"]).select("user_id", "item_id")
                        tf, _ = frame_for(tfe, sorted(lab["user_id"].unique().to_list()), vcfg, lab)
                        model, info = train([("w", tf.sort("user_id", "item_id"))], vcfg, "hash")
                    else:
                        nights = [(str(n), prep(examples[n])) for n in sorted(examples) if d - timedelta(days=k) <= n < d]
                        if not nights:
                            continue
                        fn = [f for f in FN if f not in settings.get("drop", [])]
                        model, info = train(nights, vcfg, mode, fn)
                        info["nights"] = len(nights)
                    scored = prep(ex)
                    sc = ex.select("user_id", "item_id").with_columns(pl.Series("score", model.predict(scored)))
                    m = metric_means(top_k_from_scores(sc, 20, None, tb), truth, users)
                    rows.append(m.with_columns(day=pl.lit(str(d)), protocol=pl.lit(protocol), arm=pl.lit(name)))
                    r = lambda f, met="recall": round(float(f.filter(pl.col("metric") == met)["value"].mean()), 4)  # noqa: E731
                    pop = base.filter(pl.col("arm") == "popularity")
                    print(json.dumps({"day": str(d), "p": protocol, "v": name, "best_it": model.best_iteration, **info, "users": len(users),
                                      "r20": r(m), "pop": r(pop), "n20": r(m, "ndcg"), "pop_n20": r(pop, "ndcg")}), flush=True)
            print(f"# {d} {protocol} {time.time() - t0:.1f}s", flush=True)
            d += timedelta(days=1)
    return pl.concat(rows, how="diagonal_relaxed")


def summary(df: pl.DataFrame) -> pl.DataFrame:
    """Per protocol and arm: mean over days of the per-day user mean recall@20 / NDCG@20, and of
    (arm - popularity) on the same day's users (``r-pop``, ``n-pop``); ``n_days_above`` = share of days
    the arm's NDCG@20 beat popularity's."""
    per_day = df.group_by("protocol", "metric", "day", "arm").agg(pl.col("value").mean())
    wide = per_day.pivot(on="metric", index=["protocol", "day", "arm"], values="value")
    pop = wide.filter(pl.col("arm") == "popularity").select("protocol", "day", pl.col("recall").alias("pr"), pl.col("ndcg").alias("pn"))
    return (
        wide.join(pop, on=["protocol", "day"])
        .group_by("protocol", "arm")
        .agg(
            pl.len().alias("days"),
            pl.col("recall").mean().alias("r20"),
            (pl.col("recall") - pl.col("pr")).mean().alias("r-pop"),
            pl.col("ndcg").mean().alias("n20"),
            (pl.col("ndcg") - pl.col("pn")).mean().alias("n-pop"),
            (pl.col("ndcg") > pl.col("pn")).mean().alias("n_days_above"),
        )
        .sort("protocol", "n-pop", descending=[False, True])
    )


def print_summary(df: pl.DataFrame) -> None:
    with pl.Config(tbl_rows=-1, tbl_cols=-1, float_precision=4, tbl_width_chars=200, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
        print(summary(df))


def paired(df: pl.DataFrame, a: str, b: str) -> pl.DataFrame:
    """Per protocol and metric: ``a - b`` over the user-days both scored (paired bootstrap, users
    resampled, ``stats.paired_bootstrap``; a user-day is one unit): the difference of two variants on the same examples."""
    from recsys_assets.lib.evaluation.stats import paired_bootstrap

    keys = ["protocol", "metric", "day", "user_id"]
    both = df.filter(pl.col("arm") == a).select(*keys, pl.col("value").alias("a")).join(
        df.filter(pl.col("arm") == b).select(*keys, pl.col("value").alias("b")), on=keys
    )
    rows = []
    for (protocol, metric), g in both.group_by("protocol", "metric", maintain_order=True):
        st = paired_bootstrap(g["a"].to_numpy(), g["b"].to_numpy())
        rows.append({"protocol": protocol, "metric": f"{metric}@20", "a": a, "b": b, "diff": st.abs_lift, "ci_low": st.ci_low, "ci_high": st.ci_high,
                     "n_user_days": g.height})
    return pl.DataFrame(rows).sort("protocol", "metric")


def compare(base: str, files: dict[str, str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Every variant present in all ``files`` (dataset -> OUT parquet) minus ``base``, paired per
    (dataset, protocol, metric) cell (:func:`paired`), and per variant and metric the mean of the
    diffs over the cells with the number of cells significantly above / below: round 5's adoption
    rule (better on average over the dataset x protocol tuning cells)."""
    dfs = {ds: pl.read_parquet(f) for ds, f in files.items()}
    arms = sorted(set.intersection(*(set(df["arm"].unique()) for df in dfs.values())) - {base, "popularity", "als"})
    rows = []
    for a in arms:
        for ds, df in dfs.items():
            rows += [{"variant": a, "data": ds, **r} for r in paired(df, a, base).select("protocol", "metric", "diff", "ci_low", "ci_high").iter_rows(named=True)]
    t = pl.DataFrame(rows)
    cells = t.pivot(on="metric", index=["variant", "data", "protocol"], values="diff")
    means = (
        t.group_by("variant", "metric")
        .agg(pl.col("diff").mean().alias("mean_diff"), (pl.col("ci_low") > 0).sum().alias("n_sig_above"), (pl.col("ci_high") < 0).sum().alias("n_sig_below"))
        .sort("variant", "metric")
    )
    return cells, means


if __name__ == "__main__":
    if sys.argv[1] == "--compare":
        # bench_serve_like.py --compare BASE ml-100k=A.parquet ml-1m=B.parquet: every variant vs BASE, per cell and on average
        files = dict(a.split("=", 1) for a in sys.argv[3:])
        with pl.Config(tbl_rows=-1, tbl_cols=-1, float_precision=4, tbl_width_chars=200, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
            for t in compare(sys.argv[2], files):
                print(t)
        sys.exit(0)
    if sys.argv[1] == "--summarize":
        # bench_serve_like.py --summarize OUT.parquet [--paired A B]: the summary of an earlier run's rows
        df = pl.read_parquet(sys.argv[2])
        print_summary(df)
        if len(sys.argv) > 3 and sys.argv[3] == "--paired":
            with pl.Config(tbl_rows=-1, tbl_cols=-1, float_precision=4, tbl_width_chars=200, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
                print(paired(df, sys.argv[4], sys.argv[5]))
        sys.exit(0)
    lake, s, e = sys.argv[1], date.fromisoformat(sys.argv[2]), date.fromisoformat(sys.argv[3])
    protocols = sys.argv[4].split(",")
    names = sys.argv[5].split(",")
    df = run(lake, s, e, protocols, names)
    out = os.environ.get("OUT")
    if out:
        df.write_parquet(out)
    print_summary(df)
