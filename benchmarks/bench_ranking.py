"""Ranking stage on ml-1m-like scale: candidates, training frame, LightGBM fit, scoring.

- candidates: ``generate_candidates`` for every served user, ranker_<enc> sources
  (als, popular, new, content, c2cf; the ``item-vector`` encoder) on a 6,040 x 3,706 catalogue.
- training frame: ``build_training_frame`` (candidates + features + labels) for the
  labelled users of the train view.
- LightGBM fit: ``train_ranker`` (grouping, hashed validation split, Dataset,
  early-stopped lambdarank) vs a raw ``lightgbm.train`` on the same matrices and
  params, run alternately. Target <= 1.2x.
- scoring: ``recommend('ranker_item-vector')`` (candidates + features + predict + top-K)
  and ``recommend('als')`` vs raw ``U @ V.T`` + argpartition top-20 (target <= 1.3x
  for the ALS arm).

Data: a random world (``--users`` x ``--items``, ``--events`` events over 60 days,
topic-structured, 10% of items released in the last 30 days, noisy topic vectors as
the items' precomputed ``image_vector``: the ``item-vector`` encoder stands for the text
encoder). The inputs are built as production builds them: the world is landed into a
lake (``--lake``, replaced), ingested, the feature assets of day D materialized, and the
ranking stage's loader reads them (timed: ``lake_ingest_seconds``,
``feature_assets_seconds``, ``load_<stage>_seconds``). Writes benchmarks/results/ranking.json.

    .venv/bin/python benchmarks/bench_ranking.py [--threads 2] [--repeats 2] [--lake /tmp/bench_ranking_lake]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from recsys_assets.defs.resources import ModelsResource  # noqa: E402
from recsys_assets.lib.interactions import InteractionConfig  # noqa: E402
from recsys_assets.lib.schema import EVENT_SCHEMA  # noqa: E402
from recsys_assets.lib.ranking.arms import build_training_frame, recommend, training_labels  # noqa: E402
from recsys_assets.lib.ranking.candidates import arm_sources, generate_candidates  # noqa: E402
from recsys_assets.lib.ranking.config import RankingConfig  # noqa: E402
from recsys_assets.lib.ranking.features import feature_names  # noqa: E402
from recsys_assets.lib.ranking.ranker import prepare_lgb_data, resolve_prior, train_ranker  # noqa: E402
from recsys_assets.lib.snapshot import day_start  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from recsys_assets_tests.lib.ranking.lake_world import land_and_ingest  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "ranking.json"
N_DAYS = 60
ENC = "item-vector"
ARM = f"ranker_{ENC}"


def random_world(n_users: int, n_items: int, n_events: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    n_topics = 18
    start = dt.date(2026, 1, 1)
    itopic = rng.integers(0, n_topics, n_items)
    released = np.where(rng.random(n_items) < 0.1, rng.integers(N_DAYS - 30, N_DAYS, n_items), -100)
    created = np.array([np.datetime64(start) + np.timedelta64(int(r), "D") for r in released], dtype="datetime64[us]")
    items = pl.DataFrame(
        {
            "item_id": [f"i{j}" for j in range(n_items)],
            "categories": [[f"g{t}", f"g{(t * 7 + 3) % n_topics}"] for t in rng.integers(0, n_topics, n_items)],
            "created_at": pl.Series(created).dt.replace_time_zone("UTC"),
            "first_seen_day": [start + dt.timedelta(days=int(r)) if r > 0 else None for r in released],
        },
        schema_overrides={"first_seen_day": pl.Date},
    )
    utopic = rng.integers(0, n_topics, n_users)
    activity = 1.0 / np.arange(1, n_users + 1) ** 0.6
    n_draw = int(n_events * 2.4)  # repeated (user, item) draws are dropped below
    users = rng.choice(n_users, n_draw, p=activity / activity.sum())
    day = rng.integers(0, N_DAYS, n_draw)
    topic = np.where(rng.random(n_draw) < 0.8, utopic[users], rng.integers(0, n_topics, n_draw))
    # item within topic by popularity (Zipf), only items released by that day
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.9
    item = np.empty(n_draw, np.int64)
    for t in range(n_topics):
        members = np.flatnonzero(itopic == t)
        idx = np.flatnonzero(topic == t)
        w = pop[: len(members)]
        item[idx] = members[rng.choice(len(members), len(idx), p=w / w.sum())]
    ok = released[item] <= day
    users, item, day = users[ok], item[ok], day[ok]
    secs = rng.integers(0, 86_400, len(users))
    ts = (np.datetime64(start) + day.astype("timedelta64[D]")).astype("datetime64[us]") + secs.astype("timedelta64[s]")
    events = pl.DataFrame(
        {
            "event_id": np.arange(len(users)).astype(str),
            "user_id": pl.Series(users).cast(pl.String).str.replace(r"^", "u"),
            "item_id": pl.Series(item).cast(pl.String).str.replace(r"^", "i"),
            "event_type": ["rating"] * len(users),
            "value": rng.integers(1, 6, len(users)).astype(np.float32),
            "ts": pl.Series(ts).dt.replace_time_zone("UTC"),
        },
        schema=EVENT_SCHEMA,
    ).unique(subset=["user_id", "item_id"], keep="first", maintain_order=True).head(n_events)
    dim = 64
    vec = np.zeros((n_items, dim), np.float32)
    vec[np.arange(n_items), itopic] = 1.0
    vec += rng.normal(0, 0.35, vec.shape).astype(np.float32)
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    return events, items, start + dt.timedelta(days=N_DAYS), [f"i{j}" for j in range(n_items)], vec


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=6040)
    ap.add_argument("--items", type=int, default=3706)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--lake", default="/tmp/bench_ranking_lake", help="lake folder the world is landed into (replaced)")
    args = ap.parse_args()
    res: dict = {"date": dt.datetime.now(dt.timezone.utc).isoformat(), "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "args": vars(args)}

    t, (events, items, day_d, iids, vec) = _timed(lambda: random_world(args.users, args.items, args.events))
    res["world"] = {"seconds": round(t, 2), "events": events.height, "items": items.height}
    print("world", res["world"], flush=True)
    models = ModelsResource(
        encoders=ENC, protocols="temporal", label_window_days=14, als_factors=64, als_iterations=15, als_min_user_events=1, device="cpu"
    )
    inter = InteractionConfig()
    # Hashed validation: the early-stopped fit this benchmark compares with a raw lightgbm.train (the default since
    # round 3 is fixed rounds without validation, which has no valid set to compare on), no refit on all rows, no popularity prior (raw lightgbm.train gets no init_score).
    cfg = RankingConfig(encoders=(ENC,), num_threads=args.threads, validation="hash", refit_after_early_stopping=False, prior="none")
    shutil.rmtree(args.lake, ignore_errors=True)
    truth_day = events.filter(pl.col("ts") < day_start(day_d + dt.timedelta(days=1)))
    t, lw = _timed(lambda: land_and_ingest(Path(args.lake), truth_day, items, (iids, vec), None, models))
    res["lake_ingest_seconds"] = round(t, 2)
    t, _ = _timed(lambda: lw.materialize(day_d))
    res["feature_assets_seconds"] = round(t, 2)
    feats = {}
    for stage in ("train", "serve"):
        t, feats[stage] = _timed(lambda: lw.features(day_d, stage))
        res[f"load_{stage}_seconds"] = round(t, 2)
    print("inputs", {k: v for k, v in res.items() if k.endswith("_seconds")}, flush=True)
    tf, sf = feats["train"], feats["serve"]
    labels = training_labels(tf.view, events, inter)
    serve_users = sorted(set(sf.view.history.get_column("user_id").unique().to_list()))

    t, cands = _timed(lambda: generate_candidates(sf, serve_users, arm_sources(ARM), cfg))
    res["candidates"] = {"seconds": round(t, 3), "users": len(serve_users), "rows": cands.height, "sources": list(arm_sources(ARM))}
    print("candidates", res["candidates"], flush=True)

    frames = {}
    for arm in ("ranker_no_text", ARM):
        t, (frame, st) = _timed(lambda: build_training_frame(tf, labels, arm, cfg))
        frames[arm] = frame
        res[f"training_frame_{arm}"] = {"seconds": round(t, 3), "rows": frame.height, **{k: v for k, v in st.items() if k != "arm"}}
        print("training frame", arm, res[f"training_frame_{arm}"], flush=True)

    import lightgbm as lgb

    names = feature_names(ENC)
    frame = frames[ARM]
    cfg, _ = resolve_prior(frame, cfg)  # prepare_lgb_data needs the prior resolved, as train_ranker resolves it
    data = prepare_lgb_data(frame, names, cfg)

    def raw():
        dtrain = lgb.Dataset(data.x_train, label=data.y_train, group=data.group_train, feature_name=names, free_raw_data=False)
        dvalid = lgb.Dataset(data.x_valid, label=data.y_valid, group=data.group_valid, reference=dtrain)
        return lgb.train(cfg.lgb_params(names), dtrain, num_boost_round=cfg.num_boost_round, valid_sets=[dvalid],
                         callbacks=[lgb.early_stopping(cfg.early_stopping_rounds, first_metric_only=True, verbose=False)])

    def ours():
        return train_ranker(frame, names, cfg, arm=ARM)

    t_raw, t_ours, model = [], [], None
    for _ in range(args.repeats):
        t, booster = _timed(raw)
        t_raw.append(t)
        t, model = _timed(ours)
        t_ours.append(t)
        print("fit raw %.2fs ours %.2fs" % (t_raw[-1], t_ours[-1]), flush=True)
    assert model.booster.model_to_string() == booster.model_to_string(), "train_ranker and the raw call must fit the same model"
    res["lgb_fit"] = {
        "rows": frame.height,
        "features": len(names),
        "best_iteration": model.best_iteration,
        "raw_seconds": [round(x, 3) for x in t_raw],
        "train_ranker_seconds": [round(x, 3) for x in t_ours],
        "ratio_median": round(statistics.median(t_ours) / statistics.median(t_raw), 3),
        "target": 1.2,
        "same_model": True,
    }
    print("lgb", res["lgb_fit"], flush=True)
    models = {ARM: model}
    t, (recs, st) = _timed(lambda: recommend(ARM, sf, serve_users, 20, models, cfg))
    res["recommend_ranker"] = {"seconds": round(t, 3), "users": len(serve_users), "rows": recs.height, **{k: v for k, v in st.items() if k not in ("arm",)}}
    print("recommend ranker", res["recommend_ranker"], flush=True)

    als = sf.als
    urows = sf.als_user_rows(serve_users)

    def raw_topk():
        out = []
        for s in range(0, len(urows), 2048):
            sc = als.user_factors[urows[s : s + 2048]] @ als.item_factors.T
            part = np.argpartition(-sc, 19, axis=1)[:, :20]
            ps = np.take_along_axis(sc, part, 1)
            out.append(np.take_along_axis(part, np.argsort(-ps, axis=1), 1))
        return np.vstack(out)

    t_r, t_o = [], []
    for _ in range(3):
        t_r.append(_timed(raw_topk)[0])
        t_o.append(_timed(lambda: recommend("als", sf, serve_users, 20, models, cfg))[0])
    res["recommend_als"] = {"raw_matmul_topk_seconds": [round(x, 3) for x in t_r], "recommend_seconds": [round(x, 3) for x in t_o],
                            "ratio_median": round(statistics.median(t_o) / statistics.median(t_r), 2), "target": 1.3,
                            "note": "recommend() adds seen-item exclusion, catalogue alignment, id frames and fallback/padding checks"}
    print("als", res["recommend_als"], flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2, default=str))
    print("wrote", RESULTS)


if __name__ == "__main__":
    main()
