"""The analyst warehouse: one DuckDB file, ``<lake>/warehouse.duckdb``, schema ``reports``.

Writes replace a whole partition in ONE transaction (``BEGIN; DELETE <partition>;
INSERT <rows>; COMMIT``, ``ROLLBACK`` on any error), so a re-run never duplicates
rows and a failed or killed run leaves the previous rows in place.

Concurrency (DuckDB 2.x allows one writing *process* per file, and a process
holding the file read-write also blocks read-only openers in other processes):

* Writers of this class take an exclusive ``fcntl.flock`` on ``<path>.lock``
  around every write, so two runs on one machine (e.g. Dagster's multiprocess
  executor backfilling two days) queue instead of failing.
* Connections are opened per operation and closed right after, so the file is
  held only for the few milliseconds of a write or a query.
* DuckDB's own file lock is still taken; when something else holds it (an
  analyst's ``duckdb`` CLI opened read-write, a reader mid-query), the open is
  retried until ``lock_timeout_s`` and then fails with :class:`WarehouseLockedError`.
* Readers see the old or the new partition, never half of one (one transaction).

Non-local lakes (``s3://``, ``gs://``, ``memory://`` ...): DuckDB needs a local
file. A write downloads the current file (if any) to a private temp folder,
runs the transaction there, closes the database (which checkpoints the WAL
into the file) and uploads it with :func:`write_bytes_atomic` (one PUT: readers
of the object store see the old or the new file). The flock then lives in the
local temp folder, keyed by the URL: it serializes writers on one machine
only; writers on several machines need an outer lock (e.g. Dagster's run
queue / concurrency pools, ``dagster.yaml``), else the last upload wins.
Reads download a private copy.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
import time
import uuid
import weakref
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
from upath import UPath

from recsys_assets.lib.errors import RecsysError
from recsys_assets.lib.lake import as_upath, is_local, write_bytes_atomic

SCHEMA = "reports"
TABLES = (
    "arm_metrics", "cold_start_lift", "cold_start_lift_rollup", "warmup_curve", "encoder_cost", "headline", "ranker_check",
    "encoder_study", "fusion_ablation", "new_user_text",
)
DEFAULT_LOCK_TIMEOUT_S = 300.0


class WarehouseError(RecsysError):
    """A warehouse operation failed; the message names the file, table and partition."""


class WarehouseLockedError(WarehouseError):
    """Another process kept the DuckDB file locked for longer than the timeout."""


class WarehouseSchemaError(WarehouseError):
    """A frame does not fit the table it is written to (unknown or missing columns)."""


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _is_lock_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, duckdb.IOException) and "lock" in text


class Warehouse:
    """The DuckDB analyst warehouse at ``path`` (local path or any fsspec URL)."""

    def __init__(
        self,
        path: UPath | str | os.PathLike,
        *,
        lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
    ) -> None:
        self.path: UPath = as_upath(path)
        self.lock_timeout_s = float(lock_timeout_s)
        self._tmpdir: str | None = None
        self._finalizer: weakref.finalize | None = None

    # --- locations -------------------------------------------------------------
    @property
    def is_local(self) -> bool:
        return is_local(self.path)

    @property
    def lock_path(self) -> Path:
        """The flock file: ``<path>.lock`` beside a local file, else in the temp folder."""
        if self.is_local:
            return Path(self.path.path + ".lock")
        key = hashlib.sha1(str(self.path).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"recsys-warehouse-{key}.lock"

    def _scratch_dir(self) -> Path:
        if self._tmpdir is None:
            self._tmpdir = tempfile.mkdtemp(prefix="recsys-warehouse-")
            self._finalizer = weakref.finalize(self, shutil.rmtree, self._tmpdir, True)
        return Path(self._tmpdir)

    def close(self) -> None:
        """Remove local temp copies (only non-local lakes make any)."""
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
            self._tmpdir = None

    def __repr__(self) -> str:
        return f"Warehouse({str(self.path)!r})"

    # --- locking and connections ---------------------------------------------------
    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        lock_path = self.lock_path
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout_s
        with open(lock_path, "a+b") as fh:
            while True:
                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise WarehouseLockedError(
                            f"Another writer on this machine held {lock_path} for more than "
                            f"{self.lock_timeout_s:.0f} s while writing {self.path}. Wait for that run "
                            "to finish (or kill it), or raise lock_timeout_s."
                        ) from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _connect(self, local_file: Path, *, read_only: bool) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.02
        while True:
            try:
                return duckdb.connect(str(local_file), read_only=read_only)
            except duckdb.Error as exc:
                if not _is_lock_error(exc):
                    raise WarehouseError(f"Cannot open the warehouse {self.path}: {exc}") from exc
                if time.monotonic() >= deadline:
                    mode = "read-only" if read_only else "for writing"
                    raise WarehouseLockedError(
                        f"Could not open {self.path} {mode} within {self.lock_timeout_s:.0f} s: "
                        f"another process keeps DuckDB's file lock ({exc}). DuckDB allows one "
                        "writing process per file and a writer blocks readers: close analyst "
                        "sessions that opened the file read-write (open it with read_only=True, "
                        "e.g. Warehouse.read_only_connect()), or raise lock_timeout_s."
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    @contextlib.contextmanager
    def _writer(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write connection held under the flock; uploads afterwards on non-local lakes."""
        with self._file_lock():
            if self.is_local:
                local_file = Path(self.path.path)
                local_file.parent.mkdir(parents=True, exist_ok=True)
                con = self._connect(local_file, read_only=False)
                try:
                    yield con
                finally:
                    con.close()
                return
            local_file = self._scratch_dir() / f"write-{uuid.uuid4().hex}.duckdb"
            try:
                if self.path.exists():
                    local_file.write_bytes(self.path.read_bytes())
                con = self._connect(local_file, read_only=False)
                try:
                    yield con
                    con.execute("CHECKPOINT")
                finally:
                    con.close()
                # Only a completed block reaches here: upload the whole file atomically.
                write_bytes_atomic(self.path, local_file.read_bytes())
            finally:
                for leftover in (local_file, Path(str(local_file) + ".wal")):
                    leftover.unlink(missing_ok=True)

    def read_only_connect(self) -> duckdb.DuckDBPyConnection:
        """A read-only DuckDB connection for analysts; close it when done.

        It holds DuckDB's shared file lock while open, which makes writers wait
        (up to their ``lock_timeout_s``): keep sessions short. On a non-local
        lake it opens a private snapshot copy downloaded now.
        """
        if self.is_local:
            local_file = Path(self.path.path)
            if not local_file.exists():
                raise WarehouseError(
                    f"No warehouse at {self.path} yet: materialize the analyst_views asset "
                    "(or call Warehouse.apply_sql()) first."
                )
            return self._connect(local_file, read_only=True)
        if not self.path.exists():
            raise WarehouseError(
                f"No warehouse at {self.path} yet: materialize the analyst_views asset "
                "(or call Warehouse.apply_sql()) first."
            )
        local_file = self._scratch_dir() / f"read-{uuid.uuid4().hex}.duckdb"
        local_file.write_bytes(self.path.read_bytes())
        return self._connect(local_file, read_only=True)

    def exists(self) -> bool:
        return self.path.exists()

    # --- schema ----------------------------------------------------------------------
    def apply_sql(self, paths: Sequence[Path | str] | None = None) -> list[Path]:
        """Run DDL and view files (default: ``sql_files()``: DDL then views) in one transaction.

        Idempotent: DDL uses ``IF NOT EXISTS``, views ``CREATE OR REPLACE``.
        Returns the files applied.
        """
        if paths is None:
            from recsys_assets.lib.evaluation.sql_files import sql_files

            paths = sql_files()
        files = [Path(p) for p in paths]
        with self._writer() as con:
            con.execute("BEGIN TRANSACTION")
            current: Path | None = None
            try:
                for current in files:
                    text = current.read_text(encoding="utf-8")
                    if text.strip():
                        con.execute(text)
                con.execute("COMMIT")
            except Exception as exc:
                con.execute("ROLLBACK")
                raise WarehouseError(f"Applying {current} to {self.path} failed, nothing applied: {exc}") from exc
        return files

    @staticmethod
    def _split_table(table: str) -> tuple[str, str]:
        schema, _, name = table.rpartition(".")
        return (schema or SCHEMA), name

    @staticmethod
    def _columns(con: duckdb.DuckDBPyConnection, schema: str, name: str) -> dict[str, tuple[str, bool]]:
        rows = con.execute(
            "SELECT column_name, data_type, is_nullable = 'YES' FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
            [schema, name],
        ).fetchall()
        return {r[0]: (r[1], bool(r[2])) for r in rows}

    def table_columns(self, table: str) -> dict[str, tuple[str, bool]]:
        """``{column: (duckdb type, nullable)}`` of ``table`` (``name`` or ``schema.name``)."""
        schema, name = self._split_table(table)
        con = self.read_only_connect()
        try:
            return self._columns(con, schema, name)
        finally:
            con.close()

    # --- writing ---------------------------------------------------------------------
    def replace_partition(self, table: str, df: pl.DataFrame, where: Mapping[str, Any]) -> int:
        """Replace the rows of ``table`` matching ``where`` by ``df``, in one transaction.

        ``where`` maps column -> value (``None`` matches NULL; a list/tuple/set
        matches any of its values), e.g. ``{"day": d, "protocol": "item_holdout"}``.
        Columns are matched by name (order in ``df`` does not matter); nullable
        table columns missing from ``df`` become NULL; ``where`` columns missing
        from ``df`` take the ``where`` value. Every row of ``df`` must fall inside
        the partition (else a re-run would not delete it). Returns rows inserted.
        """
        schema, name = self._split_table(table)
        if not where:
            raise WarehouseError(
                f"replace_partition({table!r}) needs a non-empty `where` naming the partition "
                "(e.g. {'day': d, 'protocol': p}); an empty one would replace the whole table."
            )
        df = self._fill_where_columns(df, where)
        where_sql, where_params = self._where_clause(where)
        target = f"{_quote(schema)}.{_quote(name)}"
        view = f"_incoming_{uuid.uuid4().hex}"
        with self._writer() as con:
            columns = self._columns(con, schema, name)
            if not columns:
                raise WarehouseError(
                    f"Table {schema}.{name} does not exist in {self.path}: run Warehouse.apply_sql() "
                    f"(the analyst_views asset) first. Known report tables: {', '.join(TABLES)}."
                )
            self._check_columns(schema, name, columns, df, where)
            cols = ", ".join(_quote(c) for c in df.columns)
            con.register(view, df.to_arrow())
            try:
                con.execute("BEGIN TRANSACTION")
                try:
                    con.execute(f"DELETE FROM {target} WHERE {where_sql}", where_params)
                    if df.height:
                        con.execute(f"INSERT INTO {target} ({cols}) SELECT {cols} FROM {_quote(view)}")
                    inside = con.execute(
                        f"SELECT count(*) FROM {target} WHERE {where_sql}", where_params
                    ).fetchone()[0]
                    if inside != df.height:
                        raise WarehouseError(
                            f"{df.height - inside} of {df.height} rows for {schema}.{name} fall outside "
                            f"the partition {dict(where)}: a re-run would not replace them. Fix the "
                            "frame's partition columns or the `where`."
                        )
                    con.execute("COMMIT")
                except Exception as exc:
                    con.execute("ROLLBACK")
                    if isinstance(exc, RecsysError):
                        raise
                    raise WarehouseError(
                        f"Replacing partition {dict(where)} of {schema}.{name} in {self.path} failed; "
                        f"rolled back, the previous rows are intact. Cause: {exc}"
                    ) from exc
            finally:
                con.unregister(view)
        return df.height

    @staticmethod
    def _fill_where_columns(df: pl.DataFrame, where: Mapping[str, Any]) -> pl.DataFrame:
        missing = {
            k: v for k, v in where.items()
            if k not in df.columns and not isinstance(v, (list, tuple, set, frozenset))
        }
        if not missing:
            return df
        return df.with_columns([pl.lit(v).alias(k) for k, v in missing.items()])

    @staticmethod
    def _where_clause(where: Mapping[str, Any]) -> tuple[str, list[Any]]:
        parts: list[str] = []
        params: list[Any] = []
        for column, value in where.items():
            q = _quote(column)
            if value is None:
                parts.append(f"{q} IS NULL")
            elif isinstance(value, (list, tuple, set, frozenset)):
                values = list(value)
                if not values:
                    parts.append("FALSE")
                else:
                    parts.append(f"{q} IN ({', '.join('?' for _ in values)})")
                    params.extend(values)
            else:
                parts.append(f"{q} = ?")
                params.append(value)
        return " AND ".join(parts), params

    def _check_columns(
        self,
        schema: str,
        name: str,
        columns: Mapping[str, tuple[str, bool]],
        df: pl.DataFrame,
        where: Mapping[str, Any],
    ) -> None:
        unknown_where = [c for c in where if c not in columns]
        if unknown_where:
            raise WarehouseSchemaError(
                f"`where` of {schema}.{name} names unknown column(s) {unknown_where}; "
                f"the table has: {', '.join(columns)}."
            )
        unknown = [c for c in df.columns if c not in columns]
        if unknown:
            raise WarehouseSchemaError(
                f"Frame for {schema}.{name} has column(s) the table lacks: {unknown}. Rename or "
                f"drop them, or add them to sql/ddl (table columns: {', '.join(columns)})."
            )
        required = [c for c, (_, nullable) in columns.items() if not nullable and c not in df.columns]
        if required:
            raise WarehouseSchemaError(
                f"Frame for {schema}.{name} lacks NOT NULL column(s) {required}; "
                f"it has: {', '.join(df.columns) or '(none)'}."
            )
        if len(set(df.columns)) != len(df.columns):
            raise WarehouseSchemaError(f"Frame for {schema}.{name} has duplicate column names: {df.columns}.")

    # --- reading ---------------------------------------------------------------------
    def query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> pl.DataFrame:
        """Run a read-only query and return the fully fetched result as a polars frame."""
        con = self.read_only_connect()
        try:
            rel = con.sql(sql, params=params) if params is not None else con.sql(sql)
            if rel is None:
                return pl.DataFrame()
            return rel.pl()
        finally:
            con.close()

    def read_table(self, table: str) -> pl.DataFrame:
        """All rows of ``table`` (``name`` or ``schema.name``)."""
        schema, name = self._split_table(table)
        return self.query(f"SELECT * FROM {_quote(schema)}.{_quote(name)}")
