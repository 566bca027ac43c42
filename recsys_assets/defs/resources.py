"""Resources: where the lake is and how the pipeline is configured (swapped per environment)."""

from __future__ import annotations

import dagster as dg

from recsys_assets.lib.ingest.config import IngestConfig
from recsys_assets.lib.lake import Lake, lake_root_from_env


class LakeResource(dg.ConfigurableResource):
    """The data lake root: a local folder or any fsspec URL (s3://, gs://, memory://)."""

    root: str = ""
    """Lake root; empty means ``$RECSYS_LAKE`` or ``./data_lake``."""

    def lake(self) -> Lake:
        return Lake.at(self.root or lake_root_from_env())


class IngestResource(dg.ConfigurableResource):
    """How landing rows map onto the normalized schema."""

    field_map: dict[str, str] = {}
    """Landing field name -> normalized name (e.g. ``{"uid": "user_id"}``)."""

    extra_event_types: dict[str, str] = {}
    """Extra raw event type -> normalized type mappings, added to the defaults."""

    def config(self) -> IngestConfig:
        base = IngestConfig()
        return IngestConfig(field_map=dict(self.field_map), event_type_map={**base.event_type_map, **self.extra_event_types})


class ModelsResource(dg.ConfigurableResource):
    """Knobs of the nightly feature/ranking/evaluation stages (the rest keep lib defaults)."""

    encoders: str = "minilm-l6,tfidf"
    """Comma-separated encoders: minilm-l6, mpnet-base, tfidf, metadata, or a SentenceTransformer name/path."""
    precision: str = "fp32"
    """Neural encoder precision: fp32 or bf16 (autocast; 2-3x faster on AMX CPUs and GPUs)."""
    device: str = "auto"
    """Encoder device: auto (GPU when torch sees one), cpu or cuda."""
    protocols: str = "temporal,item_holdout"
    """Protocols evaluated every night."""
    holdout_fraction: float = 0.2
    """item_holdout: share of items whose pre-D history is hidden from every model."""
    label_window_days: int = 1
    """w: the ``train`` stage is the snapshot D - w; ranker_examples labels it with the positives of day
    D - w (the day after it). 1 = last night's serve snapshot, the most recent serve-like example."""
    recent_days: int = 14
    """Window in days of the recent-popularity signal and the popularity arm (ProtocolConfig.recent_days)."""
    als_factors: int = 64
    """ALS latent factors."""
    als_iterations: int = 15
    """ALS sweeps."""
    als_min_user_events: int = 3
    """Users with fewer events are folded in from their history (no refit), not fitted."""
    als_device: str = "auto"
    """ALS solver: auto (implicit's CUDA solver when it loads and sees a GPU), cpu or cuda."""
    max_train_users: int | None = None
    """Cap on labelled users per night of a ranker training frame (lowest hash kept among the users with a positive
    candidate); None = every labelled user (default)."""
    new_item_slots: int = 0
    """Top-K slots each ranker arm reserves for new items (0 = none; >0 adds `+slotsN` arms)."""
    ranker_prior_profile_new: float | None = None
    """Weight of ``profile_lift`` in the ranker's popularity prior for brand-new users
    (``RankingConfig.prior_profile_new``). None (the default) = chosen every night on the rankers'
    own training nights, before the served day (``ranker.choose_prior_profile_new``; the choice is in
    each model's meta and the rankers asset's metadata); a number fixes it (0 = off). Fixed weights
    helped ml-1m and hurt ml-100k on their tuning days (docs/ranker.md round 6)."""
    ranker_monotone_text: bool = True
    """Text arms' similarity features monotone increasing (``RankingConfig.monotone_text``; docs/ranker.md round 7)."""
    n_boot: int = 1000
    """Bootstrap resamples per lift cell."""
    rollup_days: int = 28
    """Window of days pooled by lift_rollup."""
    block_users: int = 5_000
    """Users in memory at once in candidates, ranker_examples (labelled users), recommendations and cold_start_eval, shared by
    the ``block_threads`` blocks computed side by side (:meth:`thread_block_users` each): their peak memory
    grows with it, not with the day's users; the outputs are the same bytes whatever it is (not part of the
    configuration hash)."""
    block_threads: int = 2
    """Blocks of users computed side by side on threads in candidates, ranker_examples, recommendations and
    cold_start_eval (``lib/parallel.py``; numpy, scipy, polars and LightGBM release the GIL): about one core per thread while
    a step runs alone, and memory for about one more block per thread. The same number of ranker arms' training
    files (ranker_dataset) and single-threaded LightGBM fits (rankers) run side by side: memory for that many arms
    at once. 1 = one at a time. The outputs are the same bytes whatever it is (not part of the configuration hash)."""

    def thread_block_users(self) -> int:
        """Users per block when ``block_threads`` blocks are computed side by side: ``block_users`` split
        among them, so threads add speed, not memory (the files are the same bytes for any block size)."""
        return max(1, self.block_users // max(1, self.block_threads))

    def feature_config(self):
        from recsys_assets.lib.features.als import ALSConfig, resolve_use_gpu
        from recsys_assets.lib.features.encoders import EncoderConfig
        from recsys_assets.lib.features.nightly import FeatureConfig
        from recsys_assets.lib.snapshot import ProtocolConfig

        return FeatureConfig(
            encoders=tuple(e.strip() for e in self.encoders.split(",") if e.strip()),
            encoder=EncoderConfig(precision=self.precision, device=self.device, show_progress=False),
            als=ALSConfig(
                factors=self.als_factors,
                iterations=self.als_iterations,
                min_user_events_for_fit=self.als_min_user_events,
                use_gpu=resolve_use_gpu(self.als_device),
            ),
            protocol=ProtocolConfig(
                protocols=tuple(p.strip() for p in self.protocols.split(",") if p.strip()),
                holdout_fraction=self.holdout_fraction,
                label_window_days=self.label_window_days,
                recent_days=self.recent_days,
            ),
        )

    def ranking_settings(self) -> dict:
        """The ranker settings of this resource, as ``nightly.ranking_config`` keywords."""
        return {
            "new_item_slots": self.new_item_slots,
            "max_train_users": self.max_train_users,
            "prior_profile_new": self.ranker_prior_profile_new,
            "monotone_text": self.ranker_monotone_text,
        }


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"lake": LakeResource(), "ingest": IngestResource(), "models": ModelsResource()})
