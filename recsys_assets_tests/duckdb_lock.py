"""A child process that holds a DuckDB file's write lock for a while (what an analyst meets while a run writes)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def duckdb_lock_held(path: Path, seconds: float = 2.0) -> Iterator[None]:
    """Inside the block another process holds ``path`` open for writing; it lets go after ``seconds``."""
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import duckdb, time
            con = duckdb.connect({str(path)!r})
            print("holding", flush=True)
            time.sleep({seconds!r})
            con.close()
        """)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        yield
    finally:
        holder.wait(timeout=30)
