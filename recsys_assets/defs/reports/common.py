"""Shared by the report assets: encoder provenance of day D."""

from datetime import date

from recsys_assets.lib.features.nightly import FeatureConfig, load_item_embeddings, snapshot_dir


def encoder_metas(lake, day: date, cfg: FeatureConfig) -> dict[str, dict]:
    """Embedding metadata (fingerprint, cost) of every encoder that ran for D."""
    out = {}
    for name in cfg.encoders:
        if snapshot_dir(lake, day).joinpath("embeddings", f"{name}.npz").exists():
            out[name] = load_item_embeddings(lake, day, name)[2]
    return out


def fingerprints(metas: dict[str, dict]) -> dict[str, str]:
    return {k: str(v.get("fingerprint")) for k, v in metas.items()}
