"""Typed ingest configuration: how landing files map onto the normalized schema."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone


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

    min_ts: datetime = datetime(1990, 1, 1, tzinfo=timezone.utc)
    """Earliest plausible timestamp; older rows are quarantined as out of range."""

    max_future_days: int = 1
    """Rows more than this many days after the ingest time are quarantined as out of range."""

    rating_range: tuple[float, float] = (0.0, 10.0)
    """Inclusive range of ``value`` for ``rating`` events."""

    max_value: float = 1e6
    """Largest accepted ``value`` for non-rating events (e.g. a quantity)."""

    def canonical(self, name: str) -> str:
        return self.field_map.get(name, name)
