"""run_isolated: one task in a fresh worker process that exits afterwards (the per-file mode)."""

from __future__ import annotations

from typing import Any

from isoscribe.isolation.pool import WorkerPool
from isoscribe.isolation.types import Limits, StageSpec, TaskResult

__all__ = ["run_isolated"]


def run_isolated(stage: StageSpec, request: Any, limits: Limits = Limits(), start_method: str = "spawn") -> TaskResult:
    """Start a worker, load the stage, run ``request``, let the worker exit; raise an IsolationError on failure.

    All the worker's memory, native and GPU included, goes back to the OS before this returns.
    """
    with WorkerPool(stage, size=1, max_tasks_per_worker=1, prespawn=False, limits=limits, start_method=start_method) as pool:
        return pool.run(request)
