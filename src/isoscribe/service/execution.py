"""How the service runs stage tasks: a bounded admission queue in front of a StageExecutor.

Requests wait in the executor's pools; the queue here only counts them so that a full server
answers at once (429 or 503 with Retry-After) instead of letting work pile up without bound.
A worker crash fails the one task that was on it; with ``retry_crashed`` it is retried once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from typing import Any

from isoscribe.config import Settings
from isoscribe.executors import PooledExecutor, StageExecutor
from isoscribe.isolation import TaskResult, WorkerCrashed, WorkerPool
from isoscribe.logs import log_event

__all__ = ["QueueFull", "StageRunner", "build_executor", "speech_pool", "add_model_pool"]

logger = logging.getLogger("isoscribe.service")


class QueueFull(Exception):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"queue full; retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


def build_executor(settings: Settings) -> StageExecutor:
    """Celery when ``service.executor`` says so; else one recycled WorkerPool per stage.

    The speech pool starts with the server (``isolation.prespawn``); the summary pool on its first
    task, since summaries are optional per job and the LLM is the largest model.
    """
    if settings.service.executor == "celery":
        from isoscribe.distributed import CeleryExecutor

        return CeleryExecutor(settings)
    from isoscribe.pipeline import summary_limits, summary_stage

    speech = lambda: speech_pool(settings, settings.service.asr_workers)  # noqa: E731
    summary = lambda: WorkerPool(  # noqa: E731
        summary_stage(settings),
        size=settings.service.llm_workers,
        prespawn=False,
        limits=summary_limits(settings),
        **_policy(settings),
    )
    return PooledExecutor(pools={"speech": speech()}, factories={"speech": speech, "summary": summary})


def speech_pool(settings: Settings, size: int, prespawn: bool | None = None) -> WorkerPool:
    from isoscribe.pipeline import speech_limits, speech_stage

    prespawn = settings.isolation.prespawn if prespawn is None else prespawn
    return WorkerPool(
        speech_stage(settings), size=size, prespawn=prespawn, limits=speech_limits(settings), **_policy(settings)
    )


def add_model_pool(executor: PooledExecutor, settings: Settings, model: str) -> str:
    """The stage name serving ``model``: a one-worker pool made on its first task, recycled when idle."""
    stage = f"speech:{model}"
    if stage not in executor.factories:
        model_settings = settings.model_copy(deep=True)
        model_settings.asr.model = model
        executor.factories[stage] = lambda: speech_pool(model_settings, 1, prespawn=False)
        log_event(logger, "model_pool_added", model=model)
    return stage


def _policy(settings: Settings) -> dict[str, Any]:
    iso = settings.isolation
    return {
        "max_tasks_per_worker": iso.max_tasks_per_worker,
        "max_rss_mb": iso.max_rss_mb,
        "idle_ttl_s": iso.idle_ttl_s,
        "start_method": iso.start_method,
    }


class StageRunner:
    """Admission control plus ``await run(stage, request)`` over any StageExecutor."""

    def __init__(self, executor: StageExecutor, capacity: int, workers: int, retry_crashed: bool) -> None:
        self.executor = executor
        self.capacity = capacity
        self.workers = workers
        self.retry_crashed = retry_crashed
        self.in_flight = 0
        self.retries = 0
        self._lock = threading.Lock()
        self._mean_task_s = 5.0

    def admit(self) -> None:
        """Take a queue slot or raise QueueFull; pair with ``release``."""
        with self._lock:
            if self.in_flight >= self.capacity:
                raise QueueFull(self.retry_after_s())
            self.in_flight += 1

    def release(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def retry_after_s(self) -> int:
        """Seconds until a slot is likely free: the queue ahead drained at the mean task time."""
        return max(1, math.ceil(self._mean_task_s * max(self.in_flight, 1) / self.workers))

    async def run(self, stage: str, request: Any) -> TaskResult:
        try:
            result = await self._run_once(stage, request)
        except WorkerCrashed as crash:
            log_event(logger, "worker_crashed", logging.WARNING, stage=stage, cause=crash.describe())
            if not self.retry_crashed:
                raise
            self.retries += 1
            log_event(logger, "task_retry", stage=stage)
            result = await self._run_once(stage, request)
        if stage.startswith("speech"):
            self._mean_task_s = 0.8 * self._mean_task_s + 0.2 * result.stats.wall_s
        return result

    async def _run_once(self, stage: str, request: Any) -> TaskResult:
        future = self.executor.submit(stage, request)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:  # the job was cancelled (DELETE) or the server is draining
            self.executor.cancel(future)
            raise
