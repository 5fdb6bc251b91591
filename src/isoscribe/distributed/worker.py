"""The worker side: the Celery task bodies, each running its stage in this pool process's WorkerPool.

Every Celery pool process keeps one recycled WorkerPool per stage (built on the first task, rebuilt
when a client's settings change), so a crashing model only kills its isolated worker. The worker's
main process keeps a heartbeat key alive in Redis; clients redispatch the tasks of a worker whose
key expired.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import threading
import time
from concurrent.futures import CancelledError, Future
from typing import Any

from celery import signals as celery_signals
from celery.exceptions import BackendGetMetaError, BackendStoreError
from redis import Redis

from isoscribe.config import LlmSettings, Settings, load_settings
from isoscribe.distributed.app import CANCEL_KEY, HEARTBEAT_KEY, REDIS_ERRORS, REDIS_TIMEOUTS
from isoscribe.distributed.codec import (
    decode_value,
    encode_error,
    encode_value,
    localize_request,
    renamed_paths,
    request_files,
    spill_if_big,
)
from isoscribe.isolation import IsolationError, Limits, StageSpec, TaskCancelled, TaskResult
from isoscribe.logs import log_event

__all__ = ["TASK_FUNCTIONS", "use_settings", "start_heartbeat", "run_task"]

logger = logging.getLogger("isoscribe.distributed")

_CANCEL_POLL_S = 1.0
"""How often a running task looks for its cancel key."""
_BACKEND_ERRORS = (*REDIS_ERRORS, BackendStoreError, BackendGetMetaError)
"""What Celery's result backend raises once its own retries are spent."""

_worker_settings: Settings | None = None
_pools: dict[str, tuple[str, Any]] = {}
"""stage -> (fingerprint of the settings it was built with, WorkerPool), per Celery pool process."""
_pools_lock = threading.Lock()


def use_settings(settings: Settings) -> None:
    """The settings of this machine's worker; tasks compute with the client's sections over them."""
    global _worker_settings
    _worker_settings = settings


def start_heartbeat(settings: Settings, hostname: str) -> None:
    """Keep ``HEARTBEAT_KEY + hostname`` alive from the worker's main process while it lives.

    The thread lives in the Celery main process, which runs no stage: a busy task does not delay it,
    and it stops only when the worker (or its machine) does.
    """
    timeout_s = settings.celery.heartbeat_timeout_s
    redis = Redis.from_url(settings.celery.broker_url, **REDIS_TIMEOUTS)

    def beat() -> None:
        failing = False
        while True:
            try:
                redis.set(HEARTBEAT_KEY + hostname, repr(time.time()), px=int(timeout_s * 1000))
                failing = False
            except REDIS_ERRORS as exc:
                if not failing:
                    log_event(logger, "worker_heartbeat_failed", logging.WARNING, worker=hostname, error=exc)
                failing = True
            time.sleep(timeout_s / 4)

    threading.Thread(target=beat, name="isoscribe-heartbeat", daemon=True).start()


def _probe_task(self: Any, envelope: dict[str, Any]) -> dict[str, Any]:
    return run_task(self, "probe", envelope)


def _speech_task(self: Any, envelope: dict[str, Any]) -> dict[str, Any]:
    return run_task(self, "speech", envelope)


def _summary_task(self: Any, envelope: dict[str, Any]) -> dict[str, Any]:
    return run_task(self, "summary", envelope)


TASK_FUNCTIONS = {"probe": _probe_task, "speech": _speech_task, "summary": _summary_task}


def run_task(task: Any, stage: str, envelope: dict[str, Any]) -> dict[str, Any]:
    """One task: the stage's result (or its isolation error) as JSON, spilled to shared storage when big."""
    task_id, hostname = task.request.id, task.request.hostname
    stored = best_effort(task.backend.get_task_meta, task_id) or {}
    if stored.get("status") == "SUCCESS":
        # A redelivered task that already finished (its worker died before the ack).
        log_event(logger, "celery_task_duplicate", task_id=task_id, stage=stage, worker=hostname)
        return stored["result"]
    best_effort(task.update_state, state="STARTED", meta={"worker": hostname, "pid": os.getpid()})
    settings = effective_settings(envelope["settings"])
    shared_dir = settings.celery.shared_dir
    sent = decode_value(envelope["request"])
    request = localize_request(sent, shared_dir)
    # This machine's mount of shared storage means nothing to the client: errors name what it sent.
    sent_names = dict(zip(request_files(request), request_files(sent)))
    log_event(logger, "celery_task_start", task_id=task_id, stage=stage, worker=hostname)
    try:
        pool = _pool(stage, settings)
        cancel_key = _CancelKey(settings.celery.broker_url, task_id)
        if cancel_key.is_set():
            raise TaskCancelled(stage, detail="cancelled by its client before it started")
        future = pool.submit(request, _progress_reporter(task, task_id, hostname))
        result = _result_unless_cancelled(pool, future, cancel_key, stage)
    except TaskCancelled as exc:
        log_event(logger, "celery_task_cancelled", task_id=task_id, stage=stage, worker=hostname)
        return {"error": encode_error(exc), "worker": hostname}
    except IsolationError as exc:
        log_event(logger, "celery_task_failed", logging.WARNING, task_id=task_id, stage=stage, error=exc)
        return {"error": encode_error(renamed_paths(exc, sent_names)), "worker": hostname}
    payload = {"value": encode_value(result.value), "stats": dataclasses.asdict(result.stats), "worker": hostname}
    log_event(logger, "celery_task_done", task_id=task_id, stage=stage, wall_s=result.stats.wall_s)
    return spill_if_big(payload, task_id, shared_dir)


def _progress_reporter(task: Any, task_id: str, hostname: str) -> Any:
    """Progress events of the stage become the task's PROGRESS state, which the client reads while it polls.

    Events arrive on the pool's manager thread, where Celery's task context is not set: name the task.
    """
    from isoscribe.pipeline.events import Progress

    def report(event: Any) -> None:
        if isinstance(event, Progress):
            meta = {"worker": hostname, "pid": os.getpid(), "event": encode_value(event)}
            best_effort(task.update_state, task_id=task_id, state="PROGRESS", meta=meta)

    return report


def best_effort(call: Any, *args: Any, **kwargs: Any) -> Any:
    """Bookkeeping calls to the result backend; while Redis is away the task runs without them."""
    try:
        return call(*args, **kwargs)
    except _BACKEND_ERRORS as exc:
        log_event(logger, "result_backend_unreachable", logging.WARNING, error=exc)
        return None


class _CancelKey:
    """The key a client sets to cancel a task; read from the pool process running the task."""

    _clients: dict[str, Redis] = {}

    def __init__(self, broker_url: str, task_id: str) -> None:
        if broker_url not in self._clients:
            self._clients[broker_url] = Redis.from_url(broker_url, **REDIS_TIMEOUTS)
        self._redis = self._clients[broker_url]
        self._key = CANCEL_KEY + task_id

    def is_set(self) -> bool:
        """False while Redis is away: the task goes on, as with its other bookkeeping."""
        try:
            return bool(self._redis.exists(self._key))
        except REDIS_ERRORS:
            return False


def _result_unless_cancelled(pool: Any, future: Future, cancel_key: _CancelKey, stage: str) -> TaskResult:
    """The stage's result; once the client sets the cancel key, the pool kills the stage's worker."""
    cancelled = False
    while True:
        try:
            return future.result(timeout=_CANCEL_POLL_S)
        except TimeoutError:
            if not cancelled and cancel_key.is_set():
                cancelled = pool.cancel(future)
        except CancelledError:
            raise TaskCancelled(stage, detail="cancelled by its client before its isolated worker took it") from None


def effective_settings(client_sections: dict[str, Any]) -> Settings:
    """The worker's settings with the client's result-changing sections (asr, diarization, llm).

    The client decides what is computed, as with the local executor; the worker keeps what is about
    this machine: isolation policy, secrets, model cache directory, Celery connection.
    """
    base = _worker_settings or load_settings()
    asr = base.asr.model_validate({**client_sections["asr"], "model_cache_dir": base.asr.model_cache_dir})
    llm = LlmSettings.model_validate({**client_sections["llm"], "api_key": base.llm.api_key})
    diarization = base.diarization.model_validate(client_sections["diarization"])
    return base.model_copy(update={"asr": asr, "llm": llm, "diarization": diarization})


_READ_BY = {"probe": {"isolation"}, "speech": {"asr", "diarization", "isolation"}, "summary": {"llm", "isolation"}}
"""The settings each stage's pool is built from and its stage reads: another client's other sections
(a batch's [llm] beside the service's) do not make it load its model again."""


def _pool(stage: str, settings: Settings) -> Any:
    """This pool process's WorkerPool for ``stage``, rebuilt when the client's settings change."""
    from isoscribe.executors import pool_from_settings

    fingerprint = hashlib.sha256(settings.model_dump_json(include=_READ_BY[stage]).encode()).hexdigest()
    with _pools_lock:
        current = _pools.get(stage)
        if current is not None and current[0] == fingerprint:
            return current[1]
        if current is not None:
            current[1].shutdown()
        spec, limits = _stage(stage, settings)
        pool = pool_from_settings(settings, spec, limits, size=1, prespawn=False)
        _pools[stage] = (fingerprint, pool)
        return pool


def _stage(stage: str, settings: Settings) -> tuple[StageSpec, Limits]:
    """The same stage modules and limits as a local run (``isolation.speech_stage`` …)."""
    from isoscribe.pipeline.stages import stage_specs

    return stage_specs(settings)[stage]


@celery_signals.worker_process_shutdown.connect
def shutdown_pools(**_: Any) -> None:
    with _pools_lock:
        for _, pool in _pools.values():
            pool.shutdown()
        _pools.clear()
