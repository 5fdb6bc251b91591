"""Where stage tasks run: warm recycled pools, a fresh process per task, or (distributed.py) Celery.

Callers submit by stage name ("speech", "summary") and get a Future of a TaskResult; they do not
care which executor runs it.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

from isoscribe.isolation import Limits, StageSpec, TaskResult
from isoscribe.isolation import WorkerPool, run_isolated

__all__ = ["StageExecutor", "PooledExecutor", "PerTaskExecutor"]


class StageExecutor(Protocol):
    def submit(self, stage: str, request: Any) -> Future[TaskResult]: ...

    def shutdown(self) -> None: ...


class PooledExecutor:
    """One WorkerPool per stage: models load once per worker, workers are recycled by policy."""

    def __init__(self, pools: dict[str, WorkerPool]) -> None:
        self.pools = pools

    def submit(self, stage: str, request: Any) -> Future[TaskResult]:
        return self.pools[stage].submit(request)

    def shutdown(self) -> None:
        for pool in self.pools.values():
            pool.shutdown()


class PerTaskExecutor:
    """A fresh process per task that exits afterwards: all its memory goes back to the OS."""

    def __init__(self, stages: dict[str, tuple[StageSpec, Limits]], max_concurrent: int = 1) -> None:
        self.stages = stages
        self._threads = ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="isolated-task")

    def submit(self, stage: str, request: Any) -> Future[TaskResult]:
        spec, limits = self.stages[stage]
        return self._threads.submit(run_isolated, spec, request, limits)

    def shutdown(self) -> None:
        self._threads.shutdown(wait=True, cancel_futures=True)
