"""Configuration of the two-stage recommender (candidate sources + LightGBM ranker)."""

from __future__ import annotations

from dataclasses import dataclass

from recsys_assets.lib.confighash import config_hash
from recsys_assets.lib.errors import RecsysError


PRIORS = ("popularity", "none")
"""Baselines a ranker can boost from (``RankingConfig.prior``)."""


TEXT_MONOTONE = ("text_cos_", "c2cf_score_")
"""Prefixes of the text features ``RankingConfig.monotone_text`` constrains (``features.text_feature_names``)."""


class RankingConfigError(RecsysError):
    """A RankingConfig value is impossible."""


@dataclass(frozen=True)
class RankingConfig:
    """Candidate pool sizes, evaluation cut-offs and LightGBM parameters of every arm."""

    encoders: tuple[str, ...] = ("minilm-l6", "tfidf")
    """Encoders that get a ``content_<enc>`` and a ``ranker_<enc>`` arm."""
    n_als: int = 100
    """Candidates per user from ALS (top-N dot product over items with factors)."""
    n_content: int = 100
    """Candidates per user from ``content:<enc>`` (kNN of the user's interest vector)."""
    n_c2cf: int = 50
    """Candidates per user from ``c2cf:<enc>`` (user factors x pseudo factors of items new at the snapshot)."""
    n_popular: int = 50
    """Candidates per user from ``popular`` (n_recent, then n_interactions)."""
    n_new: int = 50
    """Candidates per user from ``new`` (youngest items of segment new/cold)."""
    ks: tuple[int, ...] = (10, 20)
    """Cut-offs K of the recommendation lists (recommend() is called with max(ks) by default)."""
    new_item_slots: int = 0
    """Top-K slots an arm reserves for new items chosen by its own scores; > 0 adds ``+slots{n}`` to arm names."""
    num_leaves: int = 7
    """LightGBM ``num_leaves``: 7-leaf trees boosted from the popularity prior were best on the tuning
    days before the evaluated windows (round 3, docs/ranker.md; without a prior, round 1 found 7 no better than 31)."""
    learning_rate: float = 0.1
    """LightGBM ``learning_rate``."""
    num_boost_round: int = 150
    """Maximum boosting rounds."""
    early_stopping_rounds: int = 30
    """Stop when validation NDCG@max(ks) has not improved for this many rounds (0 disables)."""
    min_data_in_leaf: int = 20
    """LightGBM ``min_data_in_leaf``."""
    lambdarank_truncation_level: int | None = None
    """LightGBM ``lambdarank_truncation_level`` (pairs ranked below it get no gradient); None = LightGBM's default."""
    monotone: tuple[tuple[str, int], ...] = (("als_score", 1), ("als_rank", -1), ("pop_rank_log", -1), ("pop_pct", 1), ("last_cooc", 1))
    """Features the ranker must keep monotone (+1 increasing, -1 decreasing; LightGBM
    ``monotone_constraints``): the scores and ranks that reproduce the ALS and popularity arms'
    orders. The ranker can always copy its best baseline, and an order learned at D - w keeps its
    direction when served at D. ``last_cooc`` (co-occurrence with the user's last items) too: free,
    it overfit ml-100k's few training users (round 5, docs/ranker.md). Features an arm does not
    have are ignored; () disables."""
    monotone_text: bool = True
    """The text arms' similarity features (``text_cos_<enc>``, ``c2cf_score_<enc>``: ``TEXT_MONOTONE``)
    monotone increasing too: an item nearer the user's text interests never scores lower. TF-IDF is refit
    on each snapshot's catalogue, so its cosines move between the nights a ranker trains on and the day it
    serves; a monotone feature keeps the order learned, not the bins. On the tuning days it raised the text
    arms by +0.0038 recall@20 / +0.0018 NDCG@20 over the four dataset x protocol cells, none significantly
    down (docs/ranker.md round 7)."""
    seed: int = 7
    """LightGBM ``seed`` (drives every LightGBM random stream)."""
    num_threads: int = 1
    """LightGBM ``num_threads``. 1 by default: with 2 threads on a busy 2-core machine LightGBM's
    OpenMP workers spin and one fit took minutes instead of seconds; raise it on dedicated cores."""
    deterministic: bool = True
    """LightGBM ``deterministic`` (+ ``force_col_wise``): same data and seed give the same model. Column-wise
    histograms: with one thread they add each bin's gradients in the row-wise order, so the trees are the same
    (measured on the 10M world's training files), without the row-wise copy of the bins that raised one fit's
    peak by 1.3 GiB there (docs/operations.md section 7)."""
    train_nights: int = 14
    """k: the ranker of day D trains on the examples of at least the k nights before D (snapshots D - k ..
    D - 1, each labelled with the positives of the day after it: the served question). Nights
    not in the lake yet (the start of a lake) are skipped and counted (docs/ranker.md)."""
    min_train_queries: int = 400
    """Fewer labelled queries (user-nights with a positive candidate) than this in the k nights: the window
    reaches further back, one night at a time, until it holds this many or ``max_train_nights``. 14 nights of
    ml-1m hold about 450, of ml-100k 85: there 10 rounds of trees fit noise (the text arms' extra features
    most), and 56 nights raised the tuning days' cells (docs/ranker.md round 8). A large world has
    thousands a night and keeps k."""
    max_train_nights: int = 56
    """The longest window ``min_train_queries`` can reach (partitions D - 55 .. D): it bounds what one
    night reads, and how old a night can still teach tomorrow's question."""
    validation: str = "none"
    """Early-stopping slice: ``none`` (``rounds_without_validation`` rounds: measured best on the
    days before the evaluated windows, docs/ranker.md), ``last_night`` (the queries of the latest
    snapshot, when there are at least ``min_valid_users`` and another night to train on) or
    ``hash`` (users by a salted hash, ``validation_fraction``)."""
    refit_after_early_stopping: bool = True
    """After early stopping on the validation slice, refit on every query (validation included)
    for the rounds found: the latest night is the most serve-like one and is not left out."""
    validation_fraction: float = 0.2
    """Share of training users (by a salted hash of user_id) held out for early stopping (``validation="hash"``)."""
    min_valid_users: int = 50
    """Early stopping needs at least this many validation users; with fewer (small days) the
    validation NDCG is too noisy to stop on, so all labelled users train for ``rounds_without_validation``."""
    rounds_without_validation: int = 10
    """Boosting rounds when there is no usable validation slice (the default ``validation="none"``): 10
    corrections to the popularity prior were best on the tuning days (5, 20, 25, 40 and 100 measured,
    docs/ranker.md); with more the trees undo the prior's top of the list."""
    validation_salt: str = "ranker-valid-v1"
    """Salt of that hash."""
    label_grade_days: tuple[float, ...] = ()
    """Graded labels: a positive first seen less than t days after the training snapshot (D - w)
    gains one relevance grade per threshold t (lambdarank gains 1, 3, 7...); () = every positive 1."""
    prior: str = "popularity"
    """Baseline the ranker boosts from (LightGBM ``init_score`` when training, added to the raw
    score when serving): ``popularity`` = ``-prior_scale * pop_rank_log``, the popularity arm's
    own order (items tied on popularity, every never-seen item among them, share one value:
    ``features.popularity_place``), so the trees learn corrections to it and zero trees serve exactly
    the popularity list (serving breaks exact ties by it); ``none`` = boost from 0. Recorded in the model artifact (``RankerModel.meta["prior"]``)."""
    prior_scale: float = 1.0
    """Weight of the prior in raw-score units (lambdarank's sigmoid is on score differences:
    larger = the trees need more evidence to move an item past a more popular one)."""
    prior_profile: float = 0.0
    """Weight of ``profile_lift`` added to the popularity prior (``ranker.prior_scores``; 0 = none):
    the prior then ranks by popularity among the users who share the user's profile attributes. Off by
    default: on the tuning days it raised every ml-1m cell and lowered ml-100k's (docs/ranker.md round 6)."""
    prior_profile_new: float | None = None
    """As ``prior_profile``, for brand-new users only (no history before the snapshot). None (the
    default) = chosen every night from ``prior_profile_new_choices`` on the training queries
    (``ranker.choose_prior_profile_new``: data before the served day only); a number = that weight
    (0 = off; round 6, docs/ranker.md)."""
    prior_profile_new_choices: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0)
    """Weights tried when ``prior_profile_new`` is None: each ranks the training frame's new-user
    queries by the prior alone, and the one with the best mean NDCG@max(ks) wins, if its paired gain
    over 0 exceeds ``prior_choice_min_se`` standard errors (else 0)."""
    prior_choice_min_queries: int = 50
    """Fewer new-user queries with a positive than this: no choice is made, the weight is 0 (too noisy)."""
    prior_choice_min_se: float = 2.0
    """A weight other than 0 is chosen only when its mean NDCG gain over 0 exceeds this many standard
    errors of the paired per-query differences (2: about a one-sided 5 % test after Bonferroni over the
    three non-zero choices): noise alone does not move the prior."""
    prior_cooc: float = 0.0
    """Weight of ``log(last_cooc + 0.01) - log(0.01)`` added to the popularity prior (0 = none):
    the prior then ranks by popularity after the user's last items (returning users). It lowered every
    tuning-day cell (docs/ranker.md round 6)."""
    max_train_users: int | None = None
    """Cap on labelled users per night in a training frame (the lowest-hash users are kept, among those with a
    positive candidate: the only ones ``ranker_examples`` stores); None = all."""
    explain_sample: int = 200
    """Rows of served recommendations explained with per-feature contributions (pred_contrib)."""

    def __post_init__(self) -> None:
        sizes = dict(n_als=self.n_als, n_content=self.n_content, n_c2cf=self.n_c2cf, n_popular=self.n_popular, n_new=self.n_new)
        bad = {k: v for k, v in sizes.items() if v < 0}
        if bad:
            raise RankingConfigError(f"RankingConfig candidate pool sizes must be >= 0, got {bad}.")
        if not self.ks or min(self.ks) < 1:
            raise RankingConfigError(f"RankingConfig.ks must be positive cut-offs, got {self.ks}.")
        if self.validation not in ("last_night", "hash", "none"):
            raise RankingConfigError(f"RankingConfig.validation must be last_night, hash or none, got {self.validation!r}.")
        if self.train_nights < 1:
            raise RankingConfigError(f"RankingConfig.train_nights must be >= 1, got {self.train_nights}.")
        if self.max_train_nights < self.train_nights or self.min_train_queries < 0:
            raise RankingConfigError(
                "RankingConfig.max_train_nights must be >= train_nights and min_train_queries >= 0, got "
                f"{self.max_train_nights} / {self.train_nights} / {self.min_train_queries}."
            )
        if not 0.0 <= self.validation_fraction < 1.0:
            raise RankingConfigError(f"RankingConfig.validation_fraction must be in [0, 1), got {self.validation_fraction}.")
        if self.new_item_slots < 0 or self.new_item_slots > max(self.ks):
            raise RankingConfigError(f"RankingConfig.new_item_slots must be in [0, max(ks)], got {self.new_item_slots}.")
        if self.prior not in PRIORS:
            raise RankingConfigError(f"RankingConfig.prior must be one of {PRIORS}, got {self.prior!r}.")
        if min(self.prior_profile, self.prior_profile_new or 0.0, self.prior_cooc, *self.prior_profile_new_choices) < 0:
            raise RankingConfigError(
                "RankingConfig prior weights must be >= 0, got prior_profile / prior_profile_new / prior_cooc / prior_profile_new_choices "
                f"{self.prior_profile} / {self.prior_profile_new} / {self.prior_cooc} / {self.prior_profile_new_choices}."
            )
        if self.prior_scale < 0:
            raise RankingConfigError(f"RankingConfig.prior_scale must be >= 0, got {self.prior_scale}.")
        bad_signs = [(f, v) for f, v in self.monotone if v not in (-1, 1)]
        if bad_signs:
            raise RankingConfigError(f"RankingConfig.monotone: directions must be +1 or -1, got {bad_signs}.")
        for enc in self.encoders:
            if not enc or "+" in enc or ":" in enc:
                raise RankingConfigError(f"RankingConfig.encoders: bad encoder name {enc!r} (no '+' or ':').")

    @property
    def k(self) -> int:
        """The longest list served (max of ks)."""
        return max(self.ks)

    def pool_size(self, source: str) -> int:
        """Candidates per user of one source (``als``, ``content:<enc>``, ``c2cf:<enc>``, ``popular``, ``new``)."""
        kind = source.split(":", 1)[0]
        sizes = {"als": self.n_als, "content": self.n_content, "c2cf": self.n_c2cf, "popular": self.n_popular, "new": self.n_new}
        if kind not in sizes:
            raise RankingConfigError(f"Unknown candidate source {source!r}; choose from als, content:<enc>, c2cf:<enc>, popular, new.")
        return sizes[kind]

    def lgb_params(self, feature_names: list[str] | tuple[str, ...] | None = None) -> dict:
        """LightGBM parameters of the lambdarank ranker (the benchmark's raw call uses the same).

        With ``feature_names``, ``monotone_constraints`` is set from ``monotone`` (0 for the others).
        """
        params = {
            "objective": "lambdarank",
            "metric": "ndcg",
            "eval_at": list(self.ks),
            "num_leaves": self.num_leaves,
            "learning_rate": self.learning_rate,
            "min_data_in_leaf": self.min_data_in_leaf,
            "seed": self.seed,
            "num_threads": self.num_threads,
            "deterministic": self.deterministic,
            "force_col_wise": True,
            "verbosity": -1,
        }
        if self.lambdarank_truncation_level is not None:
            params["lambdarank_truncation_level"] = self.lambdarank_truncation_level
        signs = dict(self.monotone)
        if self.monotone_text and feature_names is not None:
            signs |= {f: 1 for f in feature_names if f.startswith(TEXT_MONOTONE) and f not in signs}
        if feature_names is not None and any(f in signs for f in feature_names):
            params["monotone_constraints"] = [int(signs.get(f, 0)) for f in feature_names]
        return params

    def config_hash(self) -> str:
        return config_hash(self)
