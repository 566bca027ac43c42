"""Shared by the report assets: encoder provenance of day D, the headline as UI metadata."""

from datetime import date

from recsys_assets.lib.evaluation.reporting import evaluation_config_hash
from recsys_assets.lib.features.nightly import FeatureConfig, encoders_with_embeddings, load_item_embeddings
from recsys_assets.lib.ranking.nightly import ranking_config


def encoder_metas(lake, day: date, cfg: FeatureConfig) -> dict[str, dict]:
    """Embedding metadata (fingerprint, cost) of every encoder that ran for D."""
    return {name: load_item_embeddings(lake, day, name)[2] for name in encoders_with_embeddings(lake, day, cfg)}


def report_config_hash(lake, day: date, cfg: FeatureConfig, models) -> str:
    """The configuration hash of day D's evaluation (features + ranker settings): on every report row,
    and what the rollup compares before pooling a day."""
    return evaluation_config_hash(cfg, ranking_config(lake, day, cfg, **models.ranking_settings()))


def headline_metadata(headline) -> dict:
    """The headline as UI metadata: the answer in words, one inline line and numeric lift/CI per endpoint
    (the UI plots numbers across partitions), then the markdown table."""
    import dagster as dg

    from recsys_assets.lib.evaluation.answer import answer_sentences, headline_numbers, headline_texts, markdown_headline

    if headline.is_empty():
        return {"headline": dg.MetadataValue.text("no reports.headline rows for this partition")}
    meta: dict = {"headline": dg.MetadataValue.text(" ".join(answer_sentences(headline)))}
    meta |= {k: dg.MetadataValue.text(v) for k, v in headline_texts(headline).items()}
    meta |= {k: dg.MetadataValue.float(v) for k, v in headline_numbers(headline).items()}
    meta["headline table"] = dg.MetadataValue.md(markdown_headline(headline))
    return meta


def fingerprints(metas: dict[str, dict]) -> dict[str, str]:
    return {k: str(v.get("fingerprint")) for k, v in metas.items()}
