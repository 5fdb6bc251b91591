"""run_isolated: one task in a fresh worker process that exits afterwards (the per-file mode)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from isoscribe.isolation.pool import WorkerPool
from isoscribe.isolation.types import Limits, StageSpec, TaskResult

__all__ = ["run_isolated", "one_shot_pool"]


def run_isolated(
    stage: StageSpec,
    request: Any,
    limits: Limits = Limits(),
    start_method: str = "spawn",
    on_event: Callable[[Any], None] | None = None,
) -> TaskResult:
    """Start a worker, load the stage, run ``request``, let the worker exit; raise an IsolationError on failure.

    All the worker's memory, native and GPU included, goes back to the OS before this returns.
    ``on_event`` receives what the stage emits while it runs (see ``WorkerPool.submit``).
    """
    with one_shot_pool(stage, limits, start_method) as pool:
        return pool.submit(request, on_event).result()


def one_shot_pool(stage: StageSpec, limits: Limits = Limits(), start_method: str = "spawn") -> WorkerPool:
    """A pool of one worker that runs a single task and exits: a handle to cancel that task by."""
    return WorkerPool(stage, size=1, max_tasks_per_worker=1, prespawn=False, limits=limits, start_method=start_method)
