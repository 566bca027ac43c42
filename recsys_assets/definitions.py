"""Dagster entry point: every object under ``recsys_assets/defs`` is autoloaded."""

import dagster as dg

import recsys_assets.defs

defs = dg.load_defs(defs_root=recsys_assets.defs)
