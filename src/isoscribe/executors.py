"""Where stage tasks run: warm recycled pools, a fresh process per task, or (distributed.py) Celery.

Callers submit by stage name ("probe", "speech", "summary") and get a Future of a TaskResult; they do
not care which executor runs it. ``on_event`` receives what the stage emits while it runs, and
``cancel`` stops a task wherever it is: queued, it is dropped; running, its worker is killed. Local executors also offer ``release(stage)``: drop that stage's warm
workers so their memory goes back to the OS (a no-op where nothing stays warm).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from typing import Any, Protocol

from isoscribe.config import Settings
from isoscribe.isolation import Limits, StageSpec, TaskCancelled, TaskResult
from isoscribe.isolation import WorkerPool, one_shot_pool

__all__ = [
    "EventListener",
    "StageExecutor",
    "PooledExecutor",
    "PerTaskExecutor",
    "build_executor",
    "pool_from_settings",
]


EventListener = Callable[[Any], None]


class StageExecutor(Protocol):
    def submit(self, stage: str, request: Any, on_event: EventListener | None = None) -> Future[TaskResult]: ...

    def cancel(self, future: Future) -> bool:
        """Drop a queued task, or stop a running one; False when it could not be stopped."""
        ...

    def shutdown(self) -> None: ...


class PooledExecutor:
    """One WorkerPool per stage: models load once per worker, workers are recycled by policy.

    Pools are given ready-made, or as factories that build a pool on its stage's first task;
    ``release(stage)`` shuts that pool down and the next task of the stage builds a fresh one.
    """

    def __init__(
        self,
        pools: dict[str, WorkerPool] | None = None,
        factories: dict[str, Callable[[], WorkerPool]] | None = None,
    ) -> None:
        self.pools: dict[str, WorkerPool] = dict(pools or {})
        self.factories = dict(factories or {})
        self._lock = threading.Lock()

    def submit(self, stage: str, request: Any, on_event: EventListener | None = None) -> Future[TaskResult]:
        return self._pool(stage).submit(request, on_event)

    def cancel(self, future: Future) -> bool:
        """A running task's worker is killed: its memory and CPU come back now, not when it finishes."""
        with self._lock:
            pools = list(self.pools.values())
        return any(pool.cancel(future) for pool in pools)

    def release(self, stage: str) -> None:
        with self._lock:
            pool = self.pools.pop(stage, None) if stage in self.factories else None
        if pool is not None:
            pool.shutdown()

    def shutdown(self) -> None:
        with self._lock:
            pools, self.pools = list(self.pools.values()), {}
        for pool in pools:
            pool.shutdown()

    def _pool(self, stage: str) -> WorkerPool:
        with self._lock:
            if stage not in self.pools:
                self.pools[stage] = self.factories[stage]()
            return self.pools[stage]


class PerTaskExecutor:
    """A fresh process per task that exits afterwards: all its memory goes back to the OS.

    At most ``max_concurrent`` tasks run at once; the others wait their turn in submission order.
    A cancelled or shut-down task fails with TaskCancelled, whether it was waiting or running.
    """

    def __init__(
        self, stages: dict[str, tuple[StageSpec, Limits]], max_concurrent: int = 1, start_method: str = "spawn"
    ) -> None:
        self.stages = stages
        self.start_method = start_method
        self._threads = ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="isolated-task")
        self._lock = threading.Lock()
        self._waiting: dict[Future, str] = {}
        """Submitted tasks whose process has not started, with their stage's label."""
        self._running: dict[Future, tuple[WorkerPool, Future]] = {}

    def submit(self, stage: str, request: Any, on_event: EventListener | None = None) -> Future[TaskResult]:
        spec, limits = self.stages[stage]
        future: Future[TaskResult] = Future()
        with self._lock:
            self._waiting[future] = spec.label
        self._threads.submit(self._run, spec, limits, request, on_event, future)
        return future

    def _run(
        self, spec: StageSpec, limits: Limits, request: Any, on_event: EventListener | None, future: Future
    ) -> None:
        try:
            with one_shot_pool(spec, limits, self.start_method) as pool:
                inner = self._start(pool, request, on_event, future)
                if inner is not None:
                    try:
                        future.set_result(inner.result())
                    finally:
                        with self._lock:
                            self._running.pop(future, None)
        except BaseException as exc:
            with self._lock:
                self._waiting.pop(future, None)
            try:
                future.set_exception(exc)
            except InvalidStateError:
                pass  # cancelled meanwhile

    def _start(self, pool: WorkerPool, request: Any, on_event: EventListener | None, future: Future) -> Future | None:
        """Hand the task to its process, unless it was cancelled while it waited (None then).

        Under the lock, so that a cancel comes either before this (the task never starts) or after it.
        """
        with self._lock:
            if self._waiting.pop(future, None) is None:
                return None
            inner = pool.submit(request, on_event)
            self._running[future] = (pool, inner)
            return inner

    def cancel(self, future: Future) -> bool:
        """A waiting task is dropped, a running one's process is killed; False for a future not held here."""
        with self._lock:
            label = self._waiting.pop(future, None)
            running = self._running.get(future)
        if running is not None:
            return running[0].cancel(running[1])
        if label is None:
            return False
        future.set_exception(TaskCancelled(label, detail="task cancelled before it ran"))
        return True

    def release(self, stage: str) -> None:
        """Nothing stays warm: each task's process has already exited."""

    def shutdown(self) -> None:
        with self._lock:
            waiting, self._waiting = list(self._waiting.items()), {}
            running = list(self._running.values())
        for future, label in waiting:
            future.set_exception(TaskCancelled(label, detail="the executor shut down before the task ran"))
        for pool, inner in running:
            pool.cancel(inner)
        self._threads.shutdown(wait=True, cancel_futures=True)


def build_executor(settings: Settings, lazy: bool = False) -> StageExecutor:
    """The executor ``settings.batch`` asks for.

    ``lazy``: pooled workers start on their stage's first task rather than up front, so a stage that
    is never used (no summary) or retired by the memory budget holds no memory.
    """
    batch = settings.batch
    if batch.executor == "celery":
        from isoscribe.distributed import CeleryExecutor

        return CeleryExecutor(settings)
    from isoscribe.pipeline.stages import stage_specs

    specs = stage_specs(settings)
    iso = settings.isolation
    if batch.isolation == "per-file":
        return PerTaskExecutor(specs, max_concurrent=2 * batch.workers, start_method=iso.start_method)

    def factory(stage: str) -> Callable[[], WorkerPool]:
        spec, limits = specs[stage]
        prespawn = iso.prespawn and not lazy
        return lambda: pool_from_settings(settings, spec, limits, size=batch.workers, prespawn=prespawn)

    factories = {stage: factory(stage) for stage in specs}
    if lazy:
        return PooledExecutor(factories=factories)
    return PooledExecutor(pools={stage: make() for stage, make in factories.items()}, factories=factories)


def pool_from_settings(settings: Settings, spec: StageSpec, limits: Limits, size: int, prespawn: bool) -> WorkerPool:
    """A WorkerPool of ``size`` workers for ``spec`` under ``limits``, recycled by ``settings.isolation``."""
    iso = settings.isolation
    return WorkerPool(
        spec,
        size=size,
        max_tasks_per_worker=iso.max_tasks_per_worker,
        max_rss_mb=iso.max_rss_mb,
        idle_ttl_s=iso.idle_ttl_s,
        prespawn=prespawn,
        limits=limits,
        start_method=iso.start_method,
    )
