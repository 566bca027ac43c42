"""The compared arms (docs/protocol.md): same users, same truth, same K.

- ``popularity``: recent popularity (n_recent, then n_interactions).
- ``als``: ALS top-K (ID only).
- ``content_<enc>``: kNN of the user's interest vector.
- ``ranker_no_text``: LightGBM over (als, popular, new) candidates, no text feature.
- ``ranker_<enc>``: the same plus the content/c2cf sources and the text features.
- ``<arm>+slots{n}``: the arm with ``n`` of its top-K slots reserved for new items
  chosen by its own scores (compare ``ranker_<enc>+slots{n}`` against
  ``ranker_no_text+slots{n}``).

Every served user gets K items when the catalogue allows: users an arm cannot
score (no ALS factors / no interest vector) get the popularity list and are
counted as ``fallback_users``; short lists are padded from the popularity list
(``padded_users``). Nobody is dropped silently. Ties are broken by a hashed item
id, deterministically.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import polars as pl

from recsys_assets.lib.ranking.arm_spec import ArmError, ArmSpec, arm_specs, parse_arm, ranker_specs
from recsys_assets.lib.ranking.candidates import (
    arm_sources,
    candidate_recall,
    generate_candidates,
    rank_column,
    score_column,
    slug,
    source_column,
    source_topn,
)
from recsys_assets.lib.parallel import map_in_order, slices
from recsys_assets.lib.ranking.config import RankingConfig
from recsys_assets.lib.ranking.features import feature_names, pair_dot, ranker_features
from recsys_assets.lib.ranking.inputs import SnapshotFeatures, hash_u64, pair_hash_u64
from recsys_assets.lib.ranking.ranker import RankerModel

RECS_SCHEMA = {"user_id": pl.String, "item_id": pl.String, "rank": pl.Int64, "score": pl.Float64}


def arm_names(cfg: RankingConfig) -> list[str]:
    """Arms of one evaluation run; with ``new_item_slots`` the ranker arms also run as ``+slots{n}``."""
    return [s.name for s in arm_specs(cfg.encoders, cfg.new_item_slots)]


def ranker_arm_names(cfg: RankingConfig) -> list[str]:
    """The arms that need a trained model (one per name)."""
    return [s.name for s in ranker_specs(cfg.encoders)]


# --- helpers ---------------------------------------------------------------------------


def _tiebreak(features: SnapshotFeatures) -> pl.DataFrame:
    return features.item_table.select("item_id", "tiebreak")


def popularity_tiebreak(features: SnapshotFeatures) -> pl.DataFrame:
    """(item_id, tiebreak) = the item's place in the popularity list: ranker ties go to the more popular item."""
    return features.item_index.select("item_id", pl.Series("tiebreak", features.popularity_position, dtype=pl.UInt64))


_SCORE_KEY = pl.col("score").fill_null(float("-inf"))
"""The score as the top-k cuts compare it: null (and NaN, made null before) as -inf."""


def _kth_score(k: int) -> pl.Expr:
    """Each row's user's ``k``-th largest :data:`_SCORE_KEY` (the smallest when the user has fewer rows)."""
    return _SCORE_KEY.top_k(k).min().over("user_id")


def _top_k_superset(k: int) -> pl.Expr:
    """Keeps every row whose score (null as -inf) is at least its user's ``k``-th largest: a superset of the
    rows that rank ``<= k`` (a row ranked ``<= k`` has at most ``k - 1`` rows of its user above it, all kept),
    so sorting only these rows gives the same top ``k``. A per-user selection, not a sort of every row."""
    return _SCORE_KEY >= _kth_score(k)


def _tied_superset(k: int) -> pl.Expr:
    """After :func:`_top_k_superset`, of the rows tied at a user's ``k``-th score keeps only the ``k`` lowest
    ``tiebreak`` values of each null class (the sort puts ``-inf`` before null): still a superset of the rows
    ranked ``<= k``. Popularity and ALS give every new item of the cold scope one score (0, ``-inf``) and a
    ranker gives many candidates the same one, so the first cut alone keeps nearly every row there."""
    thr = _kth_score(k)
    tied = _SCORE_KEY == thr
    tb_max = pl.col("tiebreak").filter(tied).bottom_k(k).max().over("user_id", pl.col("score").is_null())
    return (_SCORE_KEY > thr) | (tied & (pl.col("tiebreak") <= tb_max))


def top_k_from_scores(scores: pl.DataFrame, k: int, features: SnapshotFeatures, tiebreak: pl.DataFrame | None = None) -> pl.DataFrame:
    """(user_id, item_id, rank, score): best ``k`` per user; NaN/null/-inf last.

    Ties go to the lower ``tiebreak`` (item_id, tiebreak); default a hashed item id. Ranker arms
    pass :func:`popularity_tiebreak`: a tree ensemble stopped after a few rounds gives many
    candidates the same score, and a hash would order them at random (docs/ranker.md).
    """
    if scores.height == 0:
        return pl.DataFrame(schema=RECS_SCHEMA)
    s = scores.select("user_id", "item_id", pl.col("score").cast(pl.Float64).fill_nan(None))
    if k >= 1:
        s = s.filter(_top_k_superset(k))
    s = s.join(tiebreak if tiebreak is not None else _tiebreak(features), on="item_id", how="left")
    if k >= 1 and s.get_column("tiebreak").null_count() == 0:
        s = s.filter(_tied_superset(k))
    s = s.sort(["user_id", "score", "tiebreak"], descending=[False, True, False], nulls_last=True)
    s = s.with_columns(rank=pl.int_range(1, pl.len() + 1).over("user_id").cast(pl.Int64)).filter(pl.col("rank") <= k)
    return s.select("user_id", "item_id", "rank", pl.col("score").fill_null(float("-inf")))


def _source_frame(features: SnapshotFeatures, users: list[str], source: str, n: int) -> pl.DataFrame:
    seen = features.seen_matrix(users)
    u, c, s, _ = source_topn(features, source, n, users, seen)
    return pl.DataFrame(
        {
            "user_id": pl.Series(users, dtype=pl.String).gather(u),
            "item_id": pl.Series(features.item_ids, dtype=pl.String).gather(c),
            "score": s.astype(np.float64),
        }
    )


def _popular_scores(features: SnapshotFeatures, users: list[str], n: int) -> pl.DataFrame:
    """Popularity list (seen excluded) with the lexicographic popularity score."""
    f = _source_frame(features, users, "popular", n)
    pop = pl.DataFrame({"item_id": features.item_ids, "_p": features.popularity_score})
    return f.join(pop, on="item_id", how="left").select("user_id", "item_id", pl.col("_p").alias("score"))


def _pad(recs: pl.DataFrame, features: SnapshotFeatures, users: list[str], k: int) -> tuple[pl.DataFrame, int, int]:
    """Fill lists shorter than k from the popularity list; returns (recs, padded_users, still_short_users)."""
    counts = pl.DataFrame({"user_id": pl.Series(users, dtype=pl.String)}).join(
        recs.group_by("user_id").len(), on="user_id", how="left"
    ).with_columns(pl.col("len").fill_null(0))
    short = counts.filter(pl.col("len") < k)
    if short.height == 0:
        return recs, 0, 0
    su = short.get_column("user_id").to_list()
    pop = _popular_scores(features, su, 2 * k).join(recs.select("user_id", "item_id"), on=["user_id", "item_id"], how="anti")
    pop = pop.join(short.rename({"len": "_have"}), on="user_id").with_columns(
        rank=(pl.int_range(1, pl.len() + 1).over("user_id") + pl.col("_have")).cast(pl.Int64),
        score=pl.lit(float("-inf")),
    ).filter(pl.col("rank") <= k)
    out = pl.concat([recs, pop.select(recs.columns)], how="vertical").sort("user_id", "rank")
    final = out.group_by("user_id").len()
    still = short.height - final.join(short.select("user_id"), on="user_id", how="semi").filter(pl.col("len") >= k).height
    return out, short.height, still


def new_item_ids(features: SnapshotFeatures, segments: Sequence[str] = ("new",)) -> list[str]:
    """Catalogue items of the given segments at this snapshot (the ``cold_only`` scope's items)."""
    return features.item_table.filter(pl.col("item_segment").is_in(list(segments))).get_column("item_id").to_list()


def reserve_new_slots(recs: pl.DataFrame, scores: pl.DataFrame, item_stats: pl.DataFrame, n: int, *, segments: Sequence[str] = ("new",)) -> pl.DataFrame:
    """Guarantee ``n`` new items in each user's list, chosen by the arm's own ``scores``.

    ``recs``: the arm's top-K (user_id, item_id, rank, score). ``scores``: the arm's
    scores of (user, item) pairs that include new items (e.g. its candidate pool,
    or ``score_items`` over the new items). A user whose top-K already holds ``m``
    new items gets ``n - m`` more: the best-scoring new items not yet listed
    replace the lowest-ranked non-new items, and take the last slots (the
    original order is kept above them). Ties by hashed item id. K is unchanged.
    """
    if n <= 0 or recs.height == 0:
        return recs
    new_ids = item_stats.filter(pl.col("item_segment").is_in(list(segments))).select("item_id")
    is_new = pl.col("item_id").is_in(new_ids.get_column("item_id").implode())
    recs = recs.with_columns(_new=is_new)
    have = recs.group_by("user_id").agg(pl.col("_new").sum().alias("_m"), pl.len().alias("_k"))
    pool = (
        scores.select("user_id", "item_id", pl.col("score").cast(pl.Float64).fill_nan(None))
        .join(new_ids, on="item_id", how="semi")
        .join(recs.select("user_id", "item_id"), on=["user_id", "item_id"], how="anti")
        .join(have, on="user_id", how="inner")
    )
    uniq = pool.get_column("item_id").unique()
    pool = pool.join(pl.DataFrame({"item_id": uniq, "_tb": hash_u64(uniq.to_list(), "tiebreak")}), on="item_id")
    pool = (
        pool.sort(["user_id", "score", "_tb"], descending=[False, True, False], nulls_last=True)
        .with_columns(_j=pl.int_range(pl.len()).over("user_id"))
        .filter(pl.col("_j") < (n - pl.col("_m")))
    )
    added = pool.group_by("user_id").len().rename({"len": "_add"})
    kept = (
        recs.join(have, on="user_id")
        .join(added, on="user_id", how="left")
        .with_columns(pl.col("_add").fill_null(0))
        .sort("user_id", "rank")
        # drop the lowest-ranked non-new items, one per added new item
        .with_columns(_rev_nonnew=(~pl.col("_new")).cast(pl.Int64).reverse().cum_sum().reverse().over("user_id"))
        .filter(pl.col("_new") | (pl.col("_rev_nonnew") > pl.col("_add")))
    )
    tail = pool.select("user_id", "item_id", pl.col("score").fill_null(float("-inf")), _o=pl.lit(1), _r=pl.col("_j"))
    head = kept.select("user_id", "item_id", "score", _o=pl.lit(0), _r=pl.col("rank"))
    out = pl.concat([head.with_columns(pl.col("_r").cast(pl.Int64)), tail.with_columns(pl.col("_r").cast(pl.Int64))])
    out = out.sort("user_id", "_o", "_r").with_columns(rank=pl.int_range(1, pl.len() + 1).over("user_id").cast(pl.Int64))
    return out.select("user_id", "item_id", "rank", "score")


def _model_for(spec: ArmSpec, ranker_models: dict[str, RankerModel] | None) -> RankerModel:
    model = (ranker_models or {}).get(spec.base)
    if model is None:
        raise ArmError(f"Arm {spec.name!r} needs a trained ranker under key {spec.base!r}; have {sorted(ranker_models or {})}.")
    expected = feature_names(spec.encoder)
    if model.feature_names != expected:
        raise ArmError(f"Ranker for {spec.base!r} expects features {model.feature_names}, the arm computes {expected}.")
    return model


ARM_SOURCE_KINDS = ("als", "content")
"""Sources that are also arms (``als``, ``content_<enc>``): an arm's top-K is its source's first K candidates."""


def arm_score_column(source: str) -> str:
    """The pool column of a source that is also an arm: the pair's score where the source ranked it within the
    served K (``RankingConfig.k``), null elsewhere (:func:`_first_k_of_source`)."""
    return f"arm_score_{slug(source)}"


def _pool_exprs(sources: Sequence[str], k: int) -> list[pl.Expr]:
    """:func:`pool_columns` from generated candidates (``generate_candidates``' flags, ranks and scores)."""
    ranked = [s for s in sources if s.partition(":")[0] in ARM_SOURCE_KINDS]
    return [
        pl.col("user_id"),
        pl.col("item_id"),
        *[pl.col(source_column(s)) for s in sources],
        *([pl.col(rank_column("als"))] if "als" in sources else []),
        *[pl.when(pl.col(rank_column(s)) <= k).then(pl.col(score_column(s))).alias(arm_score_column(s)) for s in ranked],
    ]


def pool_sources(cfg: RankingConfig) -> tuple[str, ...]:
    """The candidate sources of every ranker arm, in arm order (the stored pool's and the examples')."""
    return tuple(dict.fromkeys(s for arm in ranker_arm_names(cfg) for s in arm_sources(arm)))


def pool_columns(sources: Sequence[str]) -> list[str]:
    """The candidate columns serving reads: the pairs, the sources' flags and the ALS rank (``ranker_features``),
    and for the sources that are also arms (:data:`ARM_SOURCE_KINDS`) the score of their top K
    (:func:`arm_score_column`: the ``als`` and ``content_<enc>`` arms are served from it). The stored candidate
    pool (``nightly.candidate_pool``) holds them."""
    return [e.meta.output_name() for e in _pool_exprs(sources, 1)]


def pool_candidates(features: SnapshotFeatures, users: Sequence[str], sources: Sequence[str], cfg: RankingConfig) -> pl.DataFrame:
    """``generate_candidates`` of ``sources`` for ``users`` as the stored pool holds them (:func:`pool_columns`)."""
    return generate_candidates(features, users, tuple(sources), cfg).select(_pool_exprs(sources, cfg.k))


def _first_k_of_source(cands: pl.DataFrame | None, source: str, k: int, cfg: RankingConfig) -> pl.DataFrame | None:
    """(user_id, item_id, score) of ``source``'s top ``k`` per user read from a block's candidates (the rows of its
    :func:`arm_score_column`), or None when they do not carry it, or ``k`` is not the served ``cfg.k``, or the
    source proposes fewer than ``k`` per user.

    The same rows and bits as :func:`_source_frame` (``source_topn`` with n = k): the ALS and content top-N go
    through ``topk.dot_top_k``, which orders by the float32-rounded float64 dot products, ties by catalogue
    column, so the first ``k`` of the top ``n >= k`` are the top ``k``; ``recommendations`` thus serves these
    arms from the day's stored pool instead of ranking the catalogue again for each of them. Only these K scores
    per user are stored (the 1M pool +40 %; every candidate's rank and score made it 3x larger)."""
    col = arm_score_column(source)
    if cands is None or col not in cands.columns or k != cfg.k or cfg.pool_size(source) < k:
        return None
    return cands.filter(pl.col(col).is_not_null()).select("user_id", "item_id", pl.col(col).cast(pl.Float64).alias("score"))


def block_candidates(
    features: SnapshotFeatures,
    users: list[str],
    sources: tuple[str, ...],
    cfg: RankingConfig,
    pool: pl.DataFrame | pl.LazyFrame | None,
    every_user: bool = False,
    pool_sources: Sequence[str] | None = None,
) -> pl.DataFrame:
    """:func:`pool_candidates` of ``users``, read from a stored ``pool`` when it holds the :func:`pool_columns`
    (the same function wrote it, with this configuration, in the same row order: by user in ``users`` order, then
    catalogue column), else generated. ``every_user``: read only when every one of ``users`` has rows there (a pool
    stored for other users, ``nightly.earlier_candidate_pool``: a user it lacks was not among them).
    ``pool_sources``: only these sources' rows are read from the pool (made from the same inputs); the other
    sources are generated and the two merged, the same rows as generating every source (each source is computed on
    its own, and a pair's flags, ALS rank and top-K scores are its sources')."""
    cols = pool_columns(sources)
    if pool is not None:
        names = pool.collect_schema().names() if isinstance(pool, pl.LazyFrame) else pool.columns
        read = [s for s in sources if pool_sources is None or s in pool_sources]
        if read and all(c in names for c in cols):
            rows = pool.filter(pl.col("user_id").is_in(pl.Series(users, dtype=pl.String).implode())).select(cols)
            rows = rows.collect() if isinstance(rows, pl.LazyFrame) else rows
            pos = {u: i for i, u in enumerate(users)}
            seq = [pos[u] for u in rows.get_column("user_id").unique(maintain_order=True).to_list()]
            if all(a < b for a, b in zip(seq, seq[1:])) and (not every_user or len(seq) == len(pos)):
                if len(read) == len(sources):
                    return rows
                return _merged_candidates(rows, read, pool_candidates(features, users, [s for s in sources if s not in read], cfg), users, sources)
    return pool_candidates(features, users, sources, cfg)


def _merged_candidates(stored: pl.DataFrame, read: list[str], generated: pl.DataFrame, users: list[str], sources: tuple[str, ...]) -> pl.DataFrame:
    """The pool columns of ``sources``: ``read`` sources' pairs and columns from ``stored``, the others' from
    ``generated``; rows by user in ``users`` order, then catalogue column (= item id order: the catalogue is sorted)."""
    mine = [c for c in pool_columns(read) if c not in ("user_id", "item_id")]
    stored = stored.filter(pl.any_horizontal([pl.col(source_column(s)) for s in read])).select("user_id", "item_id", *mine)
    order = pl.DataFrame({"user_id": pl.Series(users, dtype=pl.String), "_pos": pl.Series(range(len(users)), dtype=pl.Int64)})
    merged = stored.join(generated, on=["user_id", "item_id"], how="full", coalesce=True)
    flags = [source_column(s) for s in sources]
    return (
        merged.with_columns([pl.col(c).fill_null(False) for c in flags])
        .join(order, on="user_id", how="left")
        .sort("_pos", "item_id")
        .select(pool_columns(sources))
    )


def _shared_ranker_frame(
    specs: Sequence[ArmSpec], features: SnapshotFeatures, users: list[str], cfg: RankingConfig, cands: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Candidates of the union of the ranker arms' sources for ``users``, with every arm's features.

    Every feature is a function of its (user, item) pair alone and every source is computed on its
    own, so an arm's rows of this frame (:func:`_arm_rows`) are exactly what its own candidates and
    ``ranker_features`` give: the candidates and the shared features are computed once for all arms.
    ``cands``: those candidates (:func:`block_candidates`, read from the day's stored pool), else generated.
    """
    sources = _union_sources(specs)
    if cands is None:
        cands = block_candidates(features, users, sources, cfg, None)
    flags = cands.select([source_column(src) for src in sources])
    return ranker_features(features, cands, None, text_encoders=_text_encoders(specs)).hstack(flags.rename(lambda c: f"_{c}"))


def _with_candidate_flags(pairs: pl.DataFrame, cands: pl.DataFrame) -> pl.DataFrame:
    """``pairs`` (same rows and order) with the candidates' ``source_*`` flags (False where no source
    proposed the pair) and ``rank_als``: what ``ranker_features`` needs for pairs that are not all candidates."""
    flag_cols = [c for c in cands.columns if c.startswith("source_") or c == "rank_als"]
    frame = pairs.join(cands.select("user_id", "item_id", *flag_cols), on=["user_id", "item_id"], how="left", maintain_order="left")
    return frame.with_columns([pl.col(c).fill_null(False) for c in flag_cols if c.startswith("source_")])


def _union_sources(specs: Sequence[ArmSpec]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(src for sp in specs for src in arm_sources(sp.base)))


def _text_encoders(specs: Sequence[ArmSpec]) -> list[str]:
    return list(dict.fromkeys(sp.encoder for sp in specs if sp.encoder))


def _arm_rows(shared: pl.DataFrame, spec: ArmSpec) -> pl.DataFrame:
    """The rows of :func:`_shared_ranker_frame` that the arm's own sources proposed (in the same order)."""
    return shared.filter(pl.any_horizontal([pl.col(f"_{source_column(src)}") for src in arm_sources(spec.base)]))


PREDICT_ROWS = 1 << 20
"""Rows of the shared frame scored per LightGBM call in :func:`_ranker_pools`: the model's float32 input
matrix and the arm's filtered copy are a chunk's, not a block's (each row's score is its own)."""


def _arm_scores(shared: pl.DataFrame, spec: ArmSpec, model: RankerModel) -> np.ndarray:
    """``model.predict(_arm_rows(shared, spec))``, ``PREDICT_ROWS`` rows of ``shared`` at a time (the same rows in the same order)."""
    if shared.height <= PREDICT_ROWS:
        return model.predict(_arm_rows(shared, spec))
    return np.concatenate([model.predict(_arm_rows(shared.slice(s, PREDICT_ROWS), spec)) for s in range(0, shared.height, PREDICT_ROWS)])


def _ranker_pools(
    specs: Sequence[ArmSpec], features: SnapshotFeatures, users: list[str], models: dict[str, RankerModel] | None, cfg: RankingConfig,
    cands: pl.DataFrame | None = None,
) -> dict[str, tuple[pl.DataFrame, dict]]:
    """{arm base: (scored candidates, pool stats)} of the ranker arms, from one shared candidate/feature frame
    (``cands``: the block's candidates of their sources, :func:`block_candidates`; else generated)."""
    shared = _shared_ranker_frame(specs, features, users, cfg, cands)
    out = {}
    for spec in specs:
        if spec.base in out:
            continue
        rows = _arm_rows(shared.select("user_id", "item_id", *[c for c in shared.columns if c.startswith("_source_")]), spec).select("user_id", "item_id")
        scored = rows.with_columns(pl.Series("score", _arm_scores(shared, spec, _model_for(spec, models)), dtype=pl.Float64))
        n_per_user = rows.group_by("user_id").len().get_column("len")
        stats = {
            "n_candidates": rows.height,
            "users_with_candidates": n_per_user.len(),
            "candidates_per_user_min": int(n_per_user.min() or 0),
            "candidates_per_user_mean": float(n_per_user.mean() or 0),
        }
        out[spec.base] = (scored, stats)
    return out


BLOCK_USERS = 10_000
"""Users served together by :func:`recommend_arms` when the caller gives no ``block_users``: its candidate pools and
feature frames grow with a block, not with the day. Any block size gives the same bytes (the ALS and content
top-N go through ``topk.dot_top_k``); the ``recommendations`` asset uses ``ModelsResource.thread_block_users``
like the other blocked steps (10M world: blocks of 2,500 users peaked at 6,556 MiB, blocks of 10,000 at 7,876)."""
BLOCK_PAIRS = 1_000_000
"""(user, item) pairs scored together by :func:`top_k_items_arms`: never a dense users x items frame (each pair's
score is its own, so any block size gives the same lists)."""


def _merge_stats(parts: list[dict]) -> dict:
    """Stats of user blocks -> the stats of one call over all their users."""
    out = dict(parts[0])
    for key in ("n_users", "fallback_users", "padded_users", "short_users", "n_rows", "n_candidates", "users_with_candidates"):
        if key in out:
            out[key] = sum(p[key] for p in parts)
    if "candidates_per_user_min" in out:
        mins = [p["candidates_per_user_min"] for p in parts if p.get("users_with_candidates")]
        out["candidates_per_user_min"] = min(mins) if mins else 0
        out["candidates_per_user_mean"] = out["n_candidates"] / out["users_with_candidates"] if out["users_with_candidates"] else 0.0
    return out


def recommend(
    arm: str,
    features: SnapshotFeatures,
    user_ids: Sequence[str],
    k: int,
    ranker_models: dict[str, RankerModel] | None,
    cfg: RankingConfig,
) -> tuple[pl.DataFrame, dict]:
    """Top-``k`` (user_id, item_id, rank, score) of ``arm`` for every user in ``user_ids`` + stats.

    stats: n_users, fallback_users (served the popularity list because the arm
    cannot score them), padded_users (lists filled up from popularity),
    short_users (fewer than k items even after padding: catalogue exhausted),
    and for rankers the candidate pool size.

    Users are served in blocks of ``BLOCK_USERS`` (every step is per user, so the result is
    the same as one call over all of them), sorted by (user_id, rank).
    """
    return recommend_arms([arm], features, user_ids, k, ranker_models, cfg)[arm]


def recommend_arms(
    arms: Sequence[str],
    features: SnapshotFeatures,
    user_ids: Sequence[str],
    k: int,
    ranker_models: dict[str, RankerModel] | None,
    cfg: RankingConfig,
    pool: pl.DataFrame | pl.LazyFrame | None = None,
    threads: int = 1,
    block_users: int | None = None,
) -> dict[str, tuple[pl.DataFrame, dict]]:
    """:func:`recommend` of several arms: ``{arm: (recs, stats)}``, the same as one call per arm.

    Per block of users, the ranker arms' candidates and features are computed once for all of
    them (:func:`_ranker_pools`); only the LightGBM scoring is per arm. ``pool``: the day's stored
    candidate pool of these users (``candidates.parquet``, a lazy scan is read per block), read
    instead of generating the candidates again (the same rows: :func:`block_candidates`).
    ``threads`` blocks of ``block_users`` (default :data:`BLOCK_USERS`) are served side by side
    (:func:`parallel.map_in_order`; the same result whatever the blocks and threads).
    """
    users = list(dict.fromkeys(user_ids))
    specs = [parse_arm(a) for a in arms]
    rankers = [sp for sp in specs if sp.is_ranker]
    parts: dict[str, list] = {sp.name: [] for sp in specs}

    def serve_block(block: list[str]) -> list[tuple[pl.DataFrame, dict]]:
        # the block's candidates of the ranker arms' sources, read from the pool (else generated) once: the
        # rankers score them and the als / content arms whose sources they hold take their first k
        cands = block_candidates(features, block, _union_sources(rankers), cfg, pool) if rankers and block else None
        pools = _ranker_pools(rankers, features, block, ranker_models, cfg, cands) if cands is not None else {}
        return [_recommend_block(sp.name, features, block, k, ranker_models, cfg, pools.get(sp.base), cands) for sp in specs]

    for served in map_in_order(serve_block, slices(users, block_users or BLOCK_USERS, keep_empty=True), threads):
        for sp, part in zip(specs, served):
            parts[sp.name].append(part)
    out = {}
    for name, ps in parts.items():
        out[name] = ps[0] if len(ps) == 1 else (pl.concat([r for r, _ in ps]).sort("user_id", "rank"), _merge_stats([st for _, st in ps]))
    return out


def top_k_items_arms(
    arms: dict[str, pl.DataFrame | None],
    features: SnapshotFeatures,
    user_ids: Sequence[str],
    item_ids: Sequence[str],
    k: int,
    ranker_models: dict[str, RankerModel] | None = None,
    cfg: RankingConfig | None = None,
    pool: pl.DataFrame | pl.LazyFrame | None = None,
    threads: int = 1,
) -> dict[str, pl.DataFrame]:
    """``top_k_from_scores(score_items(...), k, ...)`` (the ``cold_only`` scope) of several arms
    (``{arm: its tiebreak}``) in blocks of users, each block scored once for all of them (:func:`score_items_arms`),
    ``threads`` blocks side by side (:func:`parallel.map_in_order`; the same result).

    Each block scores at most ``BLOCK_PAIRS`` (user, item) pairs and keeps only its top ``k``
    per user, so memory is bounded by a block whatever the numbers of users and items.
    ``pool``: the day's stored candidate pool holding these users (the ranker features' source flags
    and ALS rank are read from it, once for all of ``user_ids``, instead of generating the candidates).
    """
    users = list(dict.fromkeys(user_ids))
    items = list(dict.fromkeys(item_ids))
    per = max(1, BLOCK_PAIRS // max(1, len(items)))
    if isinstance(pool, pl.LazyFrame):
        pool = pool.filter(pl.col("user_id").is_in(pl.Series(users, dtype=pl.String).implode())).collect()
    frames: dict[str, list[pl.DataFrame]] = {arm: [] for arm in arms}

    def block_top_k(block: list[str]) -> dict[str, pl.DataFrame]:
        # one arm's scores at a time (the generator), each reduced to its top k
        return {arm: top_k_from_scores(scores, k, features, arms[arm]) for arm, scores in _iter_item_scores(list(arms), features, block, items, ranker_models, cfg, pool)}

    for tops in map_in_order(block_top_k, slices(users, per), threads):
        for arm, top in tops.items():
            frames[arm].append(top)
    return {
        arm: pl.DataFrame(schema=RECS_SCHEMA) if not fs else fs[0] if len(fs) == 1 else pl.concat(fs).sort("user_id", "rank")
        for arm, fs in frames.items()
    }


def _recommend_block(
    arm: str,
    features: SnapshotFeatures,
    users: list[str],
    k: int,
    ranker_models: dict[str, RankerModel] | None,
    cfg: RankingConfig,
    ranker_pool: tuple[pl.DataFrame, dict] | None = None,
    cands: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, dict]:
    spec = parse_arm(arm)
    stats: dict = {"arm": arm, "n_users": len(users), "k": k, "fallback_users": 0}
    pool: pl.DataFrame
    if spec.kind == "popularity":
        pool = _popular_scores(features, users, k)
    elif spec.kind in ARM_SOURCE_KINDS:
        source = "als" if spec.kind == "als" else f"content:{spec.encoder}"
        first_k = _first_k_of_source(cands, source, k, cfg)
        pool = first_k if first_k is not None else _source_frame(features, users, source, k)
        served = set(pool.get_column("user_id").unique().to_list())
        fb = [u for u in users if u not in served]
        stats["fallback_users"] = len(fb)
        if fb:
            pool = pl.concat([pool, _popular_scores(features, fb, k)])
    else:
        pool, extra = ranker_pool if ranker_pool is not None else _ranker_pools([spec], features, users, ranker_models, cfg)[spec.base]
        stats.update(extra)
    recs = top_k_from_scores(pool, k, features, popularity_tiebreak(features) if spec.kind == "ranker" else None)
    if spec.slots:
        if spec.kind == "ranker":
            slot_scores = pool
        else:
            slot_scores = score_items(spec.base, features, users, new_item_ids(features), ranker_models, cfg)
        recs = reserve_new_slots(recs, slot_scores, features.item_table, spec.slots)
    recs, padded, short = _pad(recs, features, users, k)
    stats.update(padded_users=padded, short_users=short, n_rows=recs.height)
    return recs.select(list(RECS_SCHEMA)).cast(RECS_SCHEMA), stats


def score_items(
    arm: str,
    features: SnapshotFeatures,
    user_ids: Sequence[str],
    item_ids: Sequence[str],
    ranker_models: dict[str, RankerModel] | None = None,
    cfg: RankingConfig | None = None,
) -> pl.DataFrame:
    """The arm's score of every (user, item) pair of ``user_ids x item_ids`` (the ``cold_only`` scope).

    Pairs the user has seen and items outside the catalogue are left out. Pairs
    the arm cannot score get -inf (ALS without factors; content users without a
    vector get the popularity score instead, as in :func:`recommend`); rank with
    :func:`top_k_from_scores`, which breaks ties by hashed item id.
    """
    return score_items_arms([arm], features, user_ids, item_ids, ranker_models, cfg)[arm]


def score_items_arms(
    arms: Sequence[str],
    features: SnapshotFeatures,
    user_ids: Sequence[str],
    item_ids: Sequence[str],
    ranker_models: dict[str, RankerModel] | None = None,
    cfg: RankingConfig | None = None,
) -> dict[str, pl.DataFrame]:
    """:func:`score_items` of several arms, ``{arm: scores}``: the pairs, and the ranker arms'
    candidate flags and features, are computed once for all of them (see :func:`_shared_ranker_frame`)."""
    return dict(_iter_item_scores(arms, features, user_ids, item_ids, ranker_models, cfg))


def _iter_item_scores(
    arms: Sequence[str],
    features: SnapshotFeatures,
    user_ids: Sequence[str],
    item_ids: Sequence[str],
    ranker_models: dict[str, RankerModel] | None,
    cfg: RankingConfig | None,
    pool: pl.DataFrame | pl.LazyFrame | None = None,
):
    """(arm, scores) per arm, one at a time (a caller that reduces each to its top-k holds one)."""
    cfg = cfg or RankingConfig()
    specs = [parse_arm(a) for a in dict.fromkeys(arms)]
    users = list(dict.fromkeys(user_ids))
    items = features.item_index.join(pl.DataFrame({"item_id": pl.Series(list(dict.fromkeys(item_ids)), dtype=pl.String)}), on="item_id", how="semi")
    cols = items.get_column("icol").to_numpy()  # catalogue order
    # users x items minus the seen pairs, by user then catalogue column (a grid, not a join with the seen log)
    urow, c = np.nonzero(~features.seen_matrix(users)[:, cols].toarray()) if len(users) and len(cols) else (np.zeros(0, np.int64),) * 2
    urow, icol = urow.astype(np.int64), cols[c].astype(np.int64)
    pairs = pl.DataFrame({"user_id": pl.Series(users, dtype=pl.String).gather(urow), "item_id": items.get_column("item_id").gather(c)})
    pop = features.popularity_score[icol]
    rankers = [sp for sp in specs if sp.is_ranker]
    shared = None
    if rankers:
        # every pair is scored, so the candidates only give the pairs' source flags and ALS rank
        frame = _with_candidate_flags(pairs, block_candidates(features, users, _union_sources(rankers), cfg, pool))
        shared = ranker_features(features, frame, None, text_encoders=_text_encoders(rankers))

    def computed(name: str) -> np.ndarray | None:
        """A ranker feature of these pairs that is this arm's own dot product (``als_score``, ``text_cos_<enc>``:
        the same ``pair_dot`` on the same rows), read from the shared features instead of computed again."""
        return shared.get_column(name).to_numpy() if shared is not None and name in shared.columns else None

    for spec in specs:
        if spec.kind == "popularity":
            score = pop
        elif spec.kind == "als":
            s = computed("als_score")
            if s is None:
                au = features.als_user_rows(users)[urow]
                itf, known = features.als_items()
                uf = features.als.user_factors if features.als is not None else np.zeros((0, itf.shape[1]), np.float32)
                s = pair_dot(uf, au, itf, icol, (au >= 0) & known[icol])
            s = s.astype(np.float64)
            score = np.where(np.isnan(s), -np.inf, s)
        elif spec.kind == "content":
            er = features.encoder_user_rows(spec.encoder, users)[urow]
            s = computed(f"text_cos_{slug(spec.encoder)}")
            if s is None:
                al = features.aligned(spec.encoder)
                uv = features.encoder(spec.encoder).user_vectors
                s = pair_dot(uv, er, al.vectors, icol, (er >= 0) & al.has_vector[icol])
            s = s.astype(np.float64)
            score = np.where(er >= 0, np.where(np.isnan(s), -np.inf, s), pop)
        else:
            score = _model_for(spec, ranker_models).predict(shared)
        yield spec.name, pairs.select("user_id", "item_id").with_columns(pl.Series("score", np.asarray(score, dtype=np.float64)))


def build_training_frame(
    train_features: SnapshotFeatures,
    labels: pl.DataFrame,
    arm: str,
    cfg: RankingConfig,
) -> tuple[pl.DataFrame, dict]:
    """Training rows of a ranker arm: its candidates for the labelled users, features, ``label``.

    ``train_features`` must be built on the TRAIN view (inputs before D - w);
    ``labels`` are that view's label-window positives (``snapshot.labels_for_train``).
    Returns ``(frame sorted by user_id, item_id; stats)`` with stats
    ``candidate_recall`` (share of label pairs inside the candidate pool),
    n_users, n_label_pairs, n_rows, n_positive_rows, users_without_positive_candidates.
    """
    spec = parse_arm(arm)
    if spec.kind != "ranker":
        raise ArmError(f"build_training_frame: {arm!r} is not a ranker arm.")
    if train_features.view.stage != "train":
        raise ArmError(
            f"build_training_frame: the view is a {train_features.view.stage!r} view; rankers train on the "
            "'train' view (inputs before D - w) so that they never see day D."
        )
    grade = pl.col("grade").cast(pl.Int8) if "grade" in labels.columns else pl.lit(1, pl.Int8)
    lab = labels.select(pl.col("user_id").cast(pl.String), pl.col("item_id").cast(pl.String), grade.alias("label")).unique(["user_id", "item_id"], keep="first", maintain_order=True)
    users = sorted(lab.get_column("user_id").unique().to_list())
    if cfg.max_train_users is not None and len(users) > cfg.max_train_users:
        h = hash_u64(users, "train-users")
        users = sorted(np.asarray(users, dtype=object)[np.argsort(h, kind="stable")[: cfg.max_train_users]].tolist())
        lab = lab.filter(pl.col("user_id").is_in(users))
    cands = generate_candidates(train_features, users, arm_sources(spec.base), cfg)
    feats = ranker_features(train_features, cands, spec.encoder)
    frame = feats.join(lab, on=["user_id", "item_id"], how="left", maintain_order="left").with_columns(
        pl.col("label").fill_null(0)
    ).sort("user_id", "item_id")
    pos_users = frame.filter(pl.col("label") > 0).get_column("user_id").n_unique()
    stats = {
        "arm": arm,
        "candidate_recall": candidate_recall(cands, lab),
        "n_users": len(users),
        "n_label_pairs": lab.height,
        "n_rows": frame.height,
        "n_positive_rows": int((frame.get_column("label") > 0).sum()),
        "users_without_positive_candidates": len(users) - pos_users,
    }
    return frame, stats


def explain_recommendations(
    arm: str,
    features: SnapshotFeatures,
    recs: pl.DataFrame,
    ranker_models: dict[str, RankerModel],
    cfg: RankingConfig,
    pool: pl.DataFrame | pl.LazyFrame | None = None,
) -> pl.DataFrame:
    """Per-feature contributions for a deterministic sample (``cfg.explain_sample`` rows) of a ranker arm's recs.
    ``pool``: the day's stored candidate pool of the served users (the sample's source flags and ALS rank are
    read from it instead of generating the sample users' candidates again: :func:`block_candidates`)."""
    spec = parse_arm(arm)
    model = _model_for(spec, ranker_models)
    if recs.height == 0:
        return model.explain(recs.head(0))
    h = pair_hash_u64(recs.get_column("user_id"), recs.get_column("item_id"), "explain")
    sample = recs.with_columns(pl.Series("_h", h)).sort("_h").head(cfg.explain_sample).drop("_h")
    users = sample.get_column("user_id").unique().sort().to_list()
    frame = _with_candidate_flags(sample.select("user_id", "item_id", "rank"), block_candidates(features, users, arm_sources(spec.base), cfg, pool))
    feats = ranker_features(features, frame, spec.encoder)
    return sample.select("user_id", "item_id", "rank").hstack(model.explain(feats).drop("user_id", "item_id"))


def training_labels(train_view, events, interaction_config, grade_days: Sequence[float] = ()) -> pl.DataFrame:
    """Label-window positives of a TRAIN view from any event log: events on/after day D are cut first.

    ``snapshot.labels_for_train`` keeps every event from D - w on, so it relies on its
    caller to pass only events before D; this wrapper enforces that (day D is the truth).

    With ``grade_days`` (e.g. ``(1, 3)``) a ``grade`` column is added: 1 + the number of
    thresholds the pair's first positive event falls before, counted in days from the
    window start (D - w). Positives of the first day(s) after the training snapshot weigh
    more, as the served lists are judged on the first day after theirs (docs/ranker.md).
    """
    from recsys_assets.lib.interactions import positive_mask_expr
    from recsys_assets.lib.snapshot import day_start, labels_for_train

    if train_view.stage != "train":
        raise ArmError(f"training_labels: need a 'train' view, got {train_view.stage!r}.")
    before = events.filter(pl.col("ts") < day_start(train_view.day))
    labels = labels_for_train(train_view, before, interaction_config)
    if not grade_days:
        return labels
    start = day_start(train_view.cutoff)
    first = (
        before.filter((pl.col("ts") >= start) & positive_mask_expr(interaction_config))
        .group_by("user_id", "item_id")
        .agg(pl.col("ts").min().alias("_t0"))
    )
    offset = (pl.col("_t0") - pl.lit(start)).dt.total_seconds() / 86400.0
    grade = pl.lit(1, pl.Int8)
    for g in sorted(grade_days):
        grade = grade + (offset < g).cast(pl.Int8)
    return labels.join(first, on=["user_id", "item_id"], how="left", maintain_order="left").select("user_id", "item_id", grade.cast(pl.Int8).alias("grade"))
