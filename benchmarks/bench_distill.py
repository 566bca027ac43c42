"""Distilled students against their teacher: share of the teacher's lift kept, encode speed-up, training time.

Reads a lake where a window was evaluated with the teacher and the students among the encoders, e.g.

    recsys-assets demo --lake L --end 1998-04-19 --days 7 --encoders mpnet-base,distill-mpnet,distill-als,tfidf
    .venv/bin/python benchmarks/bench_distill.py --lake L [--speed] [--out DIR]

and prints three tables:

1. lifts: the primary cells (``lib/evaluation/headline.py``: ranker vs no text and vs TF-IDF, content
   arm vs TF-IDF, on the cold-item cell and the new-user cell, recall@20) of the latest pooled window
   of ``reports.cold_start_lift_rollup``, for the teacher and each student, and each student's share
   of the teacher's lift (``student lift / teacher lift`` over the same baseline; printed only where
   the teacher's lift CI is above 0, as a share of a lift that may be zero means nothing);
2. training: per student and cutoff, items, seconds, validation MSE / cosine / R^2 before training
   (untrained body + ridge head) and after (from the per-day records of the window's nights);
3. speed (``--speed``): texts/s of the teacher, each student and MiniLM-L6 on the catalogue's item
   texts, fp32, batch 64, no cache, in one process, rounds interleaved (median of ``--rounds``);
   speed-up = student texts/s / teacher texts/s, both measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import polars as pl  # noqa: E402

from recsys_assets.lib.evaluation.headline import DEFAULT_PRIMARY_ENDPOINTS, LM  # noqa: E402
from recsys_assets.lib.evaluation.warehouse import Warehouse  # noqa: E402
from recsys_assets.lib.features.distill import STUDENTS, record_path  # noqa: E402
from recsys_assets.lib.features.encoders import EncoderConfig, get_encoder  # noqa: E402
from recsys_assets.lib.features.text import ItemTextConfig, compose_item_texts  # noqa: E402
from recsys_assets.lib.ingest.catalog import read_catalog  # noqa: E402
from recsys_assets.lib.lake import Lake  # noqa: E402


def lift_table(lake: Lake, teacher: str, students: list[str]) -> pl.DataFrame:
    wh = Warehouse(lake.warehouse)
    window = wh.query("SELECT max(window_end) AS e FROM reports.cold_start_lift_rollup")["e"][0]
    start = wh.query("SELECT min(window_start) AS s FROM reports.cold_start_lift_rollup WHERE window_end = ?", [window])["s"][0]
    rollup = wh.query("SELECT * FROM reports.cold_start_lift_rollup WHERE window_end = ? AND window_start = ?", [window, start])
    rows = []
    for enc in [teacher, *students]:
        for e in DEFAULT_PRIMARY_ENDPOINTS:
            arm, base = e.arm.replace(LM, enc), e.baseline_arm.replace(LM, enc)
            cell = rollup.filter(
                (pl.col("arm") == arm) & (pl.col("baseline_arm") == base) & (pl.col("scope") == e.scope)
                & (pl.col("segment_kind") == e.segment_kind) & (pl.col("segment") == e.segment)
                & (pl.col("metric") == e.metric) & (pl.col("k") == e.k)
            )
            for r in cell.iter_rows(named=True):
                rows.append({
                    "window": f"{start}..{window}", "protocol": r["protocol"], "endpoint": e.name.replace("lm_", "enc_"),
                    "encoder": enc, "value": r["value"], "baseline_value": r["baseline_value"], "abs_lift": r["abs_lift"],
                    "ci_low": r["ci_low"], "ci_high": r["ci_high"], "n_users": r["n_users"], "flag": r["flag"],
                })
    frame = pl.DataFrame(rows)
    if frame.is_empty():
        return frame
    t = frame.filter(pl.col("encoder") == teacher).select("protocol", "endpoint", pl.col("abs_lift").alias("teacher_lift"), pl.col("ci_low").alias("teacher_ci_low"))
    frame = frame.join(t, on=["protocol", "endpoint"], how="left").with_columns(
        share_of_teacher=pl.when((pl.col("encoder") != teacher) & (pl.col("teacher_ci_low") > 0))
        .then(pl.col("abs_lift") / pl.col("teacher_lift"))
        .otherwise(None)
    )
    return frame.drop("teacher_lift", "teacher_ci_low").sort("protocol", "endpoint", "encoder")


def training_table(lake: Lake, days: list) -> pl.DataFrame:
    rows, seen = [], set()
    for name in STUDENTS:
        for day in days:
            path = record_path(lake.cache, name, day)
            if not path.exists():
                continue
            rec = json.loads(path.read_bytes())
            key = (name, rec["input_fingerprint"])
            if key in seen:
                continue
            seen.add(key)
            rep = rec["report"]
            rows.append({
                "student": name, "cutoff": rec["cutoff"], "nights_using_it": sum(
                    1 for d in days if record_path(lake.cache, name, d).exists()
                    and json.loads(record_path(lake.cache, name, d).read_bytes())["input_fingerprint"] == rec["input_fingerprint"]
                ),
                "items": rec["n_items"], "params": rep["params"], "trained_params": rep.get("trained_params"), "dim": rep["dim"],
                "epochs": rep["epochs"], "train_s": rep["seconds"],
                "val_mse_before": rep["before"]["mse"], "val_mse_after": rep["after"]["mse"],
                "val_cos_before": rep["before"]["cosine"], "val_cos_after": rep["after"]["cosine"],
                "val_r2_before": rep["before"]["r2"], "val_r2_after": rep["after"]["r2"],
                "files_hash": rec["files_hash"][:12],
            })
    return pl.DataFrame(rows)


def speed_table(lake: Lake, teacher: str, students: list[str], day, rounds: int) -> pl.DataFrame:
    items = read_catalog(lake, "items")
    texts = compose_item_texts(items, ItemTextConfig())
    cfg = EncoderConfig(batch_size=64, device="cpu")
    names = [teacher, *students, "minilm-l6"]
    encoders = {n: get_encoder(n, cfg, cache_dir=lake.cache, day=day) for n in names}
    for enc in encoders.values():  # warm-up (first-call allocations)
        enc.encode(texts[:64])
    times: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(rounds):
        for n in names:
            t0 = time.perf_counter()
            encoders[n].encode(texts)
            times[n].append(time.perf_counter() - t0)
    t_teacher = statistics.median(times[teacher])
    return pl.DataFrame([
        {
            "encoder": n, "params": encoders[n].n_params, "dim": encoders[n].dim, "texts": len(texts),
            "seconds_median": round(statistics.median(times[n]), 2), "texts_per_s": round(len(texts) / statistics.median(times[n]), 1),
            "speedup_vs_teacher": round(t_teacher / statistics.median(times[n]), 2),
            "seconds_all_rounds": [round(t, 2) for t in times[n]],
        }
        for n in names
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lake", required=True)
    ap.add_argument("--teacher", default="mpnet-base")
    ap.add_argument("--speed", action="store_true", help="also measure encode speed (minutes on 2 cores)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", help="folder to write the tables into (lifts.txt, training.txt, speed.txt)")
    args = ap.parse_args()
    lake = Lake.at(args.lake)
    students = list(STUDENTS)
    wh = Warehouse(lake.warehouse)
    days = wh.query("SELECT DISTINCT day FROM reports.cold_start_lift ORDER BY day")["day"].to_list()
    nights = lake.event_days()
    first = days[0] if days else None
    all_nights = [d for d in nights if first is None or d <= days[-1]]
    out = Path(args.out) if args.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=250, tbl_hide_dataframe_shape=True, float_precision=4):
        tables = [("lifts", lift_table(lake, args.teacher, students)), ("training", training_table(lake, all_nights))]
        if args.speed:
            tables.append(("speed", speed_table(lake, args.teacher, students, days[-1], args.rounds)))
        for name, table in tables:
            text = f"{name}:\n{table}\n"
            print(text)
            if out:
                (out / f"{name}.txt").write_text(text)


if __name__ == "__main__":
    main()
