"""Progress of long steps: a tqdm bar with rate and ETA on an interactive terminal, plain lines in logs.

``RECSYS_PROGRESS`` chooses: ``bar`` (always a bar), ``lines`` (always plain lines),
``off`` (nothing); unset = a bar when stderr is a terminal, else lines.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

PROGRESS_ENV = "RECSYS_PROGRESS"
"""Environment variable: ``bar`` | ``lines`` | ``off`` (default: bar on a terminal, else lines)."""

LINE_FORMAT = "{desc}: {n_fmt}/{total_fmt} {unit} [{elapsed} elapsed, ETA {remaining}, {rate_fmt}]"
"""tqdm's meter format of a plain progress line."""

T = TypeVar("T")


def progress_mode() -> str:
    """``bar``, ``lines`` or ``off`` (see the module docstring)."""
    mode = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if mode in ("bar", "lines", "off"):
        return mode
    return "bar" if sys.stderr.isatty() else "lines"


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def progress(
    items: Iterable[T],
    *,
    total: int | None = None,
    desc: str,
    unit: str = "it",
    log: Callable[[str], None] | None = None,
    min_interval_s: float = 10.0,
) -> Iterator[T]:
    """Yield ``items`` while showing progress.

    A bar (rate, ETA) on a terminal; otherwise a plain line through ``log``
    (default: stderr) after the first item, the last one, and at most every
    ``min_interval_s`` seconds in between.
    """
    total = total if total is not None else (len(items) if hasattr(items, "__len__") else None)  # type: ignore[arg-type]
    mode = progress_mode()
    if mode == "bar":
        yield from tqdm(items, total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=True)
        return
    if mode == "off":
        yield from items
        return
    say = log or _stderr
    t0 = last = time.perf_counter()
    n = 0
    for item in items:
        yield item
        n += 1
        now = time.perf_counter()
        if n == 1 or n == total or now - last >= min_interval_s:
            last = now
            say(tqdm.format_meter(n, total, now - t0, prefix=desc, unit=unit, bar_format=LINE_FORMAT))


def note(line: str) -> None:
    """A message that does not break a running bar (tqdm.write on a terminal, else stderr)."""
    if progress_mode() == "bar":
        tqdm.write(line, file=sys.stderr)
    else:
        _stderr(line)
