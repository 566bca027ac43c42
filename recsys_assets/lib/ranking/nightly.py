"""The nightly ranking stage of day D: load snapshot features, train arms, serve and store recommendations.

Layout:
- ``models/snapshot=D/<protocol>/ranker_examples.parquet``        serve-like examples: snapshot D - w (w = 1), labels = day D - w
- ``models/snapshot=D/<protocol>/ranker_examples.json``          the examples file's digest (what ranker_dataset keys its nights on)
- ``models/snapshot=D/<protocol>/ranker_dataset/<arm>/examples=N.parquet``  training rows of partition N's examples, N = the last k partitions (+ ``.json``: key, stats)
- ``models/snapshot=D/<protocol>/rankers/<arm>/``                 LightGBM model + meta
- ``recs/day=D/<protocol>/candidates.parquet``                    candidate pool of the served users (source flags, ALS rank)
- ``recs/day=D/<protocol>/candidates.json``                       what the pool was made from (per source: ``candidates.source_inputs_digest``)
- ``recs/day=D/<protocol>/recs.parquet``                          top-K per user per arm
- ``recs/day=D/<protocol>/cold_recs.parquet``                     each arm's top-K among the cold items only (cold_only scope), for the users it judges
- ``recs/day=D/<protocol>/explanations.parquet``                  pred_contrib for a sample of ranker recs
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import polars as pl
from upath import UPath

from recsys_assets.lib.confighash import config_hash
from recsys_assets.lib.errors import RecsysError
from recsys_assets.lib.features.als import ALSModel
from recsys_assets.lib.features.content_to_cf import ContentToCFModel
from recsys_assets.lib.features.nightly import (
    FeatureConfig,
    catalog_vectors,
    encoders_with_embeddings,
    load_item_embeddings,
    read_npz,
)
from recsys_assets.lib.ingest.catalog import read_catalog
from recsys_assets.lib.lake import (
    BlockParquetWriter,
    Lake,
    copy_file_atomic,
    file_digest,
    is_local,
    read_parquet,
    scan_parquet,
    write_bytes_atomic,
    write_parquet_atomic,
)
from recsys_assets.lib.parallel import map_in_order, map_side_by_side, slices
from recsys_assets.lib.ranking.arm_spec import NO_TEXT
from recsys_assets.lib.ranking.arms import (
    arm_names,
    explain_recommendations,
    new_item_ids,
    parse_arm,
    pool_candidates,
    pool_sources,
    popularity_tiebreak,
    ranker_arm_names,
    RECS_SCHEMA,
    recommend_arms,
    top_k_items_arms,
)
from recsys_assets.lib.ranking.candidates import POOL_BLOCK_USERS, arm_sources, source_column, source_inputs_digest
from recsys_assets.lib.ranking.config import RankingConfig
from recsys_assets.lib.ranking.examples import SNAPSHOT_COL, audit_examples, next_day_labels, training_frame_from_nights, write_night_examples
from recsys_assets.lib.ranking.features import feature_names
from recsys_assets.lib.ranking.inputs import EncoderFeatures, SnapshotFeatures
from recsys_assets.lib.ranking.ranker import RankerModel, new_user_rows, resolve_prior, train_ranker
from recsys_assets.lib.snapshot import SnapshotView, day_start, positives_excluding_seen


def ranking_config(
    lake: Lake,
    day: date,
    cfg: FeatureConfig,
    new_item_slots: int = 0,
    max_train_users: int | None = None,
    prior_profile_new: float | None = None,
    monotone_text: bool = True,
) -> RankingConfig:
    """Ranking settings of day D: arms for the encoders whose embeddings exist."""
    return RankingConfig(
        encoders=tuple(encoders_with_embeddings(lake, day, cfg)),
        ks=(10, 20),
        new_item_slots=new_item_slots,
        max_train_users=max_train_users,
        prior_profile_new=prior_profile_new,
        monotone_text=monotone_text,
    )


def load_snapshot_features(lake: Lake, view: SnapshotView, encoders: list[str], cfg: FeatureConfig) -> SnapshotFeatures:
    """Assemble the ranking inputs of a view from the feature assets' artifacts."""
    day, p, s = view.day, view.protocol, view.stage
    als_path = lake.als_dir(day, p, s)
    als = ALSModel.load(als_path) if als_path.joinpath("als_model.json").exists() else None
    encs = {}
    for name in encoders:
        item_ids, vectors = catalog_vectors(view, *load_item_embeddings(lake, day, name)[:2])
        ppath = lake.profiles_file(day, p, s, name)
        if ppath.exists():
            arrays, _ = read_npz(ppath)
            uids, umat = arrays["user_ids"].tolist(), arrays["vectors"]
        else:
            uids, umat = [], np.zeros((0, vectors.shape[1]), np.float32)
        cpath = lake.c2cf_dir(day, p, s, name)
        c2cf = ContentToCFModel.load(cpath) if cpath.exists() and any(cpath.iterdir()) else None
        encs[name] = EncoderFeatures(item_ids, vectors, uids, umat, c2cf)
    users = read_catalog(lake, "users") if lake.catalog("users").exists() else None  # profile attributes (features.profile_lift)
    return SnapshotFeatures(view=view, als=als, encoders=encs, protocol=cfg.protocol, users=users)


# --- users and truth ----------------------------------------------------------------------


def served_users(events_of_day: pl.DataFrame) -> list[str]:
    """Users active on day D (new users included): the ones the evaluation can judge."""
    return sorted(events_of_day["user_id"].unique().to_list())


def day_truth(events_of_day: pl.DataFrame, view: SnapshotView, cfg: FeatureConfig) -> pl.DataFrame:
    """Positives of day D, minus pairs seen before D, restricted to the catalogue."""
    return positives_excluding_seen(events_of_day, view.seen, cfg.interactions, view.catalog["item_id"])


# --- training ---------------------------------------------------------------------------------


def build_night_examples(
    lake: Lake,
    train_view: SnapshotView,
    events_before_day: pl.DataFrame,
    cfg: FeatureConfig,
    rcfg: RankingConfig,
    block_users: int = POOL_BLOCK_USERS,
    threads: int = 1,
) -> dict:
    """This partition's serve-like examples (snapshot ``train_view.cutoff``, labels = the day after it); returns stats.

    Written ``block_users`` labelled users at a time (:func:`write_night_examples`): the same bytes
    whatever the block size, memory bounded by a block.
    """
    labels = next_day_labels(train_view, events_before_day, cfg.interactions)
    feats = load_snapshot_features(lake, train_view, list(rcfg.encoders), cfg)
    earlier = earlier_candidate_pool(lake, feats, rcfg)
    path, reused = earlier if earlier is not None else (None, ())
    pool = None if path is None else scan_parquet(path)
    target = lake.ranker_examples_file(train_view.day, train_view.protocol)
    target.with_suffix(".json").unlink(missing_ok=True)  # new examples are never paired with the digest of the ones before
    st = write_night_examples(feats, labels, rcfg, target, block_users, threads, pool, reused)
    # the file holds the labelled users with a positive candidate: the night's queries
    record_examples_digest(target, st["n_users"] - st["users_without_positive_candidates"])
    st["candidates_from"] = None if path is None else str(path)
    st["candidate_sources_read"] = list(reused)
    label_day = events_before_day.filter((pl.col("ts") >= day_start(train_view.cutoff)) & (pl.col("ts") < day_start(train_view.cutoff + timedelta(days=1))))
    st["label_day"] = str(train_view.cutoff)
    st["label_events_max_ts"] = label_day["ts"].max() if labels.height else None
    return st


def training_night_days(day: date, rcfg: RankingConfig) -> list[date]:
    """Partitions whose examples may train the ranker of ``day``, newest first: D, D - 1 .. D - max_train_nights + 1
    (snapshots D - 1 .. when w = 1). The window takes the first ``train_nights`` of them, then more until it holds
    ``min_train_queries`` labelled queries (:func:`training_window`)."""
    return [day - timedelta(days=j) for j in range(rcfg.max_train_nights)]


def _arm_night_rows(path, arm: str) -> pl.DataFrame:
    """The rows of one night's examples file that ``arm``'s own sources proposed, with the columns it trains
    on (read lazily from a local lake: never the whole night with every arm's columns)."""
    spec = parse_arm(arm)
    flags = [source_column(s) for s in arm_sources(spec.base)]
    want = [SNAPSHOT_COL, "user_id", "item_id", "label", *dict.fromkeys([*flags, *feature_names(spec.encoder)])]
    scan = scan_parquet(path)
    names = scan.collect_schema().names()
    present = [c for c in want if c in names]
    if all(c in names for c in flags):
        scan = scan.filter(pl.any_horizontal([pl.col(c) > 0 for c in flags]))
    return scan.select(present).collect()


@dataclass(frozen=True)
class TrainingWindow:
    """The examples files of one protocol that train the rankers of a day."""

    nights: list[tuple[date, UPath, str]]
    """(partition, examples file, its digest) of the nights with rows, oldest first."""
    missing: list[str]
    """Partitions the window looked at that are not materialized (the start of a lake)."""
    problems: list[str]
    """Leakage found: examples of a snapshot on or after the day."""
    queries: int
    """Labelled queries (user-nights with a positive candidate) in ``nights``."""


def training_window(lake: Lake, day: date, protocol: str, rcfg: RankingConfig) -> TrainingWindow:
    """The nights that train the rankers of ``day`` for ``protocol``: the last ``train_nights`` partitions, then
    earlier ones, one at a time, while the nights hold fewer than ``min_train_queries`` labelled queries, up to
    ``max_train_nights`` (a small world's 14 nights hold too few users for the trees). Every arm of the protocol
    trains on the same nights. Raises when there is no night at all."""
    nights, missing, problems, queries = [], [], [], 0
    for j, d in enumerate(training_night_days(day, rcfg)):
        if j >= rcfg.train_nights and queries >= rcfg.min_train_queries:
            break
        path = lake.ranker_examples_file(d, protocol)
        if not path.exists():
            missing.append(str(d))
            continue
        snaps = scan_parquet(path).select(SNAPSHOT_COL).collect()
        if snaps.height:
            rec = examples_record(path)
            nights.append((d, path, rec["blake2b"]))
            queries += rec["queries"]
            problems += [f"{protocol}: {p}" for p in audit_examples([snaps], day)]
    if not nights:
        training_frame_from_nights([], ranker_arm_names(rcfg)[0], rcfg)  # raises: no examples
    return TrainingWindow(nights[::-1], missing[::-1], problems, queries)


def training_windows_full(lake: Lake, day: date, protocols: Sequence[str], rcfg: RankingConfig) -> bool:
    """Whether the nights already in the lake give every protocol's window of ``day`` its ``min_train_queries``
    (the demo's warm-up reaches further back until they do)."""
    try:
        return all(training_window(lake, day, p, rcfg).queries >= rcfg.min_train_queries for p in protocols)
    except RecsysError:  # no night at all yet
        return False


def record_examples_digest(path: UPath, queries: int | None = None) -> None:
    """Write the ``.json`` record of a night's examples file just written: its digest, size and labelled queries
    (what :func:`examples_record` reads instead of reading the file again). ``queries``: the writer's count of the
    file's users (counted from the file when not given)."""
    queries = _examples_queries(path) if queries is None else queries
    record = {"blake2b": file_digest(path), "bytes": path.stat().st_size, "queries": queries}
    write_bytes_atomic(path.with_suffix(".json"), json.dumps(record).encode())


def _examples_queries(path: UPath) -> int:
    """Labelled queries of a night's examples file: its users (it holds the users with a positive candidate only)."""
    return scan_parquet(path).select(pl.col("user_id").n_unique()).collect().item()


def examples_record(path: UPath) -> dict:
    """``{"blake2b", "queries"}`` of a night's examples file: what its ``.json`` record holds (written with it by
    :func:`build_night_examples`), or what the file gives where the record is missing, names another size or
    was written before queries were recorded."""
    rec = {}
    record = path.with_suffix(".json")
    if record.exists():
        rec = json.loads(record.read_bytes())
        if rec.get("bytes") != path.stat().st_size:
            rec = {}
    return {
        "blake2b": rec.get("blake2b") or file_digest(path),
        "queries": rec["queries"] if "queries" in rec else _examples_queries(path),
    }


def _night_key(digest: str, arm: str, rcfg: RankingConfig) -> dict:
    """What an arm's training rows of one night are made from (:func:`training_frame_from_nights`): the examples
    file's bytes, the arm's sources and features, the per-night user cap."""
    spec = parse_arm(arm)
    return {
        "examples_blake2b": digest,
        "arm": arm,
        "sources": list(arm_sources(spec.base)),
        "features": list(feature_names(spec.encoder)),
        "max_train_users": rcfg.max_train_users,
    }


def _stored_night(lake: Lake, day: date, protocol: str, arm: str, night: date, key: dict, rcfg: RankingConfig) -> dict | None:
    """The stats of the arm's rows of ``night`` made from ``key``, placed in day D's folder from where they already
    are: day D's own file (a rerun) or the file of an earlier day whose training nights include ``night`` (the
    night before holds 13 of D's 14). None when no stored file was made from the same key."""
    target = lake.ranker_night_file(day, protocol, arm, night)
    # day D itself, then the days before it whose window can hold the night (E - max_train_nights + 1 .. E)
    for earlier in [d for d in training_night_days(day, rcfg) if d >= night]:
        source = lake.ranker_night_file(earlier, protocol, arm, night)
        record = source.with_suffix(".json")
        if not (source.exists() and record.exists()):
            continue
        rec = json.loads(record.read_bytes())
        if rec.get("key") != key:
            continue
        if earlier != day:
            target.with_suffix(".json").unlink(missing_ok=True)
            copy_file_atomic(source, target)
            write_bytes_atomic(target.with_suffix(".json"), record.read_bytes())
        return rec["stats"]
    return None


def _write_arm_dataset(lake: Lake, day: date, protocol: str, arm: str, window: TrainingWindow, rcfg: RankingConfig) -> dict:
    """One arm's training files of ``day`` and ``protocol``, one per night (:meth:`Lake.ranker_night_file`, oldest
    first): a night already made from the same examples and settings by an earlier day is linked (or copied) from
    there, the others are the arm's rows of the night (:func:`training_frame_from_nights`), each with a ``.json``
    record (its key and stats). Files of nights no longer in the window are removed. Returns the arm's stats."""
    parts: list[dict] = []
    reused = 0
    keep = set()
    for night, path, digest in window.nights:
        target = lake.ranker_night_file(day, protocol, arm, night)
        keep |= {target.name, target.with_suffix(".json").name}
        key = _night_key(digest, arm, rcfg)
        st = _stored_night(lake, day, protocol, arm, night, key, rcfg)
        if st is None:
            frame, st = training_frame_from_nights([_arm_night_rows(path, arm)], arm, rcfg)
            target.with_suffix(".json").unlink(missing_ok=True)
            with BlockParquetWriter(target) as out:
                out.write(frame)
            del frame
            write_bytes_atomic(target.with_suffix(".json"), json.dumps({"key": key, "stats": st}, default=str).encode())
        else:
            reused += 1
        parts.append(st)
    folder = lake.ranker_dataset_dir(day, protocol, arm)
    for stale in folder.iterdir() if folder.exists() else ():
        if stale.name not in keep and not stale.name.startswith("."):
            stale.unlink()
    # the one-file layout before the night files (a lake written by earlier code): 14 nights of rows, now unread
    folder.parent.joinpath(f"{folder.name}.parquet").unlink(missing_ok=True)
    held = [p for p in parts if p["n_rows"]]
    return {
        "arm": arm,
        "nights": sum(p["nights"] for p in parts),
        "queries": window.queries,
        "nights_reused": reused,
        "first_snapshot": min(p["first_snapshot"] for p in held) if held else "None",
        "last_snapshot": max(p["last_snapshot"] for p in held) if held else "None",
        **{k: sum(p[k] for p in parts) for k in ("n_users", "n_rows", "n_positive_rows", "users_without_positive_candidates")},
        "missing_partitions": ", ".join(window.missing) or "none",
    }


def build_ranker_datasets(
    lake: Lake, day: date, protocols: Sequence[str], rcfg: RankingConfig, threads: int = 1
) -> tuple[dict[str, dict[str, dict]], list[str]]:
    """Training frames of every ranker arm of every protocol from the examples of its :func:`training_window`.

    Partitions not materialized yet (the start of a lake) are skipped and listed in the stats.
    Each (protocol, arm) file is streamed one night at a time (oldest first), the arm's rows of the night
    appended to its file (``lake.BlockParquetWriter``): memory holds one night's rows of an arm, not
    ``train_nights`` nights of every arm, and the file's rows are :func:`training_frame_from_nights` of all
    the nights (each night is sorted by user and item, the nights come in snapshot order). The files are
    independent: ``threads`` of them are written side by side (:func:`parallel.map_side_by_side`; the same bytes).
    Returns (stats per protocol and arm, leakage problems: examples of a snapshot on or after ``day``).
    """
    jobs, problems = [], []
    for protocol in protocols:
        window = training_window(lake, day, protocol, rcfg)
        problems += window.problems
        jobs += [(protocol, arm, window) for arm in ranker_arm_names(rcfg)]
    written = map_side_by_side(lambda job: _write_arm_dataset(lake, day, *job, rcfg), jobs, threads)
    return _by_protocol_and_arm(protocols, jobs, written), problems


def _by_protocol_and_arm(protocols: Sequence[str], jobs: list[tuple], results: list) -> dict[str, dict]:
    """``{protocol: {arm: result}}`` of jobs whose first two fields are (protocol, arm), results in the jobs' order."""
    out: dict[str, dict] = {p: {} for p in protocols}
    for (protocol, arm, *_), result in zip(jobs, results):
        out[protocol][arm] = result
    return out


def train_rankers(lake: Lake, day: date, protocols: Sequence[str], rcfg: RankingConfig, threads: int = 1) -> dict[str, dict[str, RankerModel]]:
    """Fit and save every ranker arm of ``day`` for each protocol on its training frame.

    A ``prior_profile_new`` left to the data (None) is chosen once per protocol, on ``ranker_no_text``'s
    frame, and every arm of the protocol boosts from that prior: the text arms then differ from the no-text
    arm by their text features, not by their prior. The fits are independent and single-threaded
    (``RankingConfig.num_threads``): ``threads`` of them run side by side (:func:`parallel.map_side_by_side`;
    LightGBM releases the GIL), each model the same bytes as alone, memory for ``threads`` fits at once.
    Returns the models per protocol and arm.
    """
    jobs = []
    for protocol in protocols:
        cfg, choice = rcfg, None
        if rcfg.prior_profile_new is None:
            cfg, choice = resolve_prior(new_user_rows(lake.ranker_dataset_files(day, protocol, NO_TEXT)), rcfg)
        jobs += [(protocol, arm, cfg, choice) for arm in ranker_arm_names(rcfg)]

    def fit(job: tuple) -> RankerModel:
        protocol, arm, cfg, choice = job
        # Streamed from the arm's night files (ranker.prepare_lgb_file): 14 nights of a large world's rows do not fit as a frame.
        model = train_ranker(lake.ranker_dataset_files(day, protocol, arm), feature_names(parse_arm(arm).encoder), cfg, arm=arm, prior_choice=choice)
        model.save(lake.ranker_model_dir(day, protocol, arm))
        return model

    return _by_protocol_and_arm(protocols, jobs, map_side_by_side(fit, jobs, threads))


def read_training_frame(lake: Lake, day: date, protocol: str, arm: str) -> pl.DataFrame:
    """The training frame the ranker ``arm`` of ``day`` was fit on: its night files' rows, in order."""
    return pl.concat([read_parquet(p) for p in lake.ranker_dataset_files(day, protocol, arm)])


def load_rankers(lake: Lake, day: date, protocol: str, rcfg: RankingConfig) -> dict[str, RankerModel]:
    return {arm: RankerModel.load(lake.ranker_model_dir(day, protocol, arm)) for arm in ranker_arm_names(rcfg)}


# --- serving ----------------------------------------------------------------------------------


def candidate_pool(feats: SnapshotFeatures, users: list[str], rcfg: RankingConfig) -> pl.DataFrame:
    """Union of every ranker arm's candidate sources (flags say which source proposed a pair), the ALS rank
    and the ALS / content arms' top-K scores (``arms.pool_columns``): what serving reads, so ``recommendations``
    serves from this pool instead of generating the candidates again."""
    return pool_candidates(feats, users, pool_sources(rcfg), rcfg)


def write_candidate_pool(
    feats: SnapshotFeatures, users: list[str], rcfg: RankingConfig, target, block_users: int = POOL_BLOCK_USERS, threads: int = 1
) -> dict[str, int]:
    """:func:`candidate_pool` of ``users`` written to ``target`` one block of ``block_users`` users at a time
    (``threads`` blocks computed side by side: :func:`parallel.map_in_order`).

    Every source is per user, so the file is the same bytes whatever the block size and threads (memory holds
    a few blocks' pools, not the day's). Returns ``{"pairs": rows, "source_<slug>": rows it flags}``.
    """
    counts: dict[str, int] = {"pairs": 0}
    meta = target.with_suffix(".json")
    meta.unlink(missing_ok=True)  # a pool being replaced is never paired with the record of the one before
    with BlockParquetWriter(target) as out:
        for pool in map_in_order(lambda block: candidate_pool(feats, block, rcfg), slices(users, block_users, keep_empty=True), threads):
            out.write(pool)
            counts["pairs"] += pool.height
            for col in (c for c in pool.columns if c.startswith("source_")):
                counts[col] = counts.get(col, 0) + int(pool[col].sum())
    record = {
        "source_inputs": {src: source_inputs_digest(feats, src) for src in pool_sources(rcfg)},
        "ranking_config_hash": config_hash(rcfg),
        "snapshot": str(feats.view.day),
        "stage": feats.view.stage,
        "users": len(users),
        **counts,
    }
    write_bytes_atomic(meta, json.dumps(record, indent=2, sort_keys=True).encode())
    return counts


def earlier_candidate_pool(lake: Lake, feats: SnapshotFeatures, rcfg: RankingConfig):
    """``(path, sources)``: the candidate pool night D - w stored for its served users, and the sources whose rows a
    train view of day D can read there (else None): made with the same settings, from the same inputs
    (:func:`candidates.source_inputs_digest`; night D - w's serve view sees what day D's train view sees, and its ALS
    and neural vectors are the same bytes; TF-IDF, refitted on each night's catalogue, is not). The labelled users of
    D - w were served that day and each user's candidates depend on these inputs alone, so their rows there are the
    rows generating them again gives (``arms.block_candidates``: a user missing from it is generated)."""
    view = feats.view
    if view.stage != "train":
        return None
    path = lake.recs_dir(view.cutoff, view.protocol).joinpath("candidates.parquet")
    meta = path.with_suffix(".json")
    if not (meta.exists() and path.exists()):
        return None
    record = json.loads(meta.read_bytes())
    stored = record.get("source_inputs") or {}
    if record.get("ranking_config_hash") != config_hash(rcfg):
        return None
    same = tuple(src for src in pool_sources(rcfg) if stored.get(src) == source_inputs_digest(feats, src))
    return (path, same) if same else None


def arm_candidates(pool: pl.DataFrame | pl.LazyFrame, arm: str) -> pl.DataFrame | pl.LazyFrame:
    """The pairs a ranker arm's own sources proposed."""
    from recsys_assets.lib.ranking.candidates import source_column

    names = pool.collect_schema().names() if isinstance(pool, pl.LazyFrame) else pool.columns
    cols = [source_column(s) for s in arm_sources(arm) if source_column(s) in names]
    return pool.filter(pl.any_horizontal([pl.col(c) for c in cols])).select("user_id", "item_id")


def cold_scope_users(truth: pl.DataFrame, cold_items: list[str]) -> list[str]:
    """The users the ``cold_only`` scope judges: those with a positive of day D among ``cold_items`` (sorted).

    The evaluation reads a user's cold list only when the user has such a positive (its cold cells
    restrict the truth to the cold items), and each user's list depends on that user alone, so ranking
    the cold items for these users only gives every judged list and every metric unchanged.
    """
    ids = pl.Series(cold_items, dtype=pl.String).implode()
    return truth.filter(pl.col("item_id").cast(pl.String).is_in(ids)).get_column("user_id").cast(pl.String).unique().sort().to_list()


def serve_day(
    lake: Lake,
    feats: SnapshotFeatures,
    users: list[str],
    truth: pl.DataFrame,
    models: dict[str, RankerModel],
    rcfg: RankingConfig,
    threads: int = 1,
    block_users: int | None = None,
) -> dict[str, dict]:
    """Top-K of every arm for the served users + top-K among the cold items for the users the cold scope
    judges (:func:`cold_scope_users` of ``truth``, the day's positives: :func:`day_truth`); written per protocol.
    ``threads`` blocks of ``block_users`` served users side by side (the same files whatever the blocks)."""
    view = feats.view
    out_dir = lake.recs_dir(view.day, view.protocol)
    # Under temporal, items first seen on D are too few (fewer than K on MovieLens): the cold scope
    # ranks the new AND cold segment items, and the evaluation splits the cell by segment.
    new_items = new_item_ids(feats, ("new", "cold") if view.protocol == "temporal" else ("new",))
    eval_users = cold_scope_users(truth, new_items)
    recs, cold, stats, explained = [], [], {}, []
    names = arm_names(rcfg)
    # The day's candidate pool of the served users (the candidates asset): read, not generated again.
    pool_path = out_dir.joinpath("candidates.parquet")
    pool = (pl.scan_parquet(pool_path.path) if is_local(pool_path) else read_parquet(pool_path)) if pool_path.exists() else None
    # All arms at once: per block of users, the ranker arms share their candidates and features.
    served = recommend_arms(names, feats, users, rcfg.k, models, rcfg, pool, threads, block_users)
    cold_arms = {a: popularity_tiebreak(feats) if parse_arm(a).is_ranker else None for a in names if not parse_arm(a).slots}
    cold_top = top_k_items_arms(cold_arms, feats, eval_users, new_items, rcfg.k, models, rcfg, pool, threads) if new_items and eval_users else {}
    for arm in names:
        spec = parse_arm(arm)
        r, st = served[arm]
        recs.append(r.with_columns(arm=pl.lit(arm)))
        stats[arm] = st
        if arm in cold_top:
            cold.append(cold_top[arm].with_columns(arm=pl.lit(arm)))
        if spec.is_ranker and not spec.slots and r.height:
            explained.append(explain_recommendations(arm, feats, r, models, rcfg, pool).with_columns(arm=pl.lit(arm)))
    write_parquet_atomic(pl.concat(recs), out_dir.joinpath("recs.parquet"))
    cold_frame = pl.concat(cold) if cold else pl.DataFrame(schema={**RECS_SCHEMA, "arm": pl.String})
    write_parquet_atomic(cold_frame, out_dir.joinpath("cold_recs.parquet"))
    if explained:
        write_parquet_atomic(pl.concat(explained, how="diagonal"), out_dir.joinpath("explanations.parquet"))
    return stats
