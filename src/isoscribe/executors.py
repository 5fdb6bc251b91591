"""Where stage tasks run: warm recycled pools, a fresh process per task, or (distributed.py) Celery.

Callers submit by stage name ("probe", "speech", "summary") and get a Future of a TaskResult; they do
not care which executor runs it. ``on_event`` receives what the stage emits while it runs, and
``cancel`` stops a task wherever it is: queued, it is dropped; running, its worker is killed. Local
executors also offer ``release(stage)``: drop that stage's warm workers so their memory goes back to
the OS (a no-op where nothing stays warm).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from typing import Any, Protocol

from isoscribe.config import Settings
from isoscribe.isolation import Limits, StageSpec, TaskCancelled, TaskResult
from isoscribe.isolation import WorkerPool, one_shot_pool
from isoscribe.logs import log_event

__all__ = [
    "EventListener",
    "ExecutorUnavailable",
    "StageExecutor",
    "PooledExecutor",
    "PerTaskExecutor",
    "build_executor",
    "pool_from_settings",
]


EventListener = Callable[[Any], None]

_REAP_EVERY_S = 5.0
logger = logging.getLogger("isoscribe.executors")


class ExecutorUnavailable(RuntimeError):
    """The executor cannot start: where its tasks would run cannot be reached (a Celery broker that does not answer)."""


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
    ``unload_when_idle(stage, ttl_s)``: that stage's pool is shut down (its worker processes exit)
    once no task of it has been in flight for ``ttl_s``.
    """

    def __init__(
        self,
        pools: dict[str, WorkerPool] | None = None,
        factories: dict[str, Callable[[], WorkerPool]] | None = None,
    ) -> None:
        self.pools: dict[str, WorkerPool] = dict(pools or {})
        self.factories = dict(factories or {})
        self._lock = threading.Lock()
        self._in_flight: dict[str, int] = {}
        self._idle_since: dict[str, float] = {stage: time.monotonic() for stage in self.pools}
        self._idle_ttl_s: dict[str, float] = {}
        self._reaper: threading.Thread | None = None
        self._stopping = threading.Event()

    def submit(self, stage: str, request: Any, on_event: EventListener | None = None) -> Future[TaskResult]:
        with self._lock:
            pool = self._pool(stage)
            self._in_flight[stage] = self._in_flight.get(stage, 0) + 1
        try:
            future = pool.submit(request, on_event)
        except BaseException:
            self._task_done(stage)
            raise
        future.add_done_callback(lambda _: self._task_done(stage))
        return future

    def cancel(self, future: Future) -> bool:
        """A running task's worker is killed: its memory and CPU come back now, not when it finishes."""
        with self._lock:
            pools = list(self.pools.values())
        return any(pool.cancel(future) for pool in pools)

    def load(self, stage: str, timeout_s: float | None = None) -> bool:
        """Build ``stage``'s pool if it has none and wait until its workers are loaded; False on timeout
        or when the model fails to load."""
        with self._lock:
            pool = self._pool(stage)
        return pool.wait_ready(timeout_s)

    def loaded(self, stage: str) -> WorkerPool | None:
        with self._lock:
            return self.pools.get(stage)

    def release(self, stage: str) -> None:
        self.release_if_idle(stage, even_if_busy=True)

    def release_if_idle(self, stage: str, even_if_busy: bool = False) -> int:
        """Shut ``stage``'s pool down unless tasks of it are queued or running; returns how many are. One
        step under the lock: a task submitted between a check and a release would be cancelled with the pool."""
        with self._lock:
            busy = self._in_flight.get(stage, 0)
            released = stage in self.factories and (even_if_busy or not busy)
            pool = self.pools.pop(stage, None) if released else None
        if pool is not None:
            pool.shutdown()
        return busy

    def unload_when_idle(self, stage: str, ttl_s: float) -> None:
        with self._lock:
            self._idle_ttl_s[stage] = ttl_s
            if self._reaper is None:
                self._reaper = threading.Thread(target=self._unload_idle, name="isoscribe-pool-reaper", daemon=True)
                self._reaper.start()

    def shutdown(self) -> None:
        self._stopping.set()
        with self._lock:
            pools, self.pools = list(self.pools.values()), {}
        for pool in pools:
            pool.shutdown()

    def _pool(self, stage: str) -> WorkerPool:
        """``stage``'s pool, built from its factory if it has none; call with the lock held."""
        if stage not in self.pools:
            self.pools[stage] = self.factories[stage]()
            self._idle_since[stage] = time.monotonic()
        return self.pools[stage]

    def _task_done(self, stage: str) -> None:
        with self._lock:
            self._in_flight[stage] -= 1
            self._idle_since[stage] = time.monotonic()

    def _unload_idle(self) -> None:
        while not self._stopping.wait(self._reap_interval_s()):
            for stage, pool in self._take_idle_pools(time.monotonic()):
                pool.shutdown()
                log_event(logger, "pool_unloaded_idle", stage=stage, idle_ttl_s=self._idle_ttl_s[stage])

    def _reap_interval_s(self) -> float:
        with self._lock:
            return min(min(self._idle_ttl_s.values()) / 4, _REAP_EVERY_S)

    def _take_idle_pools(self, now: float) -> list[tuple[str, WorkerPool]]:
        with self._lock:
            idle = [
                stage
                for stage, ttl_s in self._idle_ttl_s.items()
                if stage in self.pools and self._in_flight.get(stage, 0) == 0 and now - self._idle_since[stage] > ttl_s
            ]
            return [(stage, self.pools.pop(stage)) for stage in idle]


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
