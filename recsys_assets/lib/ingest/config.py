"""Typed ingest configuration: how landing files map onto the normalized schema."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date, datetime, time, timezone

PARTITIONS_START_ENV = "RECSYS_PARTITIONS_START"
"""Environment variable naming the first daily partition (ISO day)."""
DEFAULT_PARTITIONS_START = "1997-09-01"
"""The first daily partition when ``$RECSYS_PARTITIONS_START`` is unset (MovieLens-100k starts 1997-09-20)."""


def partitions_start() -> date:
    """The first day of the daily partitions: ``$RECSYS_PARTITIONS_START`` or 1997-09-01.

    Ingest quarantines events before it (they have no partition to go to), so
    one old row never stops a night; set the variable to an earlier day (for
    the Dagster UI as well as the CLI) to keep older data.
    """
    text = os.environ.get(PARTITIONS_START_ENV) or DEFAULT_PARTITIONS_START
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        from recsys_assets.lib.errors import RecsysError

        raise RecsysError(f"{PARTITIONS_START_ENV}={text!r} is not a day (want YYYY-MM-DD)") from None


def _partitions_start_ts() -> datetime:
    return datetime.combine(partitions_start(), time(), tzinfo=timezone.utc)


@dataclass(frozen=True)
class IngestConfig:
    """How raw landing rows become normalized events."""

    field_map: dict[str, str] = field(default_factory=dict)
    """Landing field name -> normalized name, e.g. ``{"uid": "user_id", "time": "ts"}``."""

    event_type_map: dict[str, str] = field(
        default_factory=lambda: {
            "view": "view",
            "impression": "view",
            "click": "click",
            "cart": "cart",
            "add_to_cart": "cart",
            "purchase": "purchase",
            "buy": "purchase",
            "rating": "rating",
            "rate": "rating",
        }
    )
    """Raw event type (lower-cased) -> one of view/click/cart/purchase/rating; others are quarantined."""

    min_ts: datetime = field(default_factory=_partitions_start_ts)
    """Earliest accepted timestamp (default: the first daily partition, ``partitions_start()``); older rows are quarantined as out of range."""

    max_future_days: int = 1
    """Rows more than this many days after the ingest time are quarantined as out of range."""

    rating_range: tuple[float, float] = (0.0, 10.0)
    """Inclusive range of ``value`` for ``rating`` events."""

    max_value: float = 1e6
    """Largest accepted ``value`` for non-rating events (e.g. a quantity)."""

    image_vector_dim: int = 0
    """Length every item ``image_vector`` must have; 0 = the most common length in the landing items (others are quarantined)."""

    def canonical(self, name: str) -> str:
        return self.field_map.get(name, name)
