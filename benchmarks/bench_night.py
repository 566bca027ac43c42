"""One nightly partition, asset by asset: wall time of each asset of a ``day_job`` run vs raw library calls.

1. ``day_job`` for ``--day`` through Dagster in-process (the way the nightly job and the demo
   run it); per asset: STEP_START -> STEP_SUCCESS from the run's event log.
2. The same work as plain library calls on the same inputs (the function each asset calls,
   with its reads and writes), timed block by block, no Dagster.

The lake must already hold the published events (``recsys-assets ingest``) and, so that the
embedding cache is warm as it is on any night after the first, a previous run of that day
or of a later one. Both passes use the same lake and rewrite the same artifacts (reruns are
byte-identical). Prints a table and writes ``benchmarks/results/night.json``.

    .venv/bin/python benchmarks/bench_night.py --lake /tmp/lake1m --day 2000-11-20 [--order raw,dagster]

Timings on a shared machine are noisy: the ratio of the two passes, measured in the same
run, is the number to compare; the 1-minute load average is printed with them.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from datetime import date  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "night.json"
ASSETS = (
    "item_embeddings", "als_model", "content_to_cf", "user_profiles", "candidates", "ranker_examples", "ranker_dataset",
    "rankers", "recommendations", "cold_start_eval", "cold_start_lift", "lift_rollup",
)


def dagster_pass(lake_root: str, day: date, models_config: dict | None = None) -> tuple[dict[str, float], float]:
    """Per-asset seconds of one day_job run (event-log timestamps) and the run's wall time."""
    import dagster as dg

    from recsys_assets import runner

    runner.quiet_dagster()
    runner.use_lake(lake_root)
    inst = dg.DagsterInstance.ephemeral()
    t0 = time.perf_counter()
    resources = {"models": {"config": models_config}} if models_config else None
    result = runner.run_job("day_job", inst, partition_key=day.isoformat(), run_config_resources=resources)
    wall = time.perf_counter() - t0
    out = {k: end - a for k, (a, end, ok) in runner.step_spans(inst, result.run_id).items() if ok}
    return out, wall


CPU: dict[str, float] = {}
"""CPU seconds (this process, all threads) per asset of the last raw pass: on a shared machine the
wall time stretches with the load, CPU time much less (1-thread work: CPU = idle-machine wall)."""


@contextmanager
def _timed(out: dict, key: str):
    t0, c0 = time.perf_counter(), time.process_time()
    yield
    out[key] = out.get(key, 0.0) + time.perf_counter() - t0
    CPU[key] = CPU.get(key, 0.0) + time.process_time() - c0


class RawNight:
    """The library calls of each asset of one night (same reads, computations and writes), no Dagster.

    One method per asset, named like it; ``run(assets)`` calls them in graph order and
    returns seconds per asset.
    """

    def __init__(self, lake_root: str, day: date, models_config: dict | None = None) -> None:
        from recsys_assets.defs.resources import ModelsResource
        from recsys_assets.lib.lake import Lake

        self.models = ModelsResource(**(models_config or {}))
        self.lake, self.cfg, self.day = Lake.at(lake_root), self.models.feature_config(), day
        self.lm = self.cfg.lm_encoders

    def _catalogs(self):
        from recsys_assets.lib.ingest.catalog import read_catalog

        return read_catalog(self.lake, "items"), read_catalog(self.lake, "users")

    def _snapshot(self):
        from recsys_assets.lib.day import DaySnapshot

        return DaySnapshot.of(self.lake, self.day, self._catalogs()[0], self.cfg)

    def _views(self):
        return self._snapshot().views()

    def _rcfg(self):
        from recsys_assets.lib.ranking.nightly import ranking_config

        return ranking_config(self.lake, self.day, self.cfg, **self.models.ranking_settings())

    def _report_hash(self) -> str:
        from recsys_assets.lib.evaluation.reporting import evaluation_config_hash

        return evaluation_config_hash(self.cfg, self._rcfg())

    def _fingerprints(self) -> dict[str, str]:
        return {k: str(v.get("fingerprint")) for k, v in self._metas().items()}

    def _metas(self) -> dict[str, dict]:
        from recsys_assets.lib.features.nightly import encoders_with_embeddings, load_item_embeddings

        return {n: load_item_embeddings(self.lake, self.day, n)[2] for n in encoders_with_embeddings(self.lake, self.day, self.cfg)}

    def item_embeddings(self) -> None:
        from recsys_assets.lib.features.nightly import compute_item_embeddings, save_item_embeddings

        items, _ = self._catalogs()
        for name in self.cfg.encoders:
            save_item_embeddings(self.lake, self.day, name, compute_item_embeddings(self.lake, items, self.day, name, self.cfg), self.cfg)

    def als_model(self) -> None:
        from recsys_assets.lib.features.nightly import fit_view_als

        for (p, s), view in self._views().items():
            fit_view_als(view, self.cfg)[0].save(self.lake.als_dir(self.day, p, s))

    def content_to_cf(self) -> None:
        from recsys_assets.lib.features.als import ALSModel
        from recsys_assets.lib.features.content_to_cf import ContentToCFError
        from recsys_assets.lib.features.nightly import encoders_with_embeddings, fit_view_c2cf, load_item_embeddings

        views = self._views()
        for name in encoders_with_embeddings(self.lake, self.day, self.cfg):
            ids, vecs, _ = load_item_embeddings(self.lake, self.day, name)
            for (p, s), view in views.items():
                try:
                    model = fit_view_c2cf(view, ids, vecs, ALSModel.load(self.lake.als_dir(self.day, p, s)), self.cfg)
                except ContentToCFError:
                    continue
                model.save(self.lake.c2cf_dir(self.day, p, s, name))

    def user_profiles(self) -> None:
        from recsys_assets.lib.features.nightly import available_items, build_view_profiles, encoders_with_embeddings, load_item_embeddings, write_npz

        items, users = self._catalogs()
        views = self._views()
        for name in encoders_with_embeddings(self.lake, self.day, self.cfg):
            ids, vecs, meta = load_item_embeddings(self.lake, self.day, name)
            for (p, s), view in views.items():
                uids, mat, stats = build_view_profiles(view, ids, vecs, users, name, self.cfg, self.lake, available_items(items, self.day))
                stats.update(config_hash=self.cfg.config_hash(), encoder_fingerprint=meta.get("fingerprint"))
                write_npz(self.lake.profiles_file(self.day, p, s, name), meta=stats, user_ids=np.asarray(uids, dtype=str), vectors=mat)

    def candidates(self) -> None:
        from recsys_assets.lib.ranking.nightly import load_snapshot_features, served_users, write_candidate_pool

        rcfg, m = self._rcfg(), self.models
        served = served_users(self._snapshot().events_of_day)
        for (p, s), view in self._views().items():
            if s == "serve":
                feats = load_snapshot_features(self.lake, view, list(rcfg.encoders), self.cfg)
                write_candidate_pool(feats, served, rcfg, self.lake.recs_dir(self.day, p).joinpath("candidates.parquet"), m.thread_block_users(), m.block_threads)

    def ranker_examples(self) -> None:
        from recsys_assets.lib.ranking.nightly import build_night_examples

        rcfg = self._rcfg()
        events = self._snapshot().events_before
        for (p, s), view in self._views().items():
            if s == "train":
                build_night_examples(self.lake, view, events, self.cfg, rcfg, self.models.thread_block_users(), self.models.block_threads)

    def ranker_dataset(self) -> None:
        from recsys_assets.lib.ranking.nightly import build_ranker_datasets

        build_ranker_datasets(self.lake, self.day, self.cfg.protocol.protocols, self._rcfg(), self.models.block_threads)

    def rankers(self) -> None:
        from recsys_assets.lib.ranking.nightly import train_rankers

        train_rankers(self.lake, self.day, self.cfg.protocol.protocols, self._rcfg(), self.models.block_threads)

    def recommendations(self) -> None:
        from recsys_assets.lib.ranking.nightly import day_truth, load_rankers, load_snapshot_features, serve_day, served_users

        rcfg = self._rcfg()
        day_events = self._snapshot().events_of_day
        served = served_users(day_events)
        for (p, s), view in self._views().items():
            if s == "serve":
                feats = load_snapshot_features(self.lake, view, list(rcfg.encoders), self.cfg)
                serve_day(self.lake, feats, served, day_truth(day_events, view, self.cfg), load_rankers(self.lake, self.day, p, rcfg), rcfg, self.models.block_threads, self.models.thread_block_users())

    def cold_start_eval(self) -> None:
        from recsys_assets.lib.evaluation.daily import evaluate_protocol
        from recsys_assets.lib.evaluation.evaluate import arm_metrics_table
        from recsys_assets.lib.evaluation.reporting import day_arm_metrics, encoder_cost_rows, open_warehouse, save_eval

        day_events = self._snapshot().events_of_day
        pus, sts = [], []
        for (p, s), view in self._views().items():
            if s == "serve":
                pu, st, _ = evaluate_protocol(self.lake, view, day_events, self.cfg)
                pus.append(pu)
                sts.append(st)
        pu, st = pl.concat(pus), pl.concat(sts)
        save_eval(self.lake, self.day, [pu], st, config_hash=self._report_hash())
        wh = open_warehouse(self.lake)
        wh.replace_partition("arm_metrics", day_arm_metrics(arm_metrics_table(pu), self.day, self._report_hash(), self._fingerprints()), {"day": self.day})
        cost = encoder_cost_rows(self.day, self._metas())
        if cost.height:
            wh.replace_partition("encoder_cost", cost, {"day": self.day})

    def cold_start_lift(self) -> None:
        from recsys_assets.lib.evaluation.lift import LiftConfig
        from recsys_assets.lib.evaluation.reporting import day_report, open_warehouse

        rows, _ = day_report(self.lake, self.day, self.lm, LiftConfig(n_boot=self.models.n_boot), self._report_hash(), self._fingerprints())
        open_warehouse(self.lake).replace_partition("cold_start_lift", rows, {"day": self.day})

    def lift_rollup(self) -> None:
        from recsys_assets.lib.evaluation.lift import LiftConfig
        from recsys_assets.lib.evaluation.reporting import publish_window, rollup_report

        window = rollup_report(self.lake, self.day, self.models.rollup_days, self.lm, LiftConfig(n_boot=self.models.n_boot), self._report_hash(), self._fingerprints())
        publish_window(self.lake, self.day, window)

    def run(self, assets=ASSETS) -> dict[str, float]:
        t: dict[str, float] = {}
        for a in assets:
            with _timed(t, a):
                getattr(self, a)()
        return t


def raw_pass(lake_root: str, day: date, models_config: dict | None = None) -> dict[str, float]:
    return RawNight(lake_root, day, models_config).run()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lake", required=True)
    ap.add_argument("--day", type=date.fromisoformat, default=date(2000, 11, 20))
    ap.add_argument("--order", default="raw,dagster", help="passes to run, in this order")
    ap.add_argument(
        "--ranker-prior-profile-new", type=float, default=None, metavar="B",
        help="ModelsResource.ranker_prior_profile_new for both passes (as `recsys-assets demo --ranker-prior-profile-new`)",
    )
    args = ap.parse_args()
    models_config = {"ranker_prior_profile_new": args.ranker_prior_profile_new} if args.ranker_prior_profile_new is not None else None
    passes: dict[str, dict[str, float]] = {}
    walls: dict[str, float] = {}
    loads: dict[str, float] = {}
    cpu_totals: dict[str, float] = {}
    from recsys_assets.lib.day import clear_cache

    for name in args.order.split(","):
        clear_cache()  # each pass reads the day's events itself: no pass rides on the other's snapshot
        t0, c0 = time.perf_counter(), time.process_time()
        if name == "dagster":
            passes[name], walls[name] = dagster_pass(args.lake, args.day, models_config)
        elif name == "raw":
            passes[name] = raw_pass(args.lake, args.day, models_config)
            walls[name] = time.perf_counter() - t0
        else:
            raise SystemExit(f"unknown pass {name!r}: use raw and/or dagster")
        cpu_totals[name] = time.process_time() - c0
        loads[name] = os.getloadavg()[0]
    rows = []
    # The Dagster pass also times assets the raw pass has no call for (the study's students and
    # encoder_study, which skip unless configured): listed after ASSETS, with no raw figure.
    extra = sorted({a for p in passes.values() for a in p} - set(ASSETS))
    for a in (*ASSETS, *extra):
        row = {"asset": a}
        for name in passes:
            row[f"{name}_s"] = passes[name].get(a)
        if "raw" in passes and "dagster" in passes and passes["raw"].get(a):
            row["dagster/raw"] = passes["dagster"].get(a, float("nan")) / passes["raw"][a]
        if "raw" in passes:
            row["raw_cpu_s"] = CPU.get(a)
        rows.append(row)
    total = {"asset": "TOTAL (sum of assets)"} | {f"{n}_s": sum(v for v in passes[n].values()) for n in passes}
    if "raw" in passes:
        total["raw_cpu_s"] = sum(CPU.values())
    wall = {"asset": "WALL (whole pass)"} | {f"{n}_s": walls[n] for n in passes}
    cpu = {"asset": "CPU (whole pass, process time)"} | {f"{n}_s": cpu_totals[n] for n in passes}
    table = pl.DataFrame(rows + [total, wall, cpu], infer_schema_length=None)
    with pl.Config(tbl_rows=-1, float_precision=2, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
        print(f"Night {args.day}, lake {args.lake}; 1-min load average after each pass: {loads}; cores: {os.cpu_count()}")
        print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps({"day": str(args.day), "lake": args.lake, "machine": platform.platform(), "cpus": os.cpu_count(), "load_avg_1m": loads, "rows": table.to_dicts()}, indent=2, default=str)
    )


if __name__ == "__main__":
    main()
