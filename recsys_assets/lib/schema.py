"""Normalized schemas of the lake (the contract other stages and analysts rely on)."""

from __future__ import annotations

import polars as pl

EVENT_TYPES = ("view", "click", "cart", "purchase", "rating")
EventType = pl.Enum(list(EVENT_TYPES))
UTC_TS = pl.Datetime("us", "UTC")

EVENT_SCHEMA: dict[str, pl.DataType] = {
    "event_id": pl.String(),
    "user_id": pl.String(),
    "item_id": pl.String(),
    "event_type": EventType,
    "value": pl.Float32(),
    "ts": UTC_TS,
}

QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "source_file": pl.String(),
    "line": pl.Int64(),
    "field": pl.String(),
    "reason": pl.String(),
    "raw": pl.String(),
}

ITEM_SCHEMA: dict[str, pl.DataType] = {
    "item_id": pl.String(),
    "title": pl.String(),
    "description": pl.String(),
    "categories": pl.List(pl.String()),
    "year": pl.Int32(),
    "created_at": UTC_TS,
    "attributes": pl.String(),  # free "key: value; key: value" text, optional
    "image_vector": pl.List(pl.Float32()),  # optional precomputed vector (multimodal input)
    "first_seen_day": pl.Date(),
    "text_hash": pl.String(),
}

USER_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.String(),
    "profile": pl.String(),
    "first_seen_day": pl.Date(),
}

# Landing-file field names (bring-your-own logs); mappable by IngestConfig.
LANDING_EVENT_FIELDS = ("user_id", "item_id", "event_type", "ts", "value")
LANDING_ITEM_FIELDS = ("item_id", "title", "description", "categories", "created_at", "year", "attributes")
LANDING_USER_FIELDS = ("user_id", "profile")
