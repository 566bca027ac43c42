"""Shared by the report assets: encoder provenance of day D."""

from datetime import date

from recsys_assets.lib.features.nightly import FeatureConfig, encoders_with_embeddings, load_item_embeddings


def encoder_metas(lake, day: date, cfg: FeatureConfig) -> dict[str, dict]:
    """Embedding metadata (fingerprint, cost) of every encoder that ran for D."""
    return {name: load_item_embeddings(lake, day, name)[2] for name in encoders_with_embeddings(lake, day, cfg)}


def fingerprints(metas: dict[str, dict]) -> dict[str, str]:
    return {k: str(v.get("fingerprint")) for k, v in metas.items()}
