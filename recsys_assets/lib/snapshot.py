"""Snapshots and protocols: exactly which events, items and users each model may see.

For the evaluated day D (docs/protocol.md):

- ``serve`` view: model inputs are events with ts < D; the catalogue is every
  item available by D; truth is day D's positives minus pairs seen before D.
- ``train`` view (ranker labels): model inputs are events with ts < D - w; the
  catalogue is every item available before D; labels are the positives of
  [D - w, D) minus pairs seen before D - w. The ranker never sees day D.
- ``item_holdout`` protocol: a deterministic fraction of items has its history
  removed from every model input (ALS, popularity, profiles, segments) until
  D, while label-window interactions with those items remain labels.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Literal

import polars as pl

from recsys_assets.lib.confighash import config_hash
from recsys_assets.lib.errors import LeakageError, RecsysError
from recsys_assets.lib.interactions import InteractionConfig, positives

PROTOCOLS = ("temporal", "item_holdout")
SEGMENTS = ("new", "cold", "warming", "warm")
Stage = Literal["serve", "train"]


@dataclass(frozen=True)
class ProtocolConfig:
    """What each snapshot contains and how users/items are segmented."""

    protocols: tuple[str, ...] = PROTOCOLS
    """Protocols evaluated every day: ``temporal`` and/or ``item_holdout``."""
    holdout_fraction: float = 0.2
    """item_holdout: share of items (by a salted hash of the id) whose pre-D history is hidden."""
    holdout_salt: str = "item-holdout-v1"
    """Salt of that hash; change it to draw another deterministic holdout set."""
    label_window_days: int = 14
    """w: ranker labels come from [D - w, D), scored by models fit on events before D - w."""
    segment_edges: tuple[int, int, int] = (1, 5, 20)
    """Interaction counts where segments start: new < 1 <= cold < 5 <= warming < 20 <= warm."""
    recent_days: int = 14
    """Window of the recent-popularity signal and the popularity arm."""

    def __post_init__(self) -> None:
        unknown = set(self.protocols) - set(PROTOCOLS)
        if unknown:
            raise RecsysError(f"unknown protocol(s) {sorted(unknown)}; choose from {PROTOCOLS}")
        if not 0 < self.holdout_fraction < 1:
            raise RecsysError(f"holdout_fraction must be in (0, 1), got {self.holdout_fraction}")

    def config_hash(self) -> str:
        return config_hash(self)


def frame_hash(frame: pl.DataFrame) -> tuple[int, int]:
    """(rows, sum of row hashes): the same for the same rows in any order; a changed row changes it."""
    return frame.height, int(frame.hash_rows(seed=0).cast(pl.UInt64).sum()) if frame.height else 0


def day_start(d: date) -> datetime:
    return datetime.combine(d, time(0), tzinfo=timezone.utc)


def holdout_items(item_ids: list[str], cfg: ProtocolConfig) -> set[str]:
    """Deterministic holdout set: items whose salted sha1 falls below the fraction."""
    cut = int(cfg.holdout_fraction * 2**32)
    return {i for i in item_ids if int.from_bytes(hashlib.sha1(f"{cfg.holdout_salt}:{i}".encode()).digest()[:4], "big") < cut}


def segment_expr(count: pl.Expr, cfg: ProtocolConfig) -> pl.Expr:
    a, b, c = cfg.segment_edges
    return (
        pl.when(count < a)
        .then(pl.lit("new"))
        .when(count < b)
        .then(pl.lit("cold"))
        .when(count < c)
        .then(pl.lit("warming"))
        .otherwise(pl.lit("warm"))
    )


def stage_cutoff(day: date, stage: Stage, cfg: ProtocolConfig) -> date:
    """Model inputs of a view are events with ts < this day: D for ``serve``, D - w for ``train``."""
    return day if stage == "serve" else day - timedelta(days=cfg.label_window_days)


@dataclass(frozen=True)
class ViewKey:
    """Which view a model was built for (day, protocol, stage and cutoff), without its events: what
    :func:`audit_provenance` compares an artifact's recorded provenance with."""

    day: date
    cutoff: date
    protocol: str
    stage: Stage

    @classmethod
    def of(cls, day: date, protocol: str, stage: Stage, cfg: ProtocolConfig) -> "ViewKey":
        return cls(day=day, cutoff=stage_cutoff(day, stage, cfg), protocol=protocol, stage=stage)


@dataclass
class SnapshotView:
    """Everything one stage of one protocol may look at."""

    day: date
    """The evaluated day D."""
    cutoff: date
    """Model inputs are events with ts < cutoff (D for serve, D - w for train)."""
    protocol: str
    stage: Stage
    history: pl.DataFrame
    """Model-input events (holdout items removed in item_holdout)."""
    seen: pl.DataFrame
    """(user_id, item_id) pairs the user really interacted with before cutoff: excluded from recs and truth."""
    catalog: pl.DataFrame
    """Items that can be recommended (item_id + text/metadata columns)."""
    holdout: frozenset[str] = field(default_factory=frozenset)
    item_stats: pl.DataFrame = field(default_factory=pl.DataFrame)
    """catalog items: item_id, n_interactions, n_recent, item_segment, age_days."""
    user_stats: pl.DataFrame = field(default_factory=pl.DataFrame)
    """users with history: user_id, n_events; others are segment ``new``."""
    _history_hash: str | None = field(default=None, repr=False, compare=False)

    def history_hash(self) -> str:
        """Content hash of ``history`` (order-independent; computed once): two views with the same hash fed
        their models the same events, whatever day and stage they belong to."""
        if self._history_hash is None:
            rows, total = frame_hash(self.history)
            self._history_hash = hashlib.sha256(f"{rows}|{total}|{','.join(self.history.columns)}".encode()).hexdigest()[:16]
        return self._history_hash

    def provenance(self) -> dict:
        """What a model fitted on this view is built from: recorded in its artifact's meta, read by the audit."""
        newest = self.history["ts"].max() if self.history.height else None
        return {
            "snapshot": self.day.isoformat(),
            "protocol": self.protocol,
            "stage": self.stage,
            "data_cutoff": day_start(self.cutoff).isoformat(),
            "events_max_ts": newest.isoformat() if newest is not None else None,
            "n_events": self.history.height,
            "history_hash": self.history_hash(),
        }

    def user_segments(self, user_ids: list[str], cfg: ProtocolConfig) -> pl.DataFrame:
        """(user_id, n_events, user_segment) for the given users; unknown users are ``new`` with 0 events."""
        frame = pl.DataFrame({"user_id": pl.Series(user_ids, dtype=pl.String)})
        out = frame.join(self.user_stats, on="user_id", how="left").with_columns(pl.col("n_events").fill_null(0))
        return out.with_columns(user_segment=segment_expr(pl.col("n_events"), cfg))


def build_view(
    events_before_day: pl.DataFrame,
    items: pl.DataFrame,
    day: date,
    protocol: str,
    stage: Stage,
    cfg: ProtocolConfig,
) -> SnapshotView:
    """The model-input view of one stage of one protocol for evaluated day ``day``.

    ``events_before_day`` must hold only events with ts < day (checked).
    """
    if events_before_day.height and events_before_day["ts"].max() >= day_start(day):
        raise LeakageError(f"events given for snapshot {day} include ts >= {day}: {events_before_day['ts'].max()}")
    cutoff = stage_cutoff(day, stage, cfg)
    real = events_before_day.filter(pl.col("ts") < day_start(cutoff))
    # Items available on the served day (serve) or during the label window (train).
    last_available = day if stage == "serve" else day - timedelta(days=1)
    catalog = items.filter(pl.col("first_seen_day").is_null() | (pl.col("first_seen_day") <= last_available))
    hold: frozenset[str] = frozenset()
    history = real
    if protocol == "item_holdout":
        hold = frozenset(holdout_items(catalog["item_id"].to_list(), cfg))
        history = real.filter(~pl.col("item_id").is_in(list(hold)))
    seen = real.select("user_id", "item_id").unique()
    recent_start = day_start(cutoff - timedelta(days=cfg.recent_days))
    counts = history.group_by("item_id").agg(
        pl.len().alias("n_interactions"),
        (pl.col("ts") >= recent_start).sum().alias("n_recent"),
        pl.col("ts").min().alias("_first_ts"),
    )
    item_stats = (
        catalog.select("item_id", "first_seen_day", "created_at")
        .join(counts, on="item_id", how="left")
        .with_columns(
            pl.col("n_interactions").fill_null(0).cast(pl.Int64),
            pl.col("n_recent").fill_null(0).cast(pl.Int64),
        )
        .with_columns(
            item_segment=segment_expr(pl.col("n_interactions"), cfg),
            # Age as the model could know it: from created_at, else from the first visible event.
            # Items released after the cutoff (inside a label window) are "brand new" (age 0),
            # as new items are when served: a negative age would be a train-only signal.
            age_days=(
                (pl.lit(day_start(cutoff)) - pl.coalesce(pl.col("created_at"), pl.col("_first_ts"))).dt.total_hours().cast(pl.Float32)
                / 24.0
            ).clip(lower_bound=0.0),
        )
        .drop("_first_ts", "first_seen_day", "created_at")
    )
    user_stats = history.group_by("user_id").agg(pl.len().alias("n_events").cast(pl.Int64))
    return SnapshotView(
        day=day,
        cutoff=cutoff,
        protocol=protocol,
        stage=stage,
        history=history,
        seen=seen,
        catalog=catalog,
        holdout=hold,
        item_stats=item_stats,
        user_stats=user_stats,
    )


def positives_excluding_seen(events: pl.DataFrame, seen: pl.DataFrame, inter: InteractionConfig, catalog_ids: pl.Series | None = None) -> pl.DataFrame:
    """Positive (user_id, item_id) pairs of ``events`` the user had not interacted with before."""
    pos = positives(events, inter).join(seen, on=["user_id", "item_id"], how="anti")
    if catalog_ids is not None:
        pos = pos.filter(pl.col("item_id").is_in(catalog_ids.implode()))
    return pos.sort("user_id", "item_id")


def labels_for_train(view: SnapshotView, events_before_day: pl.DataFrame, inter: InteractionConfig) -> pl.DataFrame:
    """Ranker labels: positives in [D - w, D), including holdout items (docs/protocol.md)."""
    assert view.stage == "train"
    # Bounded on both sides: day D is the truth and never a label, whatever the caller passed.
    window = events_before_day.filter((pl.col("ts") >= day_start(view.cutoff)) & (pl.col("ts") < day_start(view.day)))
    return positives_excluding_seen(window, view.seen, inter, view.catalog["item_id"])


def audit_provenance(view: SnapshotView | ViewKey, metas: dict[str, dict]) -> list[str]:
    """Problems in what the view's artifacts say they were built from (empty = clean).

    ``metas``: artifact name -> its meta. Each must record a provenance (see
    ``lib.artifacts.recorded_provenance``) for this snapshot, protocol and stage whose newest
    event lies before the view's cutoff (D for serve, D - w for train).
    """
    problems = []
    where = f"{view.protocol}/{view.stage}"
    cutoff = day_start(view.cutoff)
    for name, meta in sorted(metas.items()):
        prov = (meta or {}).get("provenance")
        if not prov:
            problems.append(f"{where}: {name} records no provenance (data cutoff unknown)")
            continue
        expected = {"snapshot": view.day.isoformat(), "protocol": view.protocol, "stage": view.stage}
        wrong = {k: prov.get(k) for k, v in expected.items() if prov.get(k) != v}
        if wrong:
            problems.append(f"{where}: {name} was built for {wrong}, not {expected}")
        newest = prov.get("events_max_ts")
        if newest is not None and datetime.fromisoformat(newest) >= cutoff:
            problems.append(f"{where}: {name} was fitted on events up to {newest} >= cutoff {cutoff.isoformat()}")
        if datetime.fromisoformat(prov["data_cutoff"]) > cutoff:
            problems.append(f"{where}: {name} has data cutoff {prov['data_cutoff']} after {cutoff.isoformat()}")
    return problems


def audit_leakage(view: SnapshotView, labels: pl.DataFrame | None = None, label_events_max_ts: datetime | None = None) -> list[str]:
    """Problems found (empty = clean). Raising is the caller's choice (the asset fails loudly)."""
    problems = []
    if view.history.height and view.history["ts"].max() >= day_start(view.cutoff):
        problems.append(f"{view.protocol}/{view.stage}: model input has ts {view.history['ts'].max()} >= cutoff {view.cutoff}")
    if view.holdout and view.history.filter(pl.col("item_id").is_in(list(view.holdout))).height:
        problems.append(f"{view.protocol}/{view.stage}: held-out items appear in model inputs")
    n_hist = view.history.group_by("item_id").len()
    mismatch = view.item_stats.join(n_hist, on="item_id", how="left").filter(pl.col("len").fill_null(0) != pl.col("n_interactions"))
    if mismatch.height:
        problems.append(f"{view.protocol}/{view.stage}: {mismatch.height} item segments not computed from the snapshot's inputs")
    if label_events_max_ts is not None and label_events_max_ts >= day_start(view.day):
        problems.append(f"{view.protocol}/{view.stage}: ranker labels use events at {label_events_max_ts} >= day {view.day}")
    return problems
