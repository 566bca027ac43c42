"""The day jobs' executor: one process per step, independent steps side by side, within a thread budget.

Dagster's multiprocess executor runs every step in a fresh process, so no step inherits the heap of the
steps before it (an in-process night keeps the peak of every earlier step: 10.4 GiB at 10M), and steps
that do not depend on each other run at the same time (``als_model`` beside ``item_embeddings`` and
``user_profiles``; ``candidates`` beside ``ranker_examples`` -> ``ranker_dataset`` -> ``rankers``;
``encoder_study`` beside the ranking stages). Before it starts them, this executor gives each step process
``cpus // max_concurrent`` threads (polars, OpenMP, BLAS, MKL: set in the environment the step processes
inherit), so steps running together never ask for more threads than the machine has cores.

``execute_in_process`` (tests, the CLI) ignores a job's executor and keeps running every step in one process.
"""

from __future__ import annotations

import os

import dagster as dg

THREAD_VARS = ("POLARS_MAX_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
"""Read once when a step process imports its libraries: set here, before the executor starts it."""


def step_threads(max_concurrent: int | None, cpus: int | None = None) -> int:
    """Threads per step process when up to ``max_concurrent`` steps (None or 0: one per core) share ``cpus`` cores."""
    cpus = cpus or os.cpu_count() or 1
    return max(1, cpus // max(1, max_concurrent or cpus))


@dg.executor(
    name="step_processes",
    config_schema=dg.multiprocess_executor.config_schema,
    requirements=dg.multiple_process_executor_requirements(),
)
def step_process_executor(init_context: dg.InitExecutorContext):
    """Dagster's multiprocess executor (same run config: ``execution: {config: {max_concurrent: N}}``; default
    one step per core) with ``cpus // N`` threads per step process."""
    threads = str(step_threads(init_context.executor_config.get("max_concurrent")))
    for var in THREAD_VARS:
        os.environ[var] = threads
    return dg.multiprocess_executor.executor_creation_fn(init_context)
