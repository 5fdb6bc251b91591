"""How the service runs files: a bounded admission queue in front of the pipeline and its executor.

Requests wait in the executor's pools; the queue here only counts them so that a full server
answers at once (429 or 503 with Retry-After) instead of letting work pile up without bound.
A worker crash fails the one task that was on it; with ``retry_crashed`` it is retried once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from isoscribe.config import Settings
from isoscribe.executors import PooledExecutor, StageExecutor, pool_from_settings
from isoscribe.isolation import WorkerPool
from isoscribe.logs import log_event
from isoscribe.pipeline import Event, FilePipeline, Listener, Policy, StageFinished, StageStarted, stage_specs

__all__ = ["QueueFull", "PipelineRunner", "build_executor", "speech_pool", "add_model_pool", "model_stage"]

logger = logging.getLogger("isoscribe.service")

T = TypeVar("T")


class QueueFull(Exception):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"queue full; retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


def build_executor(settings: Settings) -> StageExecutor:
    """Celery when ``service.executor`` says so; else one recycled WorkerPool per stage.

    The probe and speech pools start with the server (``isolation.prespawn``); the summary pool on its
    first task, since summaries are optional per job and the LLM is the largest model.
    """
    if settings.service.executor == "celery":
        from isoscribe.distributed import CeleryExecutor

        return CeleryExecutor(settings)
    specs = stage_specs(settings)
    probe = lambda: _pool(specs["probe"], settings.service.asr_workers, settings.isolation.prespawn, settings)  # noqa: E731
    speech = lambda: speech_pool(settings, settings.service.asr_workers)  # noqa: E731
    summary = lambda: _pool(specs["summary"], settings.service.llm_workers, False, settings)  # noqa: E731
    factories = {"probe": probe, "speech": speech, "summary": summary}
    return PooledExecutor(pools={"probe": probe(), "speech": speech()}, factories=factories)


def _pool(spec_and_limits: tuple, size: int, prespawn: bool, settings: Settings) -> WorkerPool:
    spec, limits = spec_and_limits
    return pool_from_settings(settings, spec, limits, size=size, prespawn=prespawn)


def speech_pool(settings: Settings, size: int, prespawn: bool | None = None) -> WorkerPool:
    prespawn = settings.isolation.prespawn if prespawn is None else prespawn
    return _pool(stage_specs(settings)["speech"], size, prespawn, settings)


def model_stage(model: str) -> str:
    """The executor stage of a model other than the configured one (that one's stage is "speech")."""
    return f"speech:{model}"


def add_model_pool(executor: PooledExecutor, settings: Settings, model: str) -> str:
    """The stage name serving ``model``: a one-worker pool made on its first task or load, shut down
    (its worker ended) after ``service.idle_ttl_s`` without a task."""
    stage = model_stage(model)
    if stage not in executor.factories:
        model_settings = settings.model_copy(deep=True)
        model_settings.asr.model = model
        executor.factories[stage] = lambda: speech_pool(model_settings, 1, prespawn=True)
        if settings.service.idle_ttl_s is not None:
            executor.unload_when_idle(stage, settings.service.idle_ttl_s)
        log_event(logger, "model_pool_added", model=model)
    return stage


class PipelineRunner:
    """Admission control, and files through the pipeline on threads of their own, cancellable from asyncio.

    A cancelled request or job (client gone, DELETE, drain) cancels its pipeline, which kills the
    worker running its current stage: the CPU and memory come back at once.
    """

    def __init__(self, executor: StageExecutor, capacity: int, workers: int, job_loops: int) -> None:
        self.executor = executor
        self.capacity = capacity
        self.workers = workers
        self.in_flight = 0
        self.retries = 0
        self._lock = threading.Lock()
        self._mean_task_s = 5.0
        self._threads = ThreadPoolExecutor(max_workers=capacity + job_loops, thread_name_prefix="pipeline")

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

    def pipeline(self, policy: Policy, listener: Listener | None = None) -> FilePipeline:
        """A pipeline over this executor whose events also keep the admission statistics."""

        def observe(event: Event) -> None:
            if isinstance(event, StageStarted) and event.stage == "speech" and event.attempt > 1:
                self.retries += 1
                log_event(logger, "task_retry", stage=event.stage, attempt=event.attempt)
            elif isinstance(event, StageFinished) and event.stage == "speech" and event.error is None:
                self._mean_task_s = 0.8 * self._mean_task_s + 0.2 * event.wall_s
            if listener is not None:
                listener(event)

        return FilePipeline(self.executor, policy, observe)

    async def run(self, pipeline: FilePipeline, call: Callable[[], T]) -> T:
        """``call`` (a pipeline method) on a thread; cancelling the awaiting task cancels the pipeline."""
        future = asyncio.get_running_loop().run_in_executor(self._threads, call)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            pipeline.cancellation.cancel()
            await asyncio.gather(future, return_exceptions=True)
            raise

    def shutdown(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
