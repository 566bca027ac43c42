"""``recsys-assets study``: the whole study on one dataset (docs/study.md), printed as short tables.

1. ingest the dataset (as ``ingest``; ``--skip-ingest`` uses the lake's events);
2. choose the window (``--end``/``--days``, else the densest window of the data);
3. plan: the ladder's encoders that load here, distilled students, the fusion variants;
4. measure each encoder's cost once, encoding the catalogue into the lake's embedding cache
   (the nightly runs then encode nothing twice);
5. run ``day_job`` for every day of the window with all of them switched on (the
   ``encoder_study`` asset writes ``reports.encoder_study``, ``reports.fusion_ablation`` and
   ``reports.new_user_text`` for the window ending each day);
6. print the last window's tables and how long each stage took.
"""

from __future__ import annotations

import sys
import time
from datetime import date, timedelta

import polars as pl

from recsys_assets.lib.errors import RecsysError
from recsys_assets.lib.study.answer import fmt_ci as _fmt_ci

DEFAULT_DAYS = {"ml-100k": 7, "ml-1m": 3, "synthetic": 5}
"""Evaluated days by dataset: ml-1m's dense days each carry thousands of events (a few are enough)."""


def _table(rows: list[dict]) -> str:
    if not rows:
        return "(no rows)"
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=250, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True, fmt_str_lengths=60):
        return str(pl.DataFrame(rows))


def encoder_study_text(df: pl.DataFrame) -> str:
    """The ladder as a short table: cost, then lift over no text / TF-IDF (ranker) and content vs TF-IDF."""
    rows = []
    for r in df.sort("protocol", "cell", "is_lm", "params", "encoder", nulls_last=True).iter_rows(named=True):
        rows.append({
            "protocol": r["protocol"], "cell": r["cell"], "encoder": r["encoder"],
            "params": f"{r['params'] / 1e6:.1f}M" if r["params"] and r["params"] >= 1e5 else (f"{r['params']:,}" if r["params"] else "-"),
            "dim": r["dim"], "texts/s": f"{r['texts_per_s']:.0f}" if r["texts_per_s"] else "-",
            "catalogue s": f"{r['catalogue_seconds']:.2f}" if r["catalogue_seconds"] is not None else "-",
            "vectors MB": f"{r['vector_bytes'] / 1e6:.2f}" if r["vector_bytes"] else "-",
            f"{r['metric']}@{r['k']}": f"{r['value']:.4f}" if r["value"] is not None else "-",
            "vs no text [95% CI]": _fmt_ci(r["lift_vs_no_text"], r["ci_low_vs_no_text"], r["ci_high_vs_no_text"]),
            "vs tfidf [95% CI]": _fmt_ci(r["lift_vs_tfidf"], r["ci_low_vs_tfidf"], r["ci_high_vs_tfidf"]),
            "content vs tfidf": _fmt_ci(r["content_lift_vs_tfidf"], r["content_ci_low_vs_tfidf"], r["content_ci_high_vs_tfidf"]),
            "n": r["n_users"], "teacher share": f"{r['share_of_teacher_lift']:.2f}" if r["share_of_teacher_lift"] is not None else "-",
            "pareto": "*" if r["pareto"] else "",
        })
    return _table(rows)


def fusion_text(df: pl.DataFrame) -> str:
    rows = []
    for r in df.sort("protocol", "cell", "step").iter_rows(named=True):
        rows.append({
            "protocol": r["protocol"], "cell": r["cell"], "variant": r["variant"], "inputs": r["inputs"], "encoder": r["encoder"] or "-",
            f"{r['metric']}@{r['k']}": f"{r['value']:.4f}" if r["value"] is not None else "-",
            "vs no text [95% CI]": _fmt_ci(r["lift_vs_no_text"], r["ci_low_vs_no_text"], r["ci_high_vs_no_text"]),
            "vs previous [95% CI]": (f"{r['previous_variant']}: " + _fmt_ci(r["lift_vs_previous"], r["ci_low_vs_previous"], r["ci_high_vs_previous"])) if r["lift_vs_previous"] is not None else "-",
            "n": r["n_users"], "note": r["note"] or "",
        })
    return _table(rows)


def new_user_text(df: pl.DataFrame) -> str:
    rows = []
    for r in df.sort("protocol", "baseline_arm", "arm").iter_rows(named=True):
        rows.append({
            "protocol": r["protocol"], "arm": r["arm"], "baseline": r["baseline_arm"],
            f"{r['metric']}@{r['k']}": f"{r['value']:.4f}" if r["value"] is not None else "-",
            "baseline value": f"{r['baseline_value']:.4f}" if r["baseline_value"] is not None else "-",
            "lift [95% CI]": _fmt_ci(r["abs_lift"], r["ci_low"], r["ci_high"]), "n": r["n_users"], "flag": r["flag"] or "",
        })
    return _table(rows)


def answer_text(answer: pl.DataFrame) -> str:
    """The answer table as aligned plain lines (answers are sentences: a grid would truncate them)."""
    rows = answer.rows()
    if not rows:
        return "(no rows)"
    wq = max(len(q) for q, _, _ in rows)
    ww = max(len(w) for _, w, _ in rows)
    return "\n".join(f"  {q.ljust(wq)}  {w.ljust(ww)}  {a}" for q, w, a in rows)


def latest_window_end(lake) -> date:
    """The last window end the study wrote (``--tables-only`` without ``--end``)."""
    from recsys_assets.lib.evaluation.warehouse import Warehouse

    ends = Warehouse(lake.warehouse).query("SELECT max(window_end) AS e FROM reports.encoder_study")
    if ends.is_empty() or ends["e"][0] is None:
        raise RecsysError(f"reports.encoder_study in {lake.warehouse} is empty: run the study first")
    return ends["e"][0]


def print_study(lake, end: date, out=None) -> None:
    """The study of the window ending ``end``, from the warehouse: the answer first, then the three tables."""
    from recsys_assets.lib.evaluation.warehouse import Warehouse
    from recsys_assets.lib.study.answer import study_answer

    out = out or sys.stdout
    wh = Warehouse(lake.warehouse)
    es = wh.query("SELECT * FROM reports.encoder_study WHERE window_end = ?", [end])
    fu = wh.query("SELECT * FROM reports.fusion_ablation WHERE window_end = ?", [end])
    nu = wh.query("SELECT * FROM reports.new_user_text WHERE window_end = ?", [end])
    if es.is_empty():
        raise RecsysError(f"reports.encoder_study has no rows for the window ending {end}: run the study's days first")
    window = f"{es['window_start'].min()}..{end} ({es['days_pooled'].max()} evaluated days pooled)"
    print(f"The answer, window {window} ({es['metric'][0]}@{es['k'][0]}, exploratory 95% CIs; details in the tables below):", file=out)
    print(answer_text(study_answer(es, fu, nu)), file=out)
    print(f"\nEncoder study, window {window}: ranker_<encoder> lift over ranker_no_text and ranker_tfidf, content_<encoder> over content_tfidf", file=out)
    print("(exploratory 95% CIs, same two-way bootstrap as the lift tables; cost = one cold encode of the catalogue on this machine; * = Pareto front of catalogue seconds vs lift over no text)", file=out)
    print(encoder_study_text(es), file=out)
    print(f"\nFusion ablation (which item inputs carry the lift), window {window}:", file=out)
    print(fusion_text(fu), file=out)
    print(f"\nNew users' profile text (new-user cell, full catalogue), window {window}:", file=out)
    print(new_user_text(nu), file=out)


def cmd_study(args) -> int:
    from recsys_assets import runner
    from recsys_assets.cli_ingest import check_demo_window, cmd_ingest
    from recsys_assets.cli_reports import SHORT_HISTORY_DAYS, densest_window
    from recsys_assets.lib.features.nightly import available_items
    from recsys_assets.lib.ingest.catalog import read_catalog
    from recsys_assets.lib.study.cost import machine_words, measure_encoder_cost
    from recsys_assets.lib.study.plan import StudyConfig, plan_study

    if args.tables_only:
        lake = runner.use_lake(args.lake)
        print_study(lake, date.fromisoformat(args.end) if args.end else latest_window_end(lake))
        return 0
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if not args.skip_ingest:
        rc = cmd_ingest(args)
        if rc:
            return rc
    timings["ingest"] = time.perf_counter() - t0
    runner.quiet_dagster()
    say = runner.Progress()
    lake = runner.use_lake(args.lake)
    n_days = args.days or DEFAULT_DAYS.get(args.source, 5)
    days = lake.event_days()
    counts = {d: n for d, n in lake.read_events().group_by(pl.col("ts").dt.date().alias("d")).len().iter_rows()}
    if args.end:
        end = date.fromisoformat(args.end)
        start = end - timedelta(days=n_days - 1)
        check_demo_window(days, start, end)
    else:
        try:
            start, end = densest_window(days, counts, n_days, args.min_history_days)
        except RecsysError:
            start, end = densest_window(days, counts, n_days, SHORT_HISTORY_DAYS)
    from recsys_assets.defs.resources import ModelsResource

    models = ModelsResource(precision=args.precision)
    fcfg = models.feature_config()
    items = read_catalog(lake, "items")
    t = time.perf_counter()
    study = StudyConfig(fusion_variants=() if args.no_fusion else StudyConfig().fusion_variants)
    plan = plan_study(available_items(items, start), study, fcfg.text, fcfg.encoder, cache_dir=lake.cache)
    encoders = [e.strip() for e in args.encoders.split(",")] if args.encoders else list(plan.encoders)
    say(f"study of {args.source}: {len(encoders)} encoders ({', '.join(encoders)}), window {start}..{end} ({n_days} days)")
    for name, why in plan.skipped:
        say(f"skipped {name}: {why}")
    for f in plan.fusion:
        say(f"fusion variant {f.variant} ({f.inputs}): {f.encoder or 'not measurable'}{' - ' + f.note if f.note else ''}")
    from dataclasses import replace

    fcfg = replace(fcfg, encoders=tuple(encoders))
    say(f"measuring encoder cost on {machine_words()} (catalogue of {start})")
    from recsys_assets.lib.features.encoders import is_per_snapshot

    for name in encoders:
        if is_per_snapshot(name):
            say(f"  {name}: trained per snapshot, measured by the nightly encoder_study asset")
            continue
        c = measure_encoder_cost(lake, items, start, name, fcfg)
        say(f"  {name}: {c.texts} texts in {c.seconds:.2f} s ({c.texts_per_s:.0f} texts/s), {c.params:,} params, dim {c.dim}")
    timings["plan + encoder cost"] = time.perf_counter() - t
    wanted = [start + timedelta(days=i) for i in range(n_days)]
    inst = runner.instance()
    resource_cfg = {"models": {"config": {"encoders": ",".join(encoders), "rollup_days": n_days, "precision": args.precision}}}
    t = time.perf_counter()
    from recsys_assets.lib.progress import progress

    for day in progress(wanted, desc=f"day_job {start}..{end}", unit="day", log=say):
        runner.run_job("day_job", inst, partition_key=day.isoformat(), run_config_resources=resource_cfg)
    timings[f"day_job x {n_days}"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    print()
    print_study(lake, end)
    print("\nTimings (wall seconds on " + machine_words() + ", shared machine): " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    print(f"DuckDB: {lake.warehouse} (reports.encoder_study, reports.fusion_ablation, reports.new_user_text)\nHTML report: {lake.reports.joinpath('index.html')}")
    return 0


def add_command(sub, add_lake) -> None:
    from recsys_assets.cli_ingest import SOURCES

    p = sub.add_parser("study", help="the study: encoder ladder, fusion ablation and new users' profile text on one dataset, printed as tables")
    p.add_argument("--dataset", dest="source", choices=SOURCES, default="ml-100k")
    p.add_argument("--path", help="folder of GroupLens original files (for --dataset grouplens)")
    p.add_argument("--days", type=int, default=None, help="evaluated days (default: ml-100k 7, ml-1m 3, synthetic 5)")
    p.add_argument("--end", help="last evaluated day (default: the end of the densest window of the data)")
    p.add_argument("--min-history-days", type=int, default=60, help="history required before the first evaluated day")
    p.add_argument("--encoders", help="comma-separated encoders instead of the planned ladder + variants")
    p.add_argument("--no-fusion", action="store_true", help="leave out the fusion ablation's text variants")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="neural encoders' precision (bf16 autocast where supported)")
    p.add_argument("--synthetic-events", type=int, default=200_000)
    p.add_argument("--text-signal", type=float, default=1.0)
    p.add_argument("--image-dim", type=int, default=0, help="synthetic: items carry a precomputed image vector of this length (0 = none)")
    p.add_argument("--image-signal", type=float, default=0.0, help="synthetic: topic signal of the image vectors, 0..1 (expected same-topic cosine)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--prune", action="store_true", help=argparse_suppress())
    p.add_argument("--skip-ingest", action="store_true", help="use the events already in the lake")
    p.add_argument("--tables-only", action="store_true", help="run nothing: print the answer and tables of the study already in the lake (window ending --end, else the latest)")
    add_lake(p)
    p.set_defaults(func=cmd_study)


def argparse_suppress():
    import argparse

    return argparse.SUPPRESS
