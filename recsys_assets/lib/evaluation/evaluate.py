"""Per-user metrics of every arm on day D, per segment and scope (docs/protocol.md).

- ``full`` scope: each arm's top-K over the FULL catalogue; item-segment cells
  restrict the truth to positives of that segment, never the catalogue.
- ``cold_only`` scope: each arm ranks only the cold items at the snapshot (the
  segments the ranking stage ranked in ``cold_recs``: ``new`` under item_holdout;
  ``new`` + ``cold`` where the ranking stage ranks both, e.g. under temporal);
  truth is restricted to positives on those items, and item cells (``new`` /
  ``cold``) split it by segment. ``ranked_items`` (arm stats) records how many
  items the scope ranked: a cell with no more than K of them is ``trivial``.
- Per (user, truth item) pairs: ``PER_PAIR_SCHEMA`` rows give the rank of every
  positive of the ``all`` cell in each arm's list (null beyond the largest K),
  with the item's segment and history bucket. The two-way bootstrap of
  ``lift.py`` derives every cell's per-item contributions from them.
- Warm-up buckets: the same per-user metrics bucketed by how many interactions
  the user (or, restricting truth, the item) had at the snapshot.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from recsys_assets.lib.evaluation.metrics import RankedLists, candidate_recall, coverage, per_user_metrics, ranked_lists, slot_share
from recsys_assets.lib.parallel import map_in_order, slices
from recsys_assets.lib.snapshot import SEGMENTS, ProtocolConfig, SnapshotView

PER_USER_SCHEMA = {
    "protocol": pl.String,
    "scope": pl.String,
    "arm": pl.String,
    "segment_kind": pl.String,
    "segment": pl.String,
    "bucket_order": pl.Int32,
    "user_id": pl.String,
    "metric": pl.String,
    "k": pl.Int64,
    "value": pl.Float64,
}
PER_PAIR_SCHEMA = {
    "protocol": pl.String,
    "scope": pl.String,
    "arm": pl.String,
    "user_id": pl.String,
    "item_id": pl.String,
    "item_segment": pl.String,
    "item_bucket": pl.String,
    "rank": pl.Int32,
}
PER_USER_KEYS = ["protocol", "scope", "arm", "segment_kind", "segment", "metric", "k", "user_id"]
"""Sort order of ``per_user.parquet`` (reruns write byte-identical files)."""
PER_PAIR_KEYS = ["protocol", "scope", "arm", "user_id", "item_id"]
"""Sort order (and key) of ``per_pair.parquet``."""
RANKED_ITEMS = "ranked_items"
"""Arm-stats metric: number of items the scope ranked (catalogue size, or cold items)."""
ARM_STATS_SCHEMA = {"protocol": pl.String, "scope": pl.String, "arm": pl.String, "metric": pl.String, "k": pl.Int64, "value": pl.Float64, "n_users": pl.Int64}

# Interaction counts at the snapshot: where does ID-only catch up with text?
HISTORY_BUCKETS = ((0, 0, "0"), (1, 2, "1-2"), (3, 4, "3-4"), (5, 9, "5-9"), (10, 19, "10-19"), (20, 49, "20-49"), (50, None, "50+"))


def bucket_expr(count: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    label, order = None, None
    for i, (lo, hi, name) in enumerate(HISTORY_BUCKETS):
        cond = (count >= lo) if hi is None else count.is_between(lo, hi)
        label = pl.when(cond).then(pl.lit(name)) if label is None else label.when(cond).then(pl.lit(name))
        order = pl.when(cond).then(pl.lit(i)) if order is None else order.when(cond).then(pl.lit(i))
    return label.otherwise(None), order.otherwise(None).cast(pl.Int32)


def _cells(
    view: SnapshotView, truth: pl.DataFrame, cfg: ProtocolConfig, with_items: bool, item_segments: tuple[str, ...] = SEGMENTS
) -> list[tuple[str, str, int | None, pl.DataFrame]]:
    """(segment_kind, segment, bucket_order, truth restricted to the cell) for every cell."""
    users = truth["user_id"].unique().sort().to_list()
    useg = view.user_segments(users, cfg)
    ulabel, uorder = bucket_expr(pl.col("n_events"))
    useg = useg.with_columns(bucket=ulabel, order=uorder)
    cells = [("all", "all", None, truth)]
    for seg in SEGMENTS:
        ids = useg.filter(pl.col("user_segment") == seg)["user_id"]
        cells.append(("user", seg, None, truth.filter(pl.col("user_id").is_in(ids.implode()))))
    for (name, order), grp in useg.group_by(["bucket", "order"]):
        cells.append(("user_bucket", name, order, truth.filter(pl.col("user_id").is_in(grp["user_id"].implode()))))
    if with_items:
        ilabel, iorder = bucket_expr(pl.col("n_interactions"))
        ist = view.item_stats.select("item_id", "n_interactions", "item_segment").with_columns(bucket=ilabel, order=iorder)
        t = truth.join(ist, on="item_id", how="left")
        for seg in item_segments:
            cells.append(("item", seg, None, t.filter(pl.col("item_segment") == seg).select("user_id", "item_id")))
        if item_segments != SEGMENTS:
            return [c for c in cells if c[3].height]
        for (name, order), grp in t.group_by(["bucket", "order"]):
            if name is not None:
                cells.append(("item_bucket", name, order, grp.select("user_id", "item_id")))
    return [c for c in cells if c[3].height]


def _metrics_frame(recs: RankedLists, cell_truth: pl.DataFrame, ks, labels: dict) -> pl.DataFrame:
    users = cell_truth["user_id"].unique().sort()
    m = per_user_metrics(recs, cell_truth, users, ks)
    return m.with_columns(**{k: pl.lit(v) for k, v in labels.items()})


def cold_scope_segments(view: SnapshotView, arm_cold_recs: dict[str, pl.DataFrame]) -> tuple[str, ...]:
    """Item segments the ranking stage ranked in the cold scope: ``new``, plus ``cold`` when any arm's
    cold list holds a ``cold``-segment item (the ranking stage decides which segments it scores)."""
    ranked = pl.concat([r.select("item_id") for r in arm_cold_recs.values()]) if arm_cold_recs else pl.DataFrame(schema={"item_id": pl.String})
    segs = set(view.item_stats.join(ranked.unique(), on="item_id", how="semi")["item_segment"].to_list())
    return tuple(s for s in SEGMENTS if s == "new" or s in segs)


def pair_ranks(recs: pl.DataFrame, truth: pl.DataFrame, item_info: pl.DataFrame, kmax: int) -> pl.DataFrame:
    """(user_id, item_id, item_segment, item_bucket, rank) of every truth pair; rank null beyond ``kmax``."""
    r = recs.select(pl.col("user_id").cast(pl.String), pl.col("item_id").cast(pl.String), pl.col("rank").cast(pl.Int32)).filter(pl.col("rank") <= kmax)
    r = r.group_by("user_id", "item_id").agg(pl.col("rank").min())
    t = truth.select(pl.col("user_id").cast(pl.String), pl.col("item_id").cast(pl.String)).unique()
    return t.join(r, on=["user_id", "item_id"], how="left").join(item_info, on="item_id", how="left")


def sort_rows(frame: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """``frame.sort(keys)`` (same rows, same order: ties keep their order) with a fraction of its memory.

    Polars' multi-column sort row-encodes every key (strings included) for every row: on the 10M world's
    per-user rows (8 keys, 6 of them strings) that took ~4x the frame. Here each key column is replaced by
    its rank among the column's sorted distinct values (a string column through an ``Enum`` of its sorted
    values, whose codes follow their order), the ranks are packed into one unsigned 64-bit key, and the
    frame is gathered once by that key's stable argsort (not at all when it is already in order). Keys with nulls, or too many distinct values to
    pack into 64 bits, fall back to ``frame.sort``.
    """
    if frame.height < 2 or any(frame[k].null_count() for k in keys):
        return frame.sort(keys, maintain_order=True)
    values = [frame[k].unique().sort() for k in keys]
    if math.prod(v.len() for v in values) >= 2**63:
        return frame.sort(keys, maintain_order=True)
    packed = None
    for k, v in zip(keys, values):
        if frame[k].dtype == pl.String:
            code = frame[k].cast(pl.Enum(v)).to_physical().cast(pl.UInt64)
        else:
            code = frame.select(pl.col(k).rank("dense").cast(pl.UInt64) - 1).to_series()
        packed = code if packed is None else packed * v.len() + code
        del code
    key = packed.to_numpy()
    del packed
    if bool((key[1:] >= key[:-1]).all()):
        # Already in order (e.g. protocols evaluated one after the other): no gather. One chunk, as a sort
        # returns it: Parquet row groups follow a frame's chunks, and the file's bytes must not depend on them.
        return frame.rechunk()
    return frame[np.argsort(key, kind="stable")]


class FrameSpill:
    """Frames of one schema kept as lz4-compressed Arrow IPC bytes until :meth:`collect`.

    The per-user rows of a day are tens of millions of short rows in thousands of small frames; held
    as frames they cost several times their size (10M world: ~3 GiB of RSS per protocol for ~0.6 GiB
    of rows). Compressed, a block's rows take a few MiB, and ``collect`` builds the one frame once.
    IPC keeps every dtype and value, so the collected frame equals ``pl.concat`` of the frames.
    """

    def __init__(self, schema: dict) -> None:
        self.schema, self._parts = schema, []

    def add(self, frames: list[pl.DataFrame]) -> None:
        """Spill ``frames`` (cast to the schema) as one part; an empty list adds nothing."""
        if not frames:
            return
        import io

        buf = io.BytesIO()
        pl.concat([f.select(list(self.schema)).cast(self.schema) for f in frames]).write_ipc(buf, compression="lz4")
        self._parts.append(buf.getvalue())

    def collect(self) -> pl.DataFrame:
        """Every spilled row in the order added (an empty frame of the schema when none); the spill is emptied."""
        import io

        parts, self._parts = self._parts, []
        if not parts:
            return pl.DataFrame(schema=self.schema)
        frames = []
        while parts:
            frames.append(pl.read_ipc(io.BytesIO(parts.pop(0))))
        return pl.concat(frames, rechunk=False)


def _of_users(frame: pl.DataFrame | pl.LazyFrame, users: pl.Series) -> pl.DataFrame:
    """Rows of ``users`` (a lazy frame is read for them only)."""
    rows = frame.filter(pl.col("user_id").is_in(users.implode()))
    return rows.collect() if isinstance(rows, pl.LazyFrame) else rows


def evaluate_view(
    view: SnapshotView,
    truth: pl.DataFrame,
    arm_recs: dict[str, pl.DataFrame],
    arm_cold_recs: dict[str, pl.DataFrame],
    arm_candidates: dict[str, pl.DataFrame | pl.LazyFrame],
    cfg: ProtocolConfig,
    ks: tuple[int, ...] = (10, 20),
    block_users: int | None = None,
    threads: int = 1,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Per-user metrics (PER_USER_SCHEMA), arm-level stats (ARM_STATS_SCHEMA) and per-pair ranks
    (PER_PAIR_SCHEMA) for one protocol, each sorted by its keys.

    The truth users are evaluated ``block_users`` at a time (None: all at once): every per-user row
    and pair depends on its user only, so the outputs are the same whatever the block size, and the
    cell frames (and a lazy ``arm_candidates`` pool, read per block) grow with a block, not the day.
    ``threads`` blocks are evaluated side by side (:func:`parallel.map_in_order`; the same outputs).
    The arm stats (coverage, slot shares) are over every served user's list, as before.
    """
    stats: list[dict] = []
    per_user_spill, per_pair_spill = FrameSpill(PER_USER_SCHEMA), FrameSpill(PER_PAIR_SCHEMA)
    kmax = max(ks)
    cold_segments = cold_scope_segments(view, arm_cold_recs)
    cold_items = view.item_stats.filter(pl.col("item_segment").is_in(list(cold_segments)))["item_id"]
    cold_truth = truth.filter(pl.col("item_id").is_in(cold_items.implode()))
    item_segments = view.item_stats.select("item_id", pl.col("item_segment").alias("segment"))
    ilabel, _ = bucket_expr(pl.col("n_interactions"))
    item_info = view.item_stats.select(pl.col("item_id").cast(pl.String), pl.col("item_segment").cast(pl.String), ilabel.alias("item_bucket"))
    users = truth["user_id"].unique().sort()
    size = max(1, block_users or users.len())
    cand_recall: dict[str, list[pl.DataFrame]] = {arm: [] for arm in arm_recs if arm in arm_candidates}

    def block_rows(block: pl.Series) -> tuple[list[pl.DataFrame], list[pl.DataFrame], dict[str, pl.DataFrame]]:
        """A block's per-user frames, pair frames and candidate recall per arm."""
        frames, pairs, recall = [], [], {}
        b_truth, b_cold_truth = _of_users(truth, block), _of_users(cold_truth, block)
        full_cells = _cells(view, b_truth, cfg, with_items=True)
        cold_cells = _cells(view, b_cold_truth, cfg, with_items=len(cold_segments) > 1, item_segments=cold_segments) if b_cold_truth.height else []
        for arm, all_recs in arm_recs.items():
            recs = _of_users(all_recs, block)
            lists = ranked_lists(recs, kmax)  # checked once, scored against every cell
            for kind, seg, order, cell_truth in full_cells:
                frames.append(_metrics_frame(lists, cell_truth, ks, {"protocol": view.protocol, "scope": "full", "arm": arm, "segment_kind": kind, "segment": seg, "bucket_order": order}))
            pairs.append(pair_ranks(recs, b_truth, item_info, kmax).with_columns(protocol=pl.lit(view.protocol), scope=pl.lit("full"), arm=pl.lit(arm)))
            if arm in cand_recall:
                recall[arm] = candidate_recall(_of_users(arm_candidates[arm], block), b_truth)
            if arm in arm_cold_recs and cold_cells:
                cold_recs = _of_users(arm_cold_recs[arm], block)
                cold_lists = ranked_lists(cold_recs, kmax)
                for kind, seg, order, cell_truth in cold_cells:
                    frames.append(_metrics_frame(cold_lists, cell_truth, ks, {"protocol": view.protocol, "scope": "cold_only", "arm": arm, "segment_kind": kind, "segment": seg, "bucket_order": order}))
                pairs.append(pair_ranks(cold_recs, b_cold_truth, item_info, kmax).with_columns(protocol=pl.lit(view.protocol), scope=pl.lit("cold_only"), arm=pl.lit(arm)))
        return frames, pairs, recall

    for frames, pairs, recall in map_in_order(block_rows, slices(users, size), threads):
        # A block's rows go to compressed spills: memory holds a few blocks' frames, not the day's.
        per_user_spill.add(frames)
        per_pair_spill.add(pairs)
        for arm, frame in recall.items():
            cand_recall[arm].append(frame)
        del frames, pairs
    n_users = users.len()
    for arm, recs in arm_recs.items():
        stats.append({"protocol": view.protocol, "scope": "full", "arm": arm, "metric": RANKED_ITEMS, "k": 0, "value": float(view.catalog.height), "n_users": n_users})
        for k in ks:
            stats.append({"protocol": view.protocol, "scope": "full", "arm": arm, "metric": "coverage", "k": k, "value": coverage(recs, view.catalog.height, k), "n_users": n_users})
            for seg, share in slot_share(recs, item_segments, k).items():
                stats.append({"protocol": view.protocol, "scope": "full", "arm": arm, "metric": f"slot_share_{seg}", "k": k, "value": share, "n_users": n_users})
        if arm in cand_recall:
            # Blocks follow the sorted users, so this is the column one call over all users gives.
            cr = pl.concat(cand_recall[arm]).rechunk() if cand_recall[arm] else pl.DataFrame(schema={"user_id": pl.String, "value": pl.Float64})
            stats.append({"protocol": view.protocol, "scope": "full", "arm": arm, "metric": "candidate_recall", "k": 0, "value": float(cr["value"].mean()), "n_users": cr.height})
        if arm in arm_cold_recs and cold_truth.height:
            stats.append({"protocol": view.protocol, "scope": "cold_only", "arm": arm, "metric": RANKED_ITEMS, "k": 0, "value": float(cold_items.len()), "n_users": cold_truth["user_id"].n_unique()})
    per_user = sort_rows(per_user_spill.collect(), PER_USER_KEYS)
    return (
        per_user,
        pl.DataFrame(stats, schema=ARM_STATS_SCHEMA).sort("protocol", "scope", "arm", "metric", "k"),
        sort_rows(per_pair_spill.collect(), PER_PAIR_KEYS),
    )


def arm_metrics_table(per_user: pl.DataFrame) -> pl.DataFrame:
    """Mean of each per-user metric per cell (the ``arm_metrics`` rows, without day/config columns)."""
    return (
        per_user.filter(pl.col("segment_kind").is_in(["all", "user", "item"]))
        .group_by("protocol", "scope", "arm", "segment_kind", "segment", "metric", "k")
        .agg(pl.col("value").mean(), pl.col("user_id").n_unique().alias("n_users"))
        .sort("protocol", "scope", "arm", "segment_kind", "segment", "metric", "k")
    )
