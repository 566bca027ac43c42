"""A tiny synthetic lake and the Dagster calls that fill it (shared by the defs/ and e2e/ tests).

16 days x 10,000 events (the generator's minimum), tfidf only, few ALS factors and bootstrap
resamples: the whole day graph of the last day runs in ~5 s on two busy cores.
"""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg

from recsys_assets.defs.resources import IngestResource, LakeResource, ModelsResource
from recsys_assets.lib.ingest.synthetic import SyntheticConfig, generate_synthetic_world
from recsys_assets.lib.lake import Lake

TINY = SyntheticConfig(n_users=150, n_items=120, n_events=10_000, n_topics=4, n_days=16, start_day="2024-03-01", seed=5)
DAYS = [TINY.start + timedelta(days=i) for i in range(TINY.n_days)]
LAST_DAY = DAYS[-1]
INGEST = ("staged_events", "items", "users")
DAY_GROUPS = ("features", "ranking", "reports")


def tiny_models(encoders: str = "tfidf") -> ModelsResource:
    return ModelsResource(
        encoders=encoders, n_boot=50, als_factors=8, als_iterations=3, rollup_days=7,
        protocols="temporal", label_window_days=5, device="cpu",
    )


def resources(root: str, encoders: str = "tfidf") -> dict:
    return {"lake": LakeResource(root=root), "ingest": IngestResource(), "models": tiny_models(encoders)}


def all_assets() -> list:
    from recsys_assets.definitions import defs

    return list(defs.assets)


def make_world(root: str) -> Lake:
    lake = Lake.at(root)
    generate_synthetic_world(lake, TINY)
    return lake


def materialize_ingest(root: str, start: date = DAYS[0], end: date = LAST_DAY, **kw) -> tuple:
    """catalog_job's assets, then one events run over [start, end] (as `recsys-assets ingest`)."""
    res = resources(root)
    cat = dg.materialize(all_assets(), selection=dg.AssetSelection.assets(*INGEST), resources=res, **kw)
    tags = {"dagster/asset_partition_range_start": start.isoformat(), "dagster/asset_partition_range_end": end.isoformat()}
    ev = dg.materialize(all_assets(), selection=dg.AssetSelection.assets("events"), resources=res, tags=tags, **kw)
    return cat, ev


def materialize_day(root: str, day: date = LAST_DAY, encoders: str = "tfidf", **kw) -> dg.ExecuteInProcessResult:
    """day_job's selection (features, ranking, reports) for one partition."""
    return dg.materialize(
        all_assets(), selection=dg.AssetSelection.groups(*DAY_GROUPS), resources=resources(root, encoders),
        partition_key=day.isoformat(), **kw,
    )


def metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    out: dict = {}
    for ev in result.get_asset_materialization_events():
        if ev.materialization.asset_key.to_user_string() == asset:
            out = {k: v.value for k, v in ev.materialization.metadata.items()}
    return out


def materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    return {ev.materialization.asset_key.to_user_string() for ev in result.get_asset_materialization_events()}
