"""The study's work of one night: what the ``encoder_study`` asset calls for day D.

1. ``content_attributes`` (new users' profile attributes as plain categories) is evaluated on
   day D's new-user cell, per protocol, and stored next to the day's evaluation files.
2. Every configured encoder's cost is measured on this machine (once per model version).
3. The window ending D is pooled (only days evaluated under D's configuration, as ``lift_rollup``
   pools them) and the three tables are computed (``tables``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date

import polars as pl

from recsys_assets.lib.day import DaySnapshot
from recsys_assets.lib.errors import ModelUnavailableError
from recsys_assets.lib.evaluation.reporting import load_per_pair, load_per_user
from recsys_assets.lib.features.nightly import available_items
from recsys_assets.lib.study.cost import EncoderCost, measure_encoder_cost
from recsys_assets.lib.study.new_users import AttributeConfig, attribute_arm_eval
from recsys_assets.lib.study.plan import StudyConfig, fusion_variants, load_student_modules
from recsys_assets.lib.study.tables import (
    encoder_study_rows,
    fusion_rows,
    new_user_rows,
    pooled_study_window,
    save_attribute_eval,
)


@dataclass
class StudyTables:
    """The study's rows of one window, and what it measured."""

    encoder_study: pl.DataFrame
    """``reports.encoder_study`` rows."""
    fusion_ablation: pl.DataFrame
    """``reports.fusion_ablation`` rows."""
    new_user_text: pl.DataFrame
    """``reports.new_user_text`` rows."""
    costs: dict[str, EncoderCost] = field(default_factory=dict)
    """Cost of every encoder that could be measured."""
    unavailable: dict[str, str] = field(default_factory=dict)
    """Encoders whose cost could not be measured, and why."""
    days: list[date] = field(default_factory=list)
    """Evaluated days pooled."""
    excluded: dict[date, str] = field(default_factory=dict)
    """Evaluated days of the window left out of the pool (another configuration), and why."""


def evaluate_attribute_arm(snap: DaySnapshot, users: pl.DataFrame, attr: AttributeConfig) -> int:
    """Evaluate ``content_attributes`` on day D's new-user cell of every protocol; returns users evaluated."""
    lake, day = snap.lake, snap.day
    # Only the rows attribute_arm_eval reads: the popularity arm's full scope (its new-user cell's users and truth).
    popularity_full = (pl.col("arm") == "popularity") & (pl.col("scope") == "full")
    per_user = load_per_user(lake, day, keep=popularity_full & (pl.col("segment_kind") == "user") & (pl.col("segment") == "new"))
    per_pair = load_per_pair(lake, day, keep=popularity_full)
    if per_pair is None:  # the day was not evaluated (or before per-pair ranks were stored)
        return 0
    pus, pps = [], []
    for protocol in snap.config.protocol.protocols:
        view = snap.view(protocol, "serve")
        pu, pp = attribute_arm_eval(
            per_user, per_pair, view.history, view.catalog["item_id"].cast(pl.String).to_list(), users, protocol, snap.config.interactions, attr
        )
        pus.append(pu)
        pps.append(pp)
    save_attribute_eval(lake, day, pl.concat(pus), pl.concat(pps))
    return sum(p["user_id"].n_unique() for p in pus)


def study_tables(
    snap: DaySnapshot, users: pl.DataFrame, n_days: int, config_hash: str, cfg: StudyConfig | None = None, attr: AttributeConfig | None = None
) -> StudyTables:
    """Day D's study work (module docstring) over the configured encoders of ``snap.config``; the window pools
    only days evaluated under ``config_hash`` (day D's evaluation configuration), as the rollup does."""
    cfg, attr = cfg or StudyConfig(), attr or AttributeConfig()
    lake, day, fcfg = snap.lake, snap.day, snap.config
    load_student_modules()
    evaluate_attribute_arm(snap, users, attr)
    costs: dict[str, EncoderCost] = {}
    unavailable: dict[str, str] = {}
    for name in fcfg.encoders:
        try:
            costs[name] = measure_encoder_cost(lake, snap.items, day, name, fcfg)
        except ModelUnavailableError as exc:
            unavailable[name] = str(exc).splitlines()[0]
    encoders = [e for e in fcfg.encoders if e not in unavailable]
    fusion = []
    if cfg.fusion_base in encoders:
        for f in fusion_variants(available_items(snap.items, day), cfg.fusion_base, cfg.fusion_variants, fcfg.text):
            if f.encoder is not None and f.encoder not in encoders:
                f = replace(f, encoder=None, note=f"{f.encoder} is not switched on (add it to the encoders)")
            fusion.append(f)
    pooled, pairs, days, excluded = pooled_study_window(lake, day, n_days, cfg, config_hash)
    ladder = [e for e in encoders if "@" not in e]
    return StudyTables(
        encoder_study=encoder_study_rows(pooled, pairs, days, ladder, costs, cfg),
        fusion_ablation=fusion_rows(pooled, pairs, days, fusion, cfg, reference="metadata" if "metadata" in encoders else None),
        new_user_text=new_user_rows(pooled, pairs, days, ladder, cfg),
        costs=costs,
        unavailable=unavailable,
        days=days,
        excluded=excluded,
    )
