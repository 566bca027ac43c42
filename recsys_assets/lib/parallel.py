"""Blocks of users on several threads, results in the blocks' order.

The nightly stages that grow with the users (``candidates``, ``ranker_examples``, ``recommendations``,
``cold_start_eval``) work one block of users at a time, and each block's result depends on its users
alone. Their heavy work is numpy, scipy, polars and LightGBM calls that release the GIL, so two
threads on two blocks keep two cores busy while the executor has one step to run (most of a night's
chain: measured 1.7x on a 3M world's candidate pools and recommendation blocks, the same bytes).
Threads, not processes: a block reads the snapshot's features (hundreds of MB at 10M events) where
they are, instead of a copy per worker.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def slices(items: Sequence[T], size: int, *, keep_empty: bool = False) -> Iterator[Sequence[T]]:
    """``items`` in consecutive slices of at most ``size`` (``size`` < 1 counts as 1): the blocks of users
    that bound a stage's memory. ``keep_empty``: one empty slice when there are no items (for callers whose
    empty result is built by the block function itself)."""
    size = max(1, size)
    for start in range(0, max(len(items), 1 if keep_empty else 0), size):
        yield items[start : start + size]


def map_in_order(fn: Callable[[T], R], items: Iterable[T], threads: int = 1) -> Iterator[R]:
    """``fn`` of each item, yielded in the items' order, computed on up to ``threads`` threads.

    The first item is computed alone, before any thread starts: it fills the lazy per-snapshot
    caches (``SnapshotFeatures._cache``) that every later block reads, so no two threads build one.
    At most ``threads`` results are computed ahead of the one the caller is consuming, so memory
    holds about ``threads + 1`` blocks. ``threads <= 1`` is a plain loop. An exception in any block
    is raised here, in order, and the blocks not yet started are cancelled.
    """
    it = iter(items)
    if threads <= 1:
        yield from map(fn, it)
        return
    first = next(it, _END)
    if first is _END:
        return
    yield fn(first)  # type: ignore[arg-type]
    pending: deque[Future[R]] = deque()
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="block") as pool:
        try:
            for item in it:
                pending.append(pool.submit(fn, item))
                if len(pending) >= threads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for f in pending:
                f.cancel()


def map_side_by_side(fn: Callable[[T], R], items: Sequence[T], threads: int = 1) -> list[R]:
    """``fn`` of every item on a pool of ``threads`` threads, the results in the items' order.

    For a few independent jobs with small results (one ranker arm's training file or model each:
    ``nightly.build_ranker_datasets``, ``nightly.train_rankers``) that share no lazy cache: every job
    is queued at once, so a thread takes the next job as soon as its own ends, where
    :func:`map_in_order` would wait for the oldest one (it bounds the results held, which these do not
    need). Memory holds ``threads`` jobs' working sets. ``threads <= 1`` is a plain loop. The first
    error, in the items' order, is raised after the jobs already running have ended.
    """
    if threads <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="job") as pool:
        futures = [pool.submit(fn, item) for item in items]
        try:
            return [f.result() for f in futures]
        finally:
            for f in futures:
                f.cancel()


_END = object()
