"""What the ranking stage gets per snapshot view: the view, its ALS model and per-encoder vectors.

:class:`SnapshotFeatures` bundles them and caches catalogue-aligned arrays (one row
per catalogue item, in sorted item_id order) so that candidate generation and
feature computation are matmuls and gathers, not joins per source.

The bundle is built from the feature assets' artifacts by
``ranking.nightly.load_snapshot_features`` (assets, tests and benchmarks alike: the tests land
their worlds into a lake and materialize the feature assets).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys_assets.lib.errors import RecsysError
from recsys_assets.lib.interactions import id_index, rows_of
from recsys_assets.lib.features.als import ALSModel
from recsys_assets.lib.features.content_to_cf import ContentToCFModel
from recsys_assets.lib.snapshot import ProtocolConfig, SnapshotView, frame_hash

log = logging.getLogger(__name__)

SEGMENT_ORDINAL = {"new": 0, "cold": 1, "warming": 2, "warm": 3}


class RankingInputError(RecsysError):
    """The ranking inputs of a snapshot do not fit together."""


def hash_u64(ids: pl.Series | Sequence[str], salt: str = "") -> np.ndarray:
    """Stable 64-bit hash per id (sha1 of ``salt:id``): deterministic tie-breaks and splits."""
    return np.fromiter(
        (int.from_bytes(hashlib.sha1(f"{salt}:{i}".encode()).digest()[:8], "big") for i in ids),
        dtype=np.uint64,
        count=len(ids),
    )


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer (uint64, wrapping): a bijective mix of every bit into every bit."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def pair_hash_u64(left: pl.Series, right: pl.Series, salt: str = "") -> np.ndarray:
    """Stable 64-bit hash per (left, right) id pair: :func:`hash_u64` of each distinct id, mixed (SplitMix64).

    One sha1 per distinct id instead of one per pair (a 10M world's served lists are millions of pairs
    over tens of thousands of users and items); deterministic across processes and versions.
    """
    def per_row(ids: pl.Series, side: str) -> np.ndarray:
        rows = pl.DataFrame({"id": ids.cast(pl.String)})
        distinct = rows.get_column("id").unique()
        hashed = pl.DataFrame({"id": distinct, "h": pl.Series(hash_u64(distinct, f"{salt}:{side}"), dtype=pl.UInt64)})
        return rows.join(hashed, on="id", how="left", maintain_order="left").get_column("h").to_numpy()

    with np.errstate(over="ignore"):
        return _splitmix64(_splitmix64(per_row(left, "l")) ^ per_row(right, "r"))


@dataclass
class EncoderFeatures:
    """One encoder's vectors for a snapshot view."""

    item_ids: list[str]
    """Row ids of ``item_vectors`` (the view's catalogue; items missing here have no vector)."""
    item_vectors: np.ndarray
    """float32 (n_items, dim), L2-normalized."""
    user_ids: list[str]
    """Row ids of ``user_vectors``: EMA profiles of users with history, plus profile-text users."""
    user_vectors: np.ndarray
    """float32 (n_users, dim), L2-normalized, same space as the items."""
    c2cf: ContentToCFModel | None = None
    """Text -> ALS-factor bridge fit on this view (None: no pseudo factors, c2cf source and feature empty)."""

    def __post_init__(self) -> None:
        self.item_ids = list(self.item_ids)
        self.user_ids = list(self.user_ids)
        self.item_vectors = np.ascontiguousarray(self.item_vectors, dtype=np.float32)
        self.user_vectors = np.ascontiguousarray(self.user_vectors, dtype=np.float32)
        if self.item_vectors.shape[0] != len(self.item_ids) or self.user_vectors.shape[0] != len(self.user_ids):
            raise RankingInputError(
                f"EncoderFeatures: {len(self.item_ids)} item ids for {self.item_vectors.shape[0]} item rows, "
                f"{len(self.user_ids)} user ids for {self.user_vectors.shape[0]} user rows."
            )
        if len(self.user_ids) and self.user_vectors.shape[1] != self.item_vectors.shape[1]:
            raise RankingInputError(
                f"EncoderFeatures: user vectors have dim {self.user_vectors.shape[1]}, items {self.item_vectors.shape[1]}."
            )


@dataclass
class _Aligned:
    """Catalogue-aligned arrays of one encoder."""

    vectors: np.ndarray  # (n_cat, dim), zero rows where missing
    has_vector: np.ndarray  # bool (n_cat,)
    pseudo: np.ndarray | None  # (n_cat, f) pseudo ALS factors, None without a bridge
    user_index: pl.DataFrame  # user_id, row


@dataclass
class SnapshotFeatures:
    """Inputs of the ranking stage for one view (one protocol, one stage)."""

    view: SnapshotView
    """The snapshot view (history, seen, catalogue, item/user stats)."""
    als: ALSModel | None
    """ALS fitted on ``view.history`` (+ folded-in users); None = no collaborative signal."""
    encoders: dict[str, EncoderFeatures] = field(default_factory=dict)
    """Per encoder name: item vectors, user interest vectors, content->CF bridge."""
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    """Segment thresholds (user segments are computed with them)."""
    users: pl.DataFrame | None = None
    """The users catalogue (user_id, profile): the profile attributes behind ``profile_lift``; None = no
    profiles (that feature is NaN)."""
    _cache: dict = field(default_factory=dict, repr=False)

    # --- catalogue --------------------------------------------------------------
    @property
    def item_ids(self) -> list[str]:
        """Catalogue item ids, sorted (the column order of every aligned array)."""
        if "item_ids" not in self._cache:
            self._cache["item_ids"] = sorted(self.view.catalog.get_column("item_id").unique().to_list())
        return self._cache["item_ids"]

    @property
    def item_index(self) -> pl.DataFrame:
        """(item_id, icol) for the catalogue."""
        if "item_index" not in self._cache:
            self._cache["item_index"] = pl.DataFrame(
                {"item_id": pl.Series(self.item_ids, dtype=pl.String), "icol": np.arange(len(self.item_ids), dtype=np.int64)}
            )
        return self._cache["item_index"]

    @property
    def item_table(self) -> pl.DataFrame:
        """Catalogue-aligned item stats: icol, item_id, n_interactions, n_recent, item_segment, age_days, tiebreak."""
        if "item_table" not in self._cache:
            st = self.view.item_stats
            t = self.item_index.join(st, on="item_id", how="left", maintain_order="left").with_columns(
                pl.col("n_interactions").fill_null(0),
                pl.col("n_recent").fill_null(0),
                pl.col("item_segment").fill_null("new"),
                pl.Series("tiebreak", hash_u64(self.item_ids, "tiebreak"), dtype=pl.UInt64),
            )
            self._cache["item_table"] = t
        return self._cache["item_table"]

    def item_array(self, name: str) -> np.ndarray:
        key = ("item_array", name)
        if key not in self._cache:
            self._cache[key] = self.item_table.get_column(name).to_numpy()
        return self._cache[key]

    @property
    def popularity_score(self) -> np.ndarray:
        """float64 per catalogue item: n_recent + n_interactions / (max + 1) (lexicographic order)."""
        if "pop" not in self._cache:
            rec = self.item_array("n_recent").astype(np.float64)
            allc = self.item_array("n_interactions").astype(np.float64)
            self._cache["pop"] = rec + allc / (allc.max(initial=0.0) + 1.0)
        return self._cache["pop"]

    @property
    def popularity_order(self) -> np.ndarray:
        """Catalogue columns, most popular first; ties by hashed item id."""
        if "pop_order" not in self._cache:
            self._cache["pop_order"] = np.lexsort((self.item_array("tiebreak"), -self.popularity_score))
        return self._cache["pop_order"]

    @property
    def popularity_position(self) -> np.ndarray:
        """int64 per catalogue item: its 0-based place in ``popularity_order`` (the popularity arm's list)."""
        if "pop_position" not in self._cache:
            pos = np.empty(len(self.item_ids), dtype=np.int64)
            pos[self.popularity_order] = np.arange(len(self.item_ids), dtype=np.int64)
            self._cache["pop_position"] = pos
        return self._cache["pop_position"]

    # --- ALS ----------------------------------------------------------------------
    def als_items(self) -> tuple[np.ndarray, np.ndarray]:
        """(item factors aligned to the catalogue with zero rows, known mask)."""
        if "als_items" not in self._cache:
            n = len(self.item_ids)
            if self.als is None:
                self._cache["als_items"] = (np.zeros((n, 1), np.float32), np.zeros(n, bool))
            else:
                rows = rows_of(self.item_ids, id_index(self.als.item_ids))
                known = rows >= 0
                f = np.zeros((n, self.als.n_factors), np.float32)
                f[known] = self.als.item_factors[rows[known]]
                self._cache["als_items"] = (f, known)
        return self._cache["als_items"]

    def als_user_rows(self, user_ids: Sequence[str]) -> np.ndarray:
        """Row in ``als.user_factors`` per user (-1 without factors)."""
        if self.als is None:
            return np.full(len(user_ids), -1, np.int64)
        if "als_user_index" not in self._cache:
            self._cache["als_user_index"] = id_index(self.als.user_ids)
        return rows_of(user_ids, self._cache["als_user_index"])

    # --- encoders -----------------------------------------------------------------
    def encoder(self, name: str) -> EncoderFeatures:
        if name not in self.encoders:
            raise RankingInputError(
                f"No vectors for encoder {name!r} in this snapshot (have {sorted(self.encoders)}); "
                "embed the catalogue with it or drop it from RankingConfig.encoders."
            )
        return self.encoders[name]

    def aligned(self, name: str) -> _Aligned:
        key = ("enc", name)
        if key not in self._cache:
            enc = self.encoder(name)
            n = len(self.item_ids)
            rows = rows_of(self.item_ids, id_index(enc.item_ids))
            has = rows >= 0
            vec = np.zeros((n, enc.item_vectors.shape[1]), np.float32)
            vec[has] = enc.item_vectors[rows[has]]
            pseudo = None
            if enc.c2cf is not None and self.als is not None:
                pseudo = np.zeros((n, self.als.n_factors), np.float32)
                if has.any():
                    pseudo[has] = enc.c2cf.predict(vec[has])
            if not has.all():
                log.info("encoder %s: %d of %d catalogue items have no vector", name, int((~has).sum()), n)
            self._cache[key] = _Aligned(vec, has, pseudo, id_index(enc.user_ids))
        return self._cache[key]

    def encoder_user_rows(self, name: str, user_ids: Sequence[str]) -> np.ndarray:
        return rows_of(user_ids, self.aligned(name).user_index)

    # --- what the inputs are ------------------------------------------------------
    def inputs_digest(self, encoder: str | None = None) -> str:
        """A content hash of the inputs a candidate source or feature of this bundle reads: the view's events and
        catalogue (what its models saw, what is seen, the item stats), the ALS model and the users catalogue, and with
        ``encoder`` that encoder's item vectors, user profiles and content->CF bridge too. Two bundles with the same
        digests give the same candidates of the sources that read only them, whatever day and stage they belong to:
        night D - w's serve view is day D's train view (``ranking.nightly.earlier_candidate_pool``). TF-IDF is
        refitted on each night's catalogue, so its digest moves every night; a neural encoder's moves when profile
        texts were encoded in other batches (their last bits follow the batch). Computed once per bundle (hashing
        the arrays: about a second per GB)."""
        key = ("inputs_digest", encoder)
        if key not in self._cache:
            h = hashlib.blake2b(digest_size=16)

            def text(value) -> None:
                h.update(f"{value}\x1f".encode())

            def ids(values: Sequence[str]) -> None:
                text(len(values))
                h.update("\x1e".join(values).encode())

            def array(a: np.ndarray | None) -> None:
                if a is None:
                    text(None)
                    return
                a = np.ascontiguousarray(a)
                text(f"{a.dtype.str}{a.shape}")
                h.update(a.data)

            if encoder is None:
                v = self.view
                text((v.protocol, v.cutoff, v.history_hash(), sorted(v.holdout)))
                for f in (v.catalog, v.seen, v.item_stats, v.user_stats, self.users):
                    text(None if f is None else (f.columns, frame_hash(f)))
                text(self.protocol)
                text(None if self.als is None else self.als.config_hash)
                if self.als is not None:
                    ids(self.als.user_ids)
                    ids(self.als.item_ids)
                    for a in (self.als.user_factors, self.als.item_factors, self.als.user_folded):
                        array(a)
            else:
                enc = self.encoder(encoder)
                text((self.inputs_digest(), encoder))
                ids(enc.item_ids)
                array(enc.item_vectors)
                ids(enc.user_ids)
                array(enc.user_vectors)
                text(None if enc.c2cf is None else enc.c2cf.config_hash)
                if enc.c2cf is not None:
                    array(enc.c2cf.coef)
                    array(enc.c2cf.intercept)
            self._cache[key] = h.hexdigest()
        return self._cache[key]

    # --- users --------------------------------------------------------------------
    def user_table(self, user_ids: Sequence[str]) -> pl.DataFrame:
        """(user_id, n_events, user_segment) per requested user (unknown users are ``new``)."""
        return self.view.user_segments(list(user_ids), self.protocol)

    def seen_matrix(self, user_ids: Sequence[str]) -> sp.csr_matrix:
        """bool CSR (requested users x catalogue): pairs seen before the cutoff (never recommended).

        The rows are sliced from one CSR of every user with history, built on the first call:
        serving asks for many small blocks of users, and joining the whole seen log per block
        grew with blocks x history.
        """
        if "seen_all" not in self._cache:
            hit = self.view.seen.select(pl.col("user_id").cast(pl.String), pl.col("item_id").cast(pl.String)).join(
                self.item_index, on="item_id", how="inner"
            )
            index = id_index(hit.get_column("user_id").unique().sort().to_list())
            rows = rows_of(hit.get_column("user_id"), index)
            n_users = index.height
            m = sp.csr_matrix(
                (np.ones(hit.height, dtype=bool), (rows, hit.get_column("icol").to_numpy())),
                shape=(n_users + 1, len(self.item_ids)),  # the last row is empty: users without history
            )
            m.sum_duplicates()
            self._cache["seen_all"] = (index, m)
        index, m = self._cache["seen_all"]
        rows = rows_of(list(user_ids), index)
        return m[np.where(rows >= 0, rows, m.shape[0] - 1)]
