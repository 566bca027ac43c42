"""map_in_order: the plain loop's results in order, on threads, bounded look-ahead, errors in order; slices."""

import threading
import time

import pytest

from recsys_assets.lib.parallel import map_in_order, map_side_by_side, slices


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_results_come_in_the_items_order(threads):
    def slow_square(i: int) -> int:
        time.sleep(0.002 * ((7 * i) % 5))  # later items often finish first
        return i * i

    assert list(map_in_order(slow_square, range(20), threads)) == [i * i for i in range(20)]
    assert list(map_in_order(slow_square, [], threads)) == []
    assert list(map_in_order(slow_square, [3], threads)) == [9]


def test_the_first_item_runs_alone_and_the_rest_on_threads():
    names: dict[int, str] = {}

    def record(i: int) -> int:
        names[i] = threading.current_thread().name
        return i

    assert list(map_in_order(record, range(6), 2)) == list(range(6))
    assert names[0] == threading.current_thread().name  # lazy caches are filled by one thread
    assert all(names[i].startswith("block") for i in range(1, 6))


def test_at_most_threads_items_are_computed_ahead_of_the_consumer():
    started: list[int] = []

    def note(i: int) -> int:
        started.append(i)
        return i

    gen = map_in_order(note, range(100), 2)
    assert next(gen) == 0
    assert next(gen) == 1
    time.sleep(0.05)
    assert sorted(started) == [0, 1, 2]  # 0 alone, then 1 and 2 submitted; 3 waits for the consumer
    gen.close()


def test_an_error_in_a_block_is_raised_in_order():
    def fail_on_3(i: int) -> int:
        if i == 3:
            raise ValueError("block 3")
        return i

    got = []
    with pytest.raises(ValueError, match="block 3"):
        for r in map_in_order(fail_on_3, range(10), 2):
            got.append(r)
    assert got == [0, 1, 2]


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_side_by_side_results_come_in_the_items_order(threads):
    def slow_square(i: int) -> int:
        time.sleep(0.002 * ((7 * i) % 5))
        return i * i

    assert map_side_by_side(slow_square, list(range(12)), threads) == [i * i for i in range(12)]
    assert map_side_by_side(slow_square, [], threads) == []


def test_side_by_side_a_free_thread_takes_the_next_job():
    """A long first job does not hold the others back: the second thread runs every other job meanwhile."""
    release = threading.Event()
    names: dict[int, str] = {}

    def job(i: int) -> int:
        names[i] = threading.current_thread().name
        if i == 0:
            assert release.wait(5)
        elif i == 3:
            release.set()  # reached only if jobs 1, 2, 3 ran while job 0 waited
        return i

    assert map_side_by_side(job, [0, 1, 2, 3], 2) == [0, 1, 2, 3]
    assert names[0] != names[3] and names[1] == names[2] == names[3]


def test_side_by_side_raises_the_first_error_in_order():
    def fail(i: int) -> int:
        if i in (2, 3):
            raise ValueError(f"job {i}")
        return i

    with pytest.raises(ValueError, match="job 2"):
        map_side_by_side(fail, list(range(5)), 2)


def test_slices_cover_the_items_once_in_order():
    items = list(range(10))
    assert [list(b) for b in slices(items, 4)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert [list(b) for b in slices(items, 0)] == [[i] for i in items]  # size < 1 counts as 1
    assert list(slices([], 4)) == []
    assert list(slices([], 4, keep_empty=True)) == [[]]
    assert [list(b) for b in slices(items, 100, keep_empty=True)] == [items]
