"""The whole day graph (day_job: features -> ranking -> reports) on a small synthetic world.

Ingest as the CLI does it (catalog_job, then one events_job run over the whole
range), then day_job for two consecutive days with TF-IDF only (no neural model:
fast), then one day again. Checks the contracts the analysts rely on: full
recommendation lists, the DuckDB report rows and their provenance columns,
idempotent re-runs, the rollup + HTML report, the blocking leakage checks and
the analyst views.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from recsys_assets.defs.resources import IngestResource, LakeResource, ModelsResource
from recsys_assets.lib.evaluation.reporting import open_warehouse
from recsys_assets.lib.ranking.arm_spec import encoder_of
from recsys_assets.lib.evaluation.sql_files import view_names
from recsys_assets.lib.ingest.catalog import read_catalog
from recsys_assets.lib.ingest.events import read_manifest
from recsys_assets.lib.ingest.synthetic import SyntheticConfig, generate_synthetic_world
from recsys_assets.lib.lake import LAKE_ENV_VAR, Lake, read_parquet
from recsys_assets.lib.snapshot import day_start

WORLD = SyntheticConfig(n_users=300, n_items=200, n_events=12_000, n_topics=5, n_days=14, start_day="2024-03-01", seed=5)
K = 20
PROTOCOLS = ("temporal", "item_holdout")
MODELS = dict(encoders="tfidf", n_boot=200, label_window_days=5, als_factors=8, als_iterations=5, rollup_days=7)
DAYS = [WORLD.start + timedelta(days=WORLD.n_days - 2), WORLD.start + timedelta(days=WORLD.n_days - 1)]
# The report contract: never NULL on a cold_start_lift row (encoder_fingerprint: on encoder arms).
LIFT_NOT_NULL = ("day", "protocol", "scope", "arm", "baseline_arm", "segment_kind", "segment", "metric", "k", "n_users", "config_hash", "code_version")
LIFT_KEY = ("day", "protocol", "scope", "arm", "baseline_arm", "segment_kind", "segment", "metric", "k")


def _defs():
    from recsys_assets.definitions import defs

    return defs


def _resources(lake: Lake) -> dict:
    return {"lake": LakeResource(root=str(lake.root.path)), "ingest": IngestResource(), "models": ModelsResource(**MODELS)}


def _run(lake: Lake, job: str, **kw) -> dg.ExecuteInProcessResult:
    result = _defs().resolve_job_def(job).execute_in_process(resources=_resources(lake), raise_on_error=False, **kw)
    if not result.success:
        failures = [
            f"{e.step_key}: {e.step_failure_data.error.cause.message if e.step_failure_data.error.cause else e.step_failure_data.error.message}"
            for e in result.all_events
            if e.is_step_failure
        ]
        pytest.fail(f"{job} {kw.get('partition_key', '')} failed: {failures}")
    return result


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {f"{e.asset_key.to_user_string()}:{e.check_name}": e.passed for e in result.get_asset_check_evaluations()}


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    """Ingest, then day_job for DAYS[0] and DAYS[1]; returns the lake, the two day results and timings."""
    mp = pytest.MonkeyPatch()
    mp.delenv(LAKE_ENV_VAR, raising=False)
    mp.delenv("DAGSTER_HOME", raising=False)
    lake = Lake.at(tmp_path_factory.mktemp("day_graph") / "lake")
    timings = {}
    t = time.perf_counter()
    generate_synthetic_world(lake, WORLD)
    _run(lake, "catalog_job")
    days = sorted({d for ds in read_manifest(lake)["days"].to_list() for d in ds})
    tags = {"dagster/asset_partition_range_start": days[0].isoformat(), "dagster/asset_partition_range_end": days[-1].isoformat()}
    ingest = _run(lake, "events_job", tags=tags)
    timings["ingest"] = time.perf_counter() - t
    results = {}
    for d in DAYS:
        t = time.perf_counter()
        results[d] = _run(lake, "day_job", partition_key=d.isoformat())
        timings[str(d)] = time.perf_counter() - t
    yield {"lake": lake, "days": days, "ingest": ingest, "results": results, "timings": timings}
    mp.undo()


def test_ingest_published_every_day(graph):
    assert graph["days"][-1] == DAYS[-1] and graph["lake"].event_days() == graph["days"]
    assert _checks(graph["ingest"]) == {"events:events_expectations": True}


def test_every_arm_serves_k_items_to_every_served_user(graph):
    lake: Lake = graph["lake"]
    items = read_catalog(lake, "items")
    for d in DAYS:
        events = lake.read_events()
        served = sorted(events.filter(pl.col("ts").dt.date() == d)["user_id"].unique().to_list())
        assert len(served) > 50
        seen = events.filter(pl.col("ts") < day_start(d)).select("user_id", "item_id").unique()
        n_catalog = items.filter(pl.col("first_seen_day").is_null() | (pl.col("first_seen_day") <= d)).height
        allowed = (
            pl.DataFrame({"user_id": served})
            .join(seen.group_by("user_id").len(), on="user_id", how="left")
            .select("user_id", expected=pl.min_horizontal(pl.lit(K), pl.lit(n_catalog) - pl.col("len").fill_null(0)))
        )
        for protocol in PROTOCOLS:
            recs = read_parquet(lake.recs_dir(d, protocol).joinpath("recs.parquet"))
            arms = recs["arm"].unique().sort().to_list()
            assert {"popularity", "als", "content_tfidf", "ranker_no_text", "ranker_tfidf"} <= set(arms), arms
            # Every (arm, served user) pair: as many items as the catalogue allows, ranks 1..n, no repeat.
            grid = pl.DataFrame({"arm": arms}).join(allowed, how="cross")
            per = recs.group_by("arm", "user_id").agg(
                pl.len().alias("n"), pl.col("item_id").n_unique().alias("distinct"), pl.col("rank").min().alias("r0"), pl.col("rank").max().alias("r1")
            )
            got = grid.join(per, on=["arm", "user_id"], how="left")
            bad = got.filter((pl.col("n").fill_null(0) != pl.col("expected")) | (pl.col("distinct") != pl.col("n")) | (pl.col("r0") != 1) | (pl.col("r1") != pl.col("n")))
            assert bad.height == 0, f"{d} {protocol}: {bad.head(10)}"
            assert set(recs["user_id"].unique().to_list()) == set(served)
            # Nothing the user interacted with before D is recommended.
            assert recs.join(seen, on=["user_id", "item_id"], how="semi").height == 0, (d, protocol)


def test_leakage_checks_passed(graph):
    for d, result in graph["results"].items():
        checks = _checks(result)
        assert checks.get("ranker_examples:label_window_before_day") is True, (d, checks)
        assert checks.get("ranker_dataset:examples_before_day") is True, (d, checks)
        assert checks.get("cold_start_eval:leakage_audit") is True, (d, checks)


def test_every_ranker_arm_of_a_night_boosts_from_the_one_chosen_prior(graph):
    from recsys_assets.lib.ranking.nightly import load_rankers, ranking_config

    lake: Lake = graph["lake"]
    models = ModelsResource(**MODELS)
    for d, result in graph["results"].items():
        rcfg = ranking_config(lake, d, models.feature_config(), **models.ranking_settings())
        assert rcfg.prior_profile_new is None  # the default: left to each night's training frames
        meta = {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}["rankers"]
        for protocol in PROTOCOLS:
            rankers = load_rankers(lake, d, protocol, rcfg)
            choice = rankers["ranker_no_text"].meta["prior_choice"]
            # One choice, made on ranker_no_text's frame, shared by every arm: text arms differ by their features only.
            assert {a: m.meta["prior"] for a, m in rankers.items()} == {a: rankers["ranker_no_text"].meta["prior"] for a in rankers}
            assert all(m.meta["prior_choice"] == choice for m in rankers.values())
            assert rankers["ranker_no_text"].meta["prior"].get("profile_new", 0.0) == choice["chosen"]
            assert meta[f"{protocol}/prior_profile_new"].value == choice["chosen"]


def test_cold_start_lift_rows_for_both_days(graph):
    wh = open_warehouse(graph["lake"])
    rows = wh.query("SELECT * FROM reports.cold_start_lift ORDER BY day")
    assert sorted(set(rows["day"].to_list())) == DAYS
    for d in DAYS:
        day_rows = rows.filter(pl.col("day") == d)
        assert set(day_rows["protocol"].unique().to_list()) == set(PROTOCOLS), d
        assert set(day_rows["scope"].unique().to_list()) == {"full", "cold_only"}, d
        assert ("ranker_tfidf", "ranker_no_text") in set(zip(day_rows["arm"].to_list(), day_rows["baseline_arm"].to_list()))
    nulls = {c: rows[c].null_count() for c in LIFT_NOT_NULL}
    assert not any(nulls.values()), nulls
    enc_rows = rows.filter(pl.col("arm").map_elements(encoder_of, return_dtype=pl.String).is_not_null())
    assert enc_rows.height > 0 and enc_rows["encoder_fingerprint"].null_count() == 0
    assert set(enc_rows["encoder"].unique().to_list()) == {"tfidf"}
    # The fingerprint is the one item_embeddings recorded for that day.
    from recsys_assets.lib.features.nightly import load_item_embeddings

    for d in DAYS:
        fp = load_item_embeddings(graph["lake"], d, "tfidf")[2]["fingerprint"]
        assert set(enc_rows.filter(pl.col("day") == d)["encoder_fingerprint"].unique().to_list()) == {fp}
    assert (rows["n_users"] > 0).all()
    assert rows.select(LIFT_KEY).is_duplicated().sum() == 0
    # Cells with enough users carry a real CI around their lift.
    ok = rows.filter(pl.col("flag").is_null())
    assert ok.height > 0
    assert (ok["ci_low"] <= ok["abs_lift"] + 1e-12).all() and (ok["abs_lift"] <= ok["ci_high"] + 1e-12).all()


def test_rollup_report_and_views(graph):
    lake: Lake = graph["lake"]
    assert Path(lake.reports.joinpath("index.html").path).stat().st_size > 0
    wh = open_warehouse(lake)
    rollup = wh.query("SELECT * FROM reports.cold_start_lift_rollup WHERE window_end = ?", [DAYS[-1]])
    assert rollup.height > 0
    assert set(rollup["window_start"].to_list()) == {DAYS[0]}  # both evaluated days pooled
    warm = wh.query("SELECT * FROM reports.warmup_curve WHERE window_end = ?", [DAYS[-1]])
    assert warm.height > 0
    # The treatment check: every served ranker arm x (recall@20, ndcg@20) x protocol, vs the better baseline.
    check = wh.query("SELECT * FROM reports.ranker_check WHERE window_end = ?", [DAYS[-1]])
    rankers = {a for a in rollup["arm"].unique().to_list() if a.startswith("ranker_")} | {"ranker_no_text"}
    assert set(check["arm"]) == rankers and check.height == len(rankers) * 2 * check["protocol"].n_unique()
    assert set(check["best_baseline"]) <= {"popularity", "als"}
    assert set(check["status"]) <= {"above", "reaches", "short", "below", "too few"}
    names = view_names()
    assert len(names) == 5
    # One verdict per protocol x primary endpoint, for each day and for the pooled window.
    from recsys_assets.lib.evaluation.headline import HEADLINE_COLUMNS, VERDICTS, read_headline

    head = read_headline(lake.warehouse)
    assert head.columns == HEADLINE_COLUMNS and head.height > 0
    assert set(head["window_kind"]) == {"window"} and set(head["window_end"]) == {DAYS[-1]}
    assert set(head["verdict"]) <= set(VERDICTS)
    assert head.select("protocol", "endpoint").is_duplicated().sum() == 0
    days = read_headline(lake.warehouse, window_kind="day", latest=False)
    assert set(days["window_end"]) == set(DAYS)
    present = wh.query("SELECT table_name FROM information_schema.tables WHERE table_schema = 'reports' AND table_type = 'VIEW'")
    assert set(names) <= set(present["table_name"].to_list())
    for name in names:
        wh.query(f"SELECT * FROM reports.{name} LIMIT 5")  # queryable


def test_reports_part_by_part_equal_one_call_over_the_day(graph):
    """cold_start_lift and lift_rollup read and compute one (protocol, scope) part at a time: the rows are the
    bits one call over all of the day's (the window's) per-user and per-pair rows gives (Holm over
    the parts together: recsys_assets_tests/lib/evaluation/test_lift.py)."""
    from recsys_assets.lib.evaluation.lift import LiftConfig, comparisons_for, lift_rows, warmup_rows
    from recsys_assets.lib.evaluation.ranker_check import ranker_check_rows
    from recsys_assets.lib.evaluation.reporting import (
        day_report, load_arm_stats, load_eval_provenance, load_per_pair, load_per_user, pooled_window, ranked_items, report_parts, rollup_report,
    )

    lake, day, cfg = graph["lake"], DAYS[-1], LiftConfig(n_boot=MODELS["n_boot"])
    lm = ModelsResource(**MODELS).feature_config().lm_encoders
    assert len(report_parts(lake, [day])[0]) == 4  # the parts really split the day
    per_user = load_per_user(lake, day)
    comps = comparisons_for(per_user["arm"].unique().sort().to_list(), lm)
    whole = lift_rows(per_user, comps, cfg, per_pair=load_per_pair(lake, day), ranked_items=ranked_items(load_arm_stats(lake, day)))
    assert whole.height
    rows, _ = day_report(lake, day, lm, cfg, "h", {})
    assert rows.select(whole.columns).equals(whole)
    pooled, pairs = pooled_window(lake, DAYS)
    window = rollup_report(lake, day, MODELS["rollup_days"], lm, cfg, load_eval_provenance(lake, day)["config_hash"], {})
    assert window.days == DAYS
    pooled_rows = lift_rows(pooled, comps, cfg, per_pair=pairs)
    assert window.lift.select(pooled_rows.columns).equals(pooled_rows)
    warm = warmup_rows(pooled, comps, cfg)
    assert warm.height and window.warmup.select(warm.columns).equals(warm)
    assert window.ranker_check.equals(ranker_check_rows(pooled, cfg, DAYS[0], day, per_pair=pairs))


def _artifact_roots(lake: Lake) -> list:
    return [lake.models_dir(DAYS[0]), *(lake.recs_dir(DAYS[0], p) for p in PROTOCOLS)]


def _files(root) -> list:
    return sorted((p for p in root.rglob("*") if p.is_file()), key=str)


def test_rerunning_a_day_replaces_its_rows(graph):
    lake: Lake = graph["lake"]
    wh = open_warehouse(lake)
    count = "SELECT day, count(*) AS n FROM reports.cold_start_lift GROUP BY day ORDER BY day"
    before = wh.query(count)
    before_rows = wh.query("SELECT * FROM reports.cold_start_lift WHERE day = ?", [DAYS[0]])
    metrics_before = wh.query("SELECT count(*) AS n FROM reports.arm_metrics WHERE day = ?", [DAYS[0]])["n"][0]
    eval_files = ("per_user.parquet", "arm_stats.parquet", "per_pair.parquet", "provenance.json")
    eval_bytes = {f: lake.eval_dir(DAYS[0]).joinpath(f).read_bytes() for f in eval_files}
    # Every artifact of the partition: embeddings, ALS, content->CF, profiles, ranker data and models, recs.
    artifacts = {p: p.read_bytes() for root in _artifact_roots(lake) for p in _files(root)}
    assert any(p.name.startswith("embeddings") or "embedding" in str(p) for p in artifacts), sorted(map(str, artifacts))
    t = time.perf_counter()
    result = _run(lake, "day_job", partition_key=DAYS[0].isoformat())
    graph["timings"]["rerun"] = time.perf_counter() - t
    assert _checks(result)["cold_start_eval:leakage_audit"] is True
    after = wh.query(count)
    assert after.equals(before), (before, after)
    # An identical rerun writes the evaluation files byte for byte (sorted writes).
    for f, data in eval_bytes.items():
        assert lake.eval_dir(DAYS[0]).joinpath(f).read_bytes() == data, f
    # ... and every model and recommendation file (the embeddings keep the cost of the run that made them).
    assert sorted(map(str, artifacts)) == sorted(str(p) for root in _artifact_roots(lake) for p in _files(root))
    changed = [str(p) for p, data in artifacts.items() if p.read_bytes() != data]
    assert not changed, changed
    rows = wh.query("SELECT * FROM reports.cold_start_lift WHERE day = ?", [DAYS[0]])
    assert rows.select(LIFT_KEY).is_duplicated().sum() == 0
    # Same inputs, same seeds: the replaced rows carry the same numbers.
    key = list(LIFT_KEY)
    a, b = before_rows.sort(key), rows.sort(key)
    assert a.select(*key, "value", "baseline_value", "ci_low", "ci_high").equals(b.select(*key, "value", "baseline_value", "ci_low", "ci_high"))
    assert wh.query("SELECT count(*) AS n FROM reports.arm_metrics WHERE day = ?", [DAYS[0]])["n"][0] == metrics_before
    print("day graph timings (s):", {k: round(v, 1) for k, v in graph["timings"].items()})


def _night(graph, protocol: str, stage: str = "serve"):
    """What the per-protocol tests of the last day share: lake, day, configs, snapshot, the view and its features."""
    from types import SimpleNamespace

    from recsys_assets.defs.features.common import day_snapshot
    from recsys_assets.lib.ranking.nightly import load_snapshot_features, ranking_config

    lake: Lake = graph["lake"]
    day = DAYS[-1]
    models = ModelsResource(**MODELS)
    cfg = models.feature_config()
    rcfg = ranking_config(lake, day, cfg, **models.ranking_settings())
    snap = day_snapshot(lake, day, cfg)
    view = snap.views(stage)[(protocol, stage)]
    feats = load_snapshot_features(lake, view, list(rcfg.encoders), cfg)
    return SimpleNamespace(lake=lake, day=day, models=models, cfg=cfg, rcfg=rcfg, snap=snap, view=view, feats=feats)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_blocked_pool_and_evaluation_equal_one_block(graph, protocol, tmp_path):
    """candidates and cold_start_eval stream blocks of users (memory bounded by a block): blocks of 1
    and 2 users, one at a time or on threads, give the same candidates.parquet bytes and the same evaluation
    frames as one block of every user (and as the asset wrote), and the pool has the rows of the one-frame pool."""
    from recsys_assets.lib.evaluation.daily import evaluate_protocol_pairs
    from recsys_assets.lib.lake import write_parquet_atomic
    from recsys_assets.lib.ranking.nightly import candidate_pool, served_users, write_candidate_pool

    n = _night(graph, protocol)
    lake, day, cfg, rcfg, snap, view, feats = n.lake, n.day, n.cfg, n.rcfg, n.snap, n.view, n.feats
    users = served_users(snap.events_of_day)
    files = {}
    for size, threads in ((1, 1), (2, 1), (1, 2), (2, 3), (len(users), 1)):
        target = Lake.at(tmp_path / f"b{size}_{threads}").root.joinpath("candidates.parquet")
        counts = write_candidate_pool(feats, users, rcfg, target, block_users=size, threads=threads)
        files[size, threads] = target.read_bytes()
    assert len(set(files.values())) == 1
    files = {size: files[size, 1] for size in (1, 2, len(users))}
    asset_file = lake.recs_dir(day, protocol).joinpath("candidates.parquet")
    assert asset_file.read_bytes() == files[len(users)]
    whole = candidate_pool(feats, users, rcfg)
    assert read_parquet(asset_file).equals(whole) and counts["pairs"] == whole.height > len(users)
    # The evaluation: per-user metrics, arm stats (candidate recall included) and pairs, byte for byte.
    outs = {size: evaluate_protocol_pairs(lake, view, snap.events_of_day, cfg, block_users=size, threads=2 if size == 1 else 1) for size in (1, 2, None)}
    assert outs[None][3] > 2 and outs[None][0].height and outs[None][2].height
    assert "candidate_recall" in outs[None][1]["metric"].to_list()
    for size in (1, 2):
        for i, name in enumerate(("per_user", "arm_stats", "per_pair")):
            a, b = tmp_path / f"{name}_{size}.parquet", tmp_path / f"{name}_all.parquet"
            write_parquet_atomic(outs[size][i], Lake.at(tmp_path).root.joinpath(a.name))
            write_parquet_atomic(outs[None][i], Lake.at(tmp_path).root.joinpath(b.name))
            assert a.read_bytes() == b.read_bytes(), (size, name)
        assert outs[size][3] == outs[None][3]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_blocked_ranker_examples_equal_one_block(graph, protocol, tmp_path):
    """ranker_examples streams blocks of labelled users: blocks of 1 and 2 users (one at a time or on threads)
    write the same bytes as one block (and as the asset wrote), the rows and stats of the one-frame night_examples; ranker_dataset, streamed
    one night at a time, holds the rows of training_frame_from_nights over all of its nights."""
    from recsys_assets.lib.ranking.arms import ranker_arm_names
    from recsys_assets.lib.ranking.examples import next_day_labels, night_examples, training_frame_from_nights, write_night_examples
    from recsys_assets.lib.ranking.nightly import read_training_frame, training_window

    n = _night(graph, protocol, "train")
    lake, day, cfg, rcfg, snap, view, feats = n.lake, n.day, n.cfg, n.rcfg, n.snap, n.view, n.feats
    labels = next_day_labels(view, snap.events_before, cfg.interactions)
    n_users = labels["user_id"].n_unique()
    assert n_users > 2
    files, stats = {}, {}
    for size, threads in ((1, 1), (2, 1), (1, 2), (2, 3), (n_users, 1)):
        target = Lake.at(tmp_path / f"b{size}_{threads}").root.joinpath("ranker_examples.parquet")
        stats[size, threads] = write_night_examples(feats, labels, rcfg, target, block_users=size, threads=threads)
        files[size, threads] = target.read_bytes()
    assert len(set(files.values())) == 1 and all(st == stats[1, 1] for st in stats.values())
    files, stats = {size: files[size, 1] for size in (1, 2, n_users)}, {size: stats[size, 1] for size in (1, 2, n_users)}
    asset_file = lake.ranker_examples_file(day, protocol)
    assert asset_file.read_bytes() == files[n_users]
    whole, whole_stats = night_examples(feats, labels, rcfg)
    assert read_parquet(asset_file).equals(whole) and whole_stats == stats[1] and whole_stats["n_positive_rows"] > 0
    nights = [read_parquet(path) for _, path, _ in training_window(lake, day, protocol, rcfg).nights]
    assert len(nights) == 2
    for arm in ranker_arm_names(rcfg):
        ref, _ = training_frame_from_nights(nights, arm, rcfg)
        assert read_training_frame(lake, day, protocol, arm).equals(ref), arm


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_cold_lists_of_the_judged_users_only_change_no_metric(graph, protocol):
    """recommendations ranks the cold items for the users the cold_only scope judges (a positive among them):
    the stored cold lists are exactly those users' lists of every evaluated user's, and the evaluation of
    the two gives the same per-user metrics, arm stats and pairs."""
    from recsys_assets.lib.evaluation.evaluate import evaluate_view
    from recsys_assets.lib.ranking.arms import arm_names, new_item_ids, parse_arm, popularity_tiebreak, top_k_items_arms
    from recsys_assets.lib.ranking.nightly import arm_candidates, cold_scope_users, day_truth, load_rankers

    n = _night(graph, protocol)
    lake, day, cfg, rcfg, snap, view, feats = n.lake, n.day, n.cfg, n.rcfg, n.snap, n.view, n.feats
    truth = day_truth(snap.events_of_day, view, cfg)
    cold_items = new_item_ids(feats, ("new", "cold") if protocol == "temporal" else ("new",))
    judged = cold_scope_users(truth, cold_items)
    every = truth["user_id"].unique().sort().to_list()
    assert 0 < len(judged) < len(every)
    stored = read_parquet(lake.recs_dir(day, protocol).joinpath("cold_recs.parquet"))
    assert sorted(stored["user_id"].unique().to_list()) == judged
    names = [a for a in arm_names(rcfg) if not parse_arm(a).slots]
    tbs = {a: popularity_tiebreak(feats) if parse_arm(a).is_ranker else None for a in names}
    full = top_k_items_arms(tbs, feats, every, cold_items, rcfg.k, load_rankers(lake, day, protocol, rcfg), rcfg)
    for arm in names:
        mine = stored.filter(pl.col("arm") == arm).drop("arm")
        assert mine.equals(full[arm].filter(pl.col("user_id").is_in(judged))), arm
    recs = read_parquet(lake.recs_dir(day, protocol).joinpath("recs.parquet"))
    arm_recs = {a: recs.filter(pl.col("arm") == a).drop("arm") for a in recs["arm"].unique(maintain_order=True).to_list()}
    pool = read_parquet(lake.recs_dir(day, protocol).joinpath("candidates.parquet"))
    cands = {a: arm_candidates(pool, a) for a in arm_recs if parse_arm(a).kind == "ranker"}
    got = evaluate_view(view, truth, arm_recs, {a: stored.filter(pl.col("arm") == a).drop("arm") for a in names}, cands, cfg.protocol, (10, 20))
    ref = evaluate_view(view, truth, arm_recs, full, cands, cfg.protocol, (10, 20))
    assert got[0].filter(pl.col("scope") == "cold_only").height > 0
    for a, b in zip(got, ref):
        assert a.equals(b)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_serving_from_the_stored_pool_equals_generating_the_candidates(graph, protocol, monkeypatch):
    """recommendations reads the candidates asset's pool (flags, ALS rank, the ALS and content arms' top-K scores)
    instead of generating the candidates again, and serves the als / content arms from the pool's first K: every
    arm's lists are those of generating them, the als / content arms' those of ranking the catalogue for each of
    them alone (their own top-K, ``_source_frame``), and the stored recs.parquet holds them. The explanations'
    sample reads its candidate flags from the pool too, with the same contributions."""
    import recsys_assets.lib.ranking.arms as arms
    from recsys_assets.lib.ranking.arms import arm_names, arm_score_column, explain_recommendations, parse_arm, recommend_arms
    from recsys_assets.lib.ranking.nightly import load_rankers, served_users

    n = _night(graph, protocol)
    lake, day, rcfg, snap, feats = n.lake, n.day, n.rcfg, n.snap, n.feats
    users, names, rankers = served_users(snap.events_of_day), arm_names(rcfg), load_rankers(lake, day, protocol, rcfg)
    pool_file = lake.recs_dir(day, protocol).joinpath("candidates.parquet")
    source_arms = [a for a in names if parse_arm(a).kind in ("als", "content") and not parse_arm(a).slots]
    assert len(source_arms) == 1 + len(rcfg.encoders)
    pool_cols = read_parquet(pool_file).columns
    assert {"rank_als", arm_score_column("als")} <= set(pool_cols) and all(arm_score_column(f"content:{e}") in pool_cols for e in rcfg.encoders)
    generated = recommend_arms(names, feats, users, rcfg.k, rankers, rcfg)
    # without a ranker arm there are no candidates: each source arm ranks the catalogue for itself
    alone = recommend_arms(source_arms, feats, users, rcfg.k, rankers, rcfg)

    def no_generation(*a, **kw):
        raise AssertionError("the candidates were generated again instead of read from the pool")

    real_source_frame = arms._source_frame

    def popular_only(features, us, source, k):
        assert source == "popular", f"{source} ranked the catalogue again instead of reading the pool"
        return real_source_frame(features, us, source, k)

    with monkeypatch.context() as m:
        m.setattr(arms, "generate_candidates", no_generation)
        m.setattr(arms, "_source_frame", popular_only)
        from_pool = recommend_arms(names, feats, users, rcfg.k, rankers, rcfg, pl.scan_parquet(pool_file.path))
    stored = read_parquet(lake.recs_dir(day, protocol).joinpath("recs.parquet"))
    for arm in names:
        assert from_pool[arm][0].equals(generated[arm][0]) and from_pool[arm][1] == generated[arm][1], arm
        assert stored.filter(pl.col("arm") == arm).drop("arm").equals(generated[arm][0]), arm
    for arm in source_arms:
        assert alone[arm][0].height > 0 and from_pool[arm][0].equals(alone[arm][0]), arm
        assert from_pool[arm][1] == alone[arm][1], arm
    # the explained sample's source flags and ALS rank are read from the pool too
    explained = read_parquet(lake.recs_dir(day, protocol).joinpath("explanations.parquet"))
    for arm in (a for a in names if parse_arm(a).is_ranker and not parse_arm(a).slots):
        mine = explain_recommendations(arm, feats, generated[arm][0], rankers, rcfg)
        with monkeypatch.context() as m:
            m.setattr(arms, "generate_candidates", no_generation)
            assert explain_recommendations(arm, feats, generated[arm][0], rankers, rcfg, pl.scan_parquet(pool_file.path)).equals(mine), arm
        assert explained.filter(pl.col("arm") == arm).drop("arm").select(mine.columns).equals(mine), arm


def test_block_users_and_threads_of_the_assets_change_no_byte(graph, monkeypatch):
    """ModelsResource.block_users and block_threads reach the blocked assets: rerun with blocks of 2 users, one at a
    time or three side by side (blocks of 1), candidates, ranker_examples, recommendations (its cold scope in
    blocks of 20 pairs) and the evaluation write the same files as the default blocks. The ALS and content top-N
    of a block is ``topk.dot_top_k``'s, whose bits do not depend on the block's shape. The ranker arms' training
    files and models, written one at a time or side by side (ranker_dataset, rankers), are the same bytes too."""
    from recsys_assets.lib.ranking import arms
    from recsys_assets.lib.ranking.arm_spec import NO_TEXT

    lake: Lake = graph["lake"]
    day = DAYS[-1]
    files = [lake.recs_dir(day, p).joinpath(f) for p in PROTOCOLS for f in ("candidates.parquet", "recs.parquet", "cold_recs.parquet", "explanations.parquet")]
    files += [lake.ranker_examples_file(day, p) for p in PROTOCOLS]
    for p in PROTOCOLS:
        files += sorted((f for d in lake.ranker_dataset_dir(day, p, NO_TEXT).parent.iterdir() for f in d.iterdir()), key=str)
        files += sorted((f for d in lake.ranker_model_dir(day, p, NO_TEXT).parent.iterdir() for f in d.iterdir()), key=str)
    assert sum("rankers" in str(f) for f in files) == 2 * len(PROTOCOLS) * 2  # ranker.txt + ranker.json of two arms
    files += [lake.eval_dir(day).joinpath(f) for f in ("per_user.parquet", "arm_stats.parquet", "per_pair.parquet")]
    before = {str(f): f.read_bytes() for f in files}
    monkeypatch.setattr(arms, "BLOCK_PAIRS", 20)
    steps = {"candidates", "ranker_examples", "ranker_dataset", "rankers", "recommendations", "cold_start_eval"}
    try:
        for threads in (1, 3):
            result = dg.materialize(
                list(_defs().assets), selection=dg.AssetSelection.assets(*steps),
                resources={**_resources(lake), "models": ModelsResource(**MODELS, block_users=2, block_threads=threads)},
                partition_key=day.isoformat(), raise_on_error=False,
            )  # fmt: skip
            assert result.success and {e.step_key for e in result.all_events if e.is_step_success} == steps
            assert {str(f): f.read_bytes() for f in files} == before, threads
    finally:
        for f in files:  # the later tests read the default blocks' files
            f.write_bytes(before[str(f)])


def test_step_threads_share_the_cores():
    from recsys_assets.defs.executor import step_threads

    assert step_threads(2, 2) == 1 and step_threads(1, 2) == 2 and step_threads(None, 8) == 1 and step_threads(3, 2) == 1 and step_threads(2, 8) == 4


def test_day_job_in_step_processes_writes_the_same_files(graph, tmp_path, monkeypatch):
    """day_job through its own executor (one process per step, two at a time, one thread each), as the daemon runs
    it, writes the bytes the in-process run wrote: recommendations, pools, ranker examples, evaluation."""
    import os

    from recsys_assets import runner
    from recsys_assets.defs.executor import THREAD_VARS, step_threads

    lake: Lake = graph["lake"]
    day = DAYS[-1]
    files = [lake.recs_dir(day, p).joinpath(f) for p in PROTOCOLS for f in ("candidates.parquet", "recs.parquet", "cold_recs.parquet", "explanations.parquet")]
    files += [lake.ranker_examples_file(day, p) for p in PROTOCOLS]
    files += [lake.eval_dir(day).joinpath(f) for f in ("per_user.parquet", "arm_stats.parquet", "per_pair.parquet")]
    before = {str(f): f.read_bytes() for f in files}
    monkeypatch.setenv(LAKE_ENV_VAR, str(lake.root.path))  # the step processes find the lake as the daemon's do
    for var in THREAD_VARS:  # the executor sets them in the run's process; this test's process gets them back
        monkeypatch.setenv(var, os.environ.get(var, ""))
    inst = dg.DagsterInstance.local_temp(str(tmp_path))
    result = runner.run_job_in_step_processes("day_job", inst, day.isoformat(), max_concurrent=2, run_config_resources={"models": {"config": MODELS}})
    pids = runner.step_pids(inst, result.run_id)
    assert {"candidates", "recommendations", "cold_start_eval"} <= set(pids)
    assert len(set(pids.values())) == len(pids) and os.getpid() not in pids.values()  # one fresh process per step
    assert os.environ["POLARS_MAX_THREADS"] == str(step_threads(2))  # 2 steps at a time share the cores
    assert {str(f): f.read_bytes() for f in files} == before
