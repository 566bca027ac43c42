"""Great Expectations suites for published partitions (run as blocking Dagster asset checks).

GE 1.x has no polars datasource, so frames are validated through pandas with an
ephemeral context; progress bars and analytics are off.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache

import polars as pl

from recsys_assets.lib.ingest.config import IngestConfig
from recsys_assets.lib.schema import EVENT_SCHEMA, EVENT_TYPES


@dataclass
class ExpectationOutcome:
    name: str
    column: str
    success: bool
    unexpected_count: int
    examples: list
    rows: list[int] = field(default_factory=list)
    """0-based positions of (some of) the failing rows in the validated frame."""


@dataclass
class SuiteOutcome:
    suite: str
    success: bool
    outcomes: list[ExpectationOutcome]

    def failures(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]

    def summary(self, provenance: pl.DataFrame | None = None) -> str:
        """One line per failed expectation; with ``provenance`` (source_file, line per validated row) it names the landing rows."""
        bad = self.failures()
        if not bad:
            return f"{self.suite}: all {len(self.outcomes)} expectations passed"
        parts = []
        for o in bad:
            text = f"{o.name}({o.column}) failed on {o.unexpected_count} rows, e.g. {o.examples[:3]}"
            if provenance is not None and o.rows:
                where = [
                    f"{provenance['source_file'][i]}:{provenance['line'][i]}"
                    for i in o.rows[:3]
                    if 0 <= i < provenance.height
                ]
                if where:
                    text += f" at {', '.join(where)}"
            parts.append(text)
        return f"{self.suite}: " + "; ".join(parts)


@lru_cache(maxsize=1)
def _context():
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    batch_def = ctx.data_sources.add_pandas("frames").add_dataframe_asset("frame").add_batch_definition_whole_dataframe("whole")
    return gx, batch_def


def _run(suite_name: str, df: pl.DataFrame, expectations: list) -> SuiteOutcome:
    gx, batch_def = _context()
    suite = gx.ExpectationSuite(name=suite_name, expectations=expectations)
    pdf = df.to_pandas()
    result = batch_def.get_batch(batch_parameters={"dataframe": pdf}).validate(suite, result_format="SUMMARY")
    outcomes = []
    for r in result.results:
        cfg = r.expectation_config
        outcomes.append(
            ExpectationOutcome(
                name=cfg.type,
                column=str(cfg.kwargs.get("column", cfg.kwargs.get("column_list", ""))),
                success=bool(r.success),
                unexpected_count=int(r.result.get("unexpected_count") or 0),
                examples=[str(x) for x in (r.result.get("partial_unexpected_list") or [])[:5]],
                rows=[int(i) for i in (r.result.get("partial_unexpected_index_list") or [])[:5] if isinstance(i, int)],
            )
        )
    return SuiteOutcome(suite=suite_name, success=bool(result.success), outcomes=outcomes)


def _event_suite(events: pl.DataFrame, suite_name: str, catalog_item_ids: pl.Series, cfg: IngestConfig) -> SuiteOutcome:
    """Run the events suite on rows carrying their partition day in ``_day``."""
    gx, _ = _context()
    E = gx.expectations
    frame = events.with_columns(
        # GE compares plain numbers reliably; microseconds since the row's partition day started.
        _us_into_day=(pl.col("ts") - pl.col("_day").cast(pl.Datetime("us", "UTC"))).dt.total_microseconds(),
        _in_catalog=pl.col("item_id").is_in(catalog_item_ids.implode()),
        _rating_ok=pl.when(pl.col("event_type") == "rating")
        .then(pl.col("value").is_between(*cfg.rating_range))
        .otherwise(pl.col("value").is_between(0, cfg.max_value)),
        event_type=pl.col("event_type").cast(pl.String),
    ).drop("_day")
    exps = [
        E.ExpectTableColumnsToMatchOrderedList(column_list=list(EVENT_SCHEMA) + ["_us_into_day", "_in_catalog", "_rating_ok"]),
        *[E.ExpectColumnValuesToNotBeNull(column=c) for c in EVENT_SCHEMA],
        E.ExpectColumnValuesToBeUnique(column="event_id"),
        E.ExpectColumnValuesToBeBetween(column="_us_into_day", min_value=0, max_value=int(timedelta(days=1).total_seconds() * 1e6) - 1),
        E.ExpectColumnValuesToBeInSet(column="event_type", value_set=list(EVENT_TYPES)),
        E.ExpectColumnValuesToBeInSet(column="_rating_ok", value_set=[True]),
        E.ExpectColumnValuesToBeInSet(column="_in_catalog", value_set=[True]),
    ]
    return _run(suite_name, frame, exps)


def _schema_outcome(events: pl.DataFrame) -> ExpectationOutcome | None:
    if dict(events.schema) == EVENT_SCHEMA:
        return None
    return ExpectationOutcome("schema_matches_contract", "*", False, events.height, [str(dict(events.schema))])


def validate_events(events: pl.DataFrame, day: date, catalog_item_ids: pl.Series, cfg: IngestConfig) -> SuiteOutcome:
    """Schema, nulls, ts inside the day, value ranges, known types, item ids in the catalog."""
    bad_schema = _schema_outcome(events)
    if bad_schema:
        return SuiteOutcome(f"events_{day.isoformat()}", False, [bad_schema])
    return _event_suite(events.with_columns(_day=pl.lit(day)), f"events_{day.isoformat()}", catalog_item_ids, cfg)


def validate_event_days(parts: list[tuple[date, pl.DataFrame]], catalog_item_ids: pl.Series, cfg: IngestConfig) -> dict[date, SuiteOutcome]:
    """The events suite over many days: one GE run for all (fast path), per day only to locate failures.

    Event ids are unique per day (a re-delivered event shares its day), so the
    pooled uniqueness expectation is the same test as the per-day one.
    """
    if not parts:
        return {}
    bad = {d: _schema_outcome(df) for d, df in parts}
    if not any(bad.values()):
        pooled = pl.concat([df.with_columns(_day=pl.lit(d)) for d, df in parts])
        outcome = _event_suite(pooled, f"events_{parts[0][0]}..{parts[-1][0]}", catalog_item_ids, cfg)
        if outcome.success:
            return {d: outcome for d, _ in parts}
    return {d: validate_events(df, d, catalog_item_ids, cfg) for d, df in parts}


def validate_items(items: pl.DataFrame) -> SuiteOutcome:
    gx, _ = _context()
    E = gx.expectations
    exps = [
        E.ExpectColumnValuesToNotBeNull(column="item_id"),
        E.ExpectColumnValuesToBeUnique(column="item_id"),
        E.ExpectColumnValuesToNotBeNull(column="text_hash"),
    ]
    return _run("items", items.select("item_id", "text_hash", "first_seen_day"), exps)
