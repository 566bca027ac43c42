"""Locate the repository's ``sql/`` folder: report-table DDL, analyst views, example queries.

Layout (project root = the folder that holds the ``recsys_assets`` package)::

    sql/ddl/*.sql       CREATE SCHEMA / CREATE TABLE IF NOT EXISTS, applied first, by name
    sql/views/*.sql     one ``CREATE OR REPLACE VIEW reports.<name>`` per file, by name
    sql/queries/*.sql   example analyst queries (documentation; never applied)

``$RECSYS_SQL_DIR`` overrides the location (e.g. for an installed wheel run
from elsewhere).
"""

from __future__ import annotations

import os
from pathlib import Path

from recsys_assets.lib.errors import RecsysError

SQL_DIR_ENV_VAR = "RECSYS_SQL_DIR"


class SqlFilesNotFoundError(RecsysError):
    """The ``sql/`` folder of the project is missing."""


def sql_dir() -> Path:
    """The project's ``sql/`` folder (``$RECSYS_SQL_DIR``, else ``<project root>/sql``)."""
    override = os.environ.get(SQL_DIR_ENV_VAR)
    if override:
        candidates = [Path(override)]
    else:
        import recsys_assets

        package_dir = Path(recsys_assets.__file__).resolve().parent
        # Repo checkout (editable install) first, then SQL shipped inside the package.
        candidates = [package_dir.parent / "sql", package_dir / "sql"]
    for candidate in candidates:
        if candidate.joinpath("ddl").is_dir():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise SqlFilesNotFoundError(
        f"No sql/ folder with a ddl/ subfolder found (tried: {tried}). Run from a checkout of "
        f"the project, or set ${SQL_DIR_ENV_VAR} to the folder that holds ddl/ and views/."
    )


def _sorted_sql(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix == ".sql" and p.is_file())


def ddl_files() -> list[Path]:
    """DDL files in apply order (by file name: ``001_...``, ``002_...``)."""
    return _sorted_sql(sql_dir() / "ddl")


def view_files() -> list[Path]:
    """View files in apply order (by file name)."""
    return _sorted_sql(sql_dir() / "views")


def sql_files() -> list[Path]:
    """Everything to apply to the warehouse: DDL first, then views."""
    return ddl_files() + view_files()


def query_files() -> list[Path]:
    """Example analyst queries (not applied)."""
    return _sorted_sql(sql_dir() / "queries")


def view_names() -> list[str]:
    """Names of the views (``reports.<file stem>``) that ``sql_files()`` creates."""
    return [p.stem for p in view_files()]
