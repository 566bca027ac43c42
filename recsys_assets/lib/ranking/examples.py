"""Serve-like ranker training examples: one night's snapshot with the NEXT day's positives as labels.

The ranker of day D is asked "what will this user interact with tomorrow, from the features
of tonight's snapshot". It learns from the same question asked on the nights before D
(docs/ranker.md): night D - j contributes the snapshot of D - j (models fit on events before
D - j: the ``train`` stage of partition D - j + 1, whose label window is one day) and, as
labels, the positives of day D - j (minus pairs seen before it). Each night's examples are
stored once (:func:`night_examples`, ``ranker_examples`` asset); the training frame of D is
the examples of the ``RankingConfig.train_nights`` nights before D (:func:`training_frame_from_nights`).

Leakage rule: every example of partition D has snapshot < D and label events < D (checked
by :func:`audit_examples`); the evaluated day D is never a feature or a label.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Sequence

import polars as pl

from recsys_assets.lib.errors import RecsysError
from recsys_assets.lib.interactions import InteractionConfig
from recsys_assets.lib.ranking.arms import block_candidates, parse_arm, pool_sources, ranker_arm_names
from recsys_assets.lib.lake import BlockParquetWriter
from recsys_assets.lib.parallel import map_in_order, slices
from recsys_assets.lib.ranking.candidates import POOL_BLOCK_USERS, arm_sources, source_column
from recsys_assets.lib.ranking.config import RankingConfig
from recsys_assets.lib.ranking.features import feature_names, ranker_features
from recsys_assets.lib.ranking.inputs import SnapshotFeatures, hash_u64
from recsys_assets.lib.snapshot import SnapshotView, day_start, positives_excluding_seen

SNAPSHOT_COL = "snapshot"
"""Day of the snapshot an example was computed at (its labels are the positives of that day)."""


class ExamplesError(RecsysError):
    """Ranker examples cannot be built or assembled as asked."""


def next_day_labels(view: SnapshotView, events: pl.DataFrame, inter: InteractionConfig) -> pl.DataFrame:
    """Positives of the day right after the view's snapshot (``view.cutoff``), minus pairs seen before it.

    The same rule as a served day's truth (``positives_excluding_seen`` on the view's seen pairs
    and catalogue). Events on or after ``view.day`` are never used, whatever ``events`` holds.
    """
    start = day_start(view.cutoff)
    end = day_start(min(view.cutoff + timedelta(days=1), view.day))
    day_events = events.filter((pl.col("ts") >= start) & (pl.col("ts") < end))
    return positives_excluding_seen(day_events, view.seen, inter, view.catalog["item_id"])


def _night_setup(features: SnapshotFeatures, labels: pl.DataFrame, cfg: RankingConfig):
    """(unique label pairs, sorted labelled users, union of the ranker arms' sources, all arms' feature names)."""
    view = features.view
    if view.stage != "train":
        raise ExamplesError(
            f"night_examples: got a {view.stage!r} view of {view.day}; examples are built on the 'train' view "
            "(inputs before the snapshot day) so that the evaluated day is never a feature or a label."
        )
    for c in ("user_id", "item_id"):
        if c not in labels.columns:
            raise ExamplesError(f"night_examples: labels lack column {c!r}; got {labels.columns} (use next_day_labels()).")
    lab = labels.select(pl.col("user_id").cast(pl.String), pl.col("item_id").cast(pl.String)).unique(maintain_order=True)
    users = sorted(lab.get_column("user_id").unique().to_list())
    arms = ranker_arm_names(cfg)
    sources = pool_sources(cfg)
    names = list(dict.fromkeys(f for arm in arms for f in feature_names(parse_arm(arm).encoder)))
    return lab, users, sources, names


def _empty_examples(names: list[str]) -> pl.DataFrame:
    """A night without positives (no events that day): no queries, the examples' columns."""
    return pl.DataFrame(schema={SNAPSHOT_COL: pl.Date, "user_id": pl.String, "item_id": pl.String, "label": pl.Int8} | {f: pl.Float32 for f in names})


def _block_examples(
    features: SnapshotFeatures,
    lab: pl.DataFrame,
    users: list[str],
    sources,
    names,
    cfg: RankingConfig,
    pool: pl.LazyFrame | None = None,
    pool_sources: Sequence[str] = (),
) -> tuple[pl.DataFrame, dict]:
    """Examples of a block of labelled users (``lab``: their label pairs) and the block's counts; the candidates of
    ``pool_sources`` read from ``pool`` when it holds every user of the block (:func:`arms.block_candidates`), the
    others generated.

    Only the users with a label among their candidates get rows: a lambdarank query without a positive
    has zero gradient and is dropped by every fit (``ranker.prepare_lgb_data``), so its features would be
    computed, stored and read fourteen times for nothing (about 77 % of a 10M-event night's rows). The
    counts still cover every labelled user (``candidate_recall``, ``users_without_positive_candidates``).
    """
    cands = block_candidates(features, users, sources, cfg, pool, every_user=True, pool_sources=pool_sources)
    hits = lab.join(cands.select("user_id", "item_id"), on=["user_id", "item_id"], how="semi")
    taught = cands.join(hits.select("user_id").unique(), on="user_id", how="semi", maintain_order="left")
    # every arm's features in one call: the shared ones once, each encoder's text features next to them
    # (each column is a function of its pair alone, so the values are those of one call per arm)
    feats = ranker_features(features, taught, None, text_encoders=cfg.encoders)
    frame = (
        feats.join(lab.with_columns(label=pl.lit(1, pl.Int8)), on=["user_id", "item_id"], how="left", maintain_order="left")
        .with_columns(pl.col("label").fill_null(0), pl.lit(features.view.cutoff).alias(SNAPSHOT_COL))
        .select(SNAPSHOT_COL, "user_id", "item_id", "label", *names)
        .sort("user_id", "item_id")
    )
    counts = {
        "n_users": len(users),
        "n_label_pairs": lab.height,
        "n_candidate_rows": cands.height,
        "n_rows": frame.height,
        "n_positive_rows": int(frame.get_column("label").sum()),
        "label_pairs_in_candidates": hits.height,
        "users_with_positive_candidates": frame.filter(pl.col("label") > 0).get_column("user_id").n_unique(),
    }
    return frame, counts


def iter_night_examples(
    features: SnapshotFeatures,
    labels: pl.DataFrame,
    cfg: RankingConfig,
    block_users: int | None = None,
    threads: int = 1,
    pool: pl.LazyFrame | None = None,
    pool_sources: Sequence[str] = (),
):
    """:func:`night_examples` ``block_users`` labelled users at a time (None: one block; ``threads`` blocks
    side by side, :func:`parallel.map_in_order`): yields ``(frame, counts)`` per block in user order; the
    blocks concatenated are the one-block frame (users are taken in sorted order and every candidate
    source and feature is per (user, item) pair)."""
    lab, users, sources, names = _night_setup(features, labels, cfg)
    if not users:
        yield _empty_examples(names), {"n_users": 0, "n_label_pairs": 0, "n_candidate_rows": 0, "n_rows": 0, "n_positive_rows": 0,
                                       "label_pairs_in_candidates": 0, "users_with_positive_candidates": 0}  # fmt: skip
        return
    size = max(1, block_users or len(users))

    def block_examples(block: list[str]) -> tuple[pl.DataFrame, dict]:
        return _block_examples(features, lab.filter(pl.col("user_id").is_in(block)), block, sources, names, cfg, pool, pool_sources)

    yield from map_in_order(block_examples, slices(users, size), threads)


def examples_stats(snapshot: date, counts: Sequence[dict]) -> dict:
    """The stats of one night from its blocks' counts (candidate recall = label pairs inside the pool / label pairs)."""
    tot = {k: sum(c[k] for c in counts) for k in counts[0]} if counts else {}
    n_lab = tot.get("n_label_pairs", 0)
    return {
        SNAPSHOT_COL: str(snapshot),
        "n_users": tot.get("n_users", 0),
        "n_label_pairs": n_lab,
        "n_candidate_rows": tot.get("n_candidate_rows", 0),
        "n_rows": tot.get("n_rows", 0),
        "n_positive_rows": tot.get("n_positive_rows", 0),
        "candidate_recall": tot["label_pairs_in_candidates"] / n_lab if n_lab else float("nan"),
        "users_without_positive_candidates": tot.get("n_users", 0) - tot.get("users_with_positive_candidates", 0),
    }


def night_examples(features: SnapshotFeatures, labels: pl.DataFrame, cfg: RankingConfig) -> tuple[pl.DataFrame, dict]:
    """Examples of one night: every ranker arm's candidates for the labelled users, all arms' features, ``label``.

    ``features`` are the snapshot's (a ``train`` view: inputs before ``view.cutoff``); ``labels``
    the positives of the day after it (:func:`next_day_labels`). One row per (user, item) of the
    union of the arms' candidate sources, for the labelled users with a positive among them (the
    others' queries teach no ranker: :func:`_block_examples`), with ``FEATURES_NO_TEXT`` and each encoder's text features
    (the ``source_*`` flags among them say which sources proposed the pair: an arm's training rows
    are the ones its own sources proposed).
    Returns ``(frame sorted by user_id, item_id; stats)``. One frame of every labelled user: the
    nightly asset streams blocks of users to its file instead (:func:`write_night_examples`).
    """
    frames, counts = zip(*iter_night_examples(features, labels, cfg))
    return frames[0] if len(frames) == 1 else pl.concat(frames), examples_stats(features.view.cutoff, counts)


def write_night_examples(
    features: SnapshotFeatures,
    labels: pl.DataFrame,
    cfg: RankingConfig,
    target,
    block_users: int = POOL_BLOCK_USERS,
    threads: int = 1,
    pool: pl.LazyFrame | None = None,
    pool_sources: Sequence[str] = (),
) -> dict:
    """:func:`night_examples` written to ``target`` ``block_users`` labelled users at a time (``threads`` blocks
    side by side); returns its stats. ``pool``: a stored candidate pool whose ``pool_sources`` were made from the
    same inputs (``nightly.earlier_candidate_pool``): their candidates are read instead of generated again.

    Memory holds a few blocks' candidates and features, not the night's; the file is the same bytes
    whatever the block size and threads (``lake.BlockParquetWriter`` regroups rows into fixed row groups).
    """
    counts = []
    with BlockParquetWriter(target) as out:
        for frame, c in iter_night_examples(features, labels, cfg, block_users, threads, pool, pool_sources):
            out.write(frame)
            counts.append(c)
    return examples_stats(features.view.cutoff, counts)


def audit_examples(frames: Sequence[pl.DataFrame], day: date) -> list[str]:
    """Problems (empty = clean): examples used to train day ``day`` must come from snapshots before it."""
    problems = []
    for f in frames:
        if SNAPSHOT_COL not in f.columns:
            problems.append(f"examples without a {SNAPSHOT_COL!r} column")
            continue
        late = f.filter(pl.col(SNAPSHOT_COL) >= day)
        if late.height:
            problems.append(f"examples of snapshot {late[SNAPSHOT_COL].max()} train day {day} (labels would be day {day} or later)")
    return problems


def training_frame_from_nights(nights: Sequence[pl.DataFrame], arm: str, cfg: RankingConfig) -> tuple[pl.DataFrame, dict]:
    """Training rows of a ranker arm from several nights' examples (oldest first or any order).

    Keeps the rows the arm's own sources proposed and the arm's features; rows stay grouped by
    (snapshot, user): a user active on two nights is two ranking queries. ``cfg.max_train_users``
    caps the users per night (lowest hash kept).
    """
    spec = parse_arm(arm)
    if spec.kind != "ranker":
        raise ExamplesError(f"training_frame_from_nights: {arm!r} is not a ranker arm.")
    if not nights:
        raise ExamplesError(f"training_frame_from_nights: no examples for {arm!r}; run ranker_examples for the nights before the day.")
    names = feature_names(spec.encoder)
    flags = [source_column(s) for s in arm_sources(spec.base)]
    parts = []
    for f in nights:
        missing = [c for c in (SNAPSHOT_COL, "user_id", "item_id", "label", *flags, *names) if c not in f.columns]
        if missing:
            raise ExamplesError(
                f"training_frame_from_nights: examples of snapshot {f[SNAPSHOT_COL][0] if SNAPSHOT_COL in f.columns and f.height else '?'} "
                f"lack columns {missing} needed by {arm!r}; rebuild them (ranker_examples) with this arm's encoder."
            )
        part = f.filter(pl.any_horizontal([pl.col(c) > 0 for c in flags]))
        if cfg.max_train_users is not None:
            users = part.get_column("user_id").unique().sort().to_list()
            if len(users) > cfg.max_train_users:
                h = hash_u64(users, "train-users")
                keep = sorted(pl.Series(users).gather(h.argsort(kind="stable")[: cfg.max_train_users]).to_list())
                part = part.filter(pl.col("user_id").is_in(keep))
        parts.append(part.select(SNAPSHOT_COL, "user_id", "item_id", "label", *names))
    frame = pl.concat(parts).sort(SNAPSHOT_COL, "user_id", "item_id")
    per_q = frame.group_by(SNAPSHOT_COL, "user_id").agg(pl.col("label").sum().alias("pos"))
    stats = {
        "arm": arm,
        "nights": frame.get_column(SNAPSHOT_COL).n_unique(),
        "first_snapshot": str(frame.get_column(SNAPSHOT_COL).min()),
        "last_snapshot": str(frame.get_column(SNAPSHOT_COL).max()),
        "n_users": per_q.height,
        "n_rows": frame.height,
        "n_positive_rows": int(frame.get_column("label").sum()),
        "users_without_positive_candidates": int((per_q.get_column("pos") == 0).sum()),
    }
    return frame, stats


__all__ = [
    "SNAPSHOT_COL",
    "ExamplesError",
    "audit_examples",
    "examples_stats",
    "iter_night_examples",
    "next_day_labels",
    "night_examples",
    "training_frame_from_nights",
    "write_night_examples",
]
