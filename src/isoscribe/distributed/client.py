"""The client side: ``CeleryExecutor``, a StageExecutor that publishes each stage call as a Celery task.

Its waiter thread (waiter.py) resolves the Futures. Audio and voice samples are staged in shared
storage when a task is submitted; a cancel stops the stage on the worker through a cancel key.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery import Celery
from redis import Redis

from isoscribe.config import Settings
from isoscribe.distributed.app import (
    CANCEL_KEY,
    CANCEL_TTL_S,
    REDIS_ERRORS,
    REDIS_OUTAGE_S,
    REDIS_RETRY,
    REDIS_TIMEOUTS,
    REDIS_TRIES,
    STAGE_QUEUES,
    STAGE_TASKS,
    BrokerUnreachable,
    create_app,
    redacted_url,
    visibility_timeout_s,
    with_redis_retry,
)
from isoscribe.distributed.codec import client_sections, encode_value, request_files, with_request_files
from isoscribe.distributed.staging import StagedHolds, copy_staged, staged_name, sweep_leftovers
from isoscribe.distributed.waiter import Waiter
from isoscribe.isolation import TaskCancelled, TaskResult
from isoscribe.logs import log_event

__all__ = ["CeleryExecutor", "CompletedTask"]

logger = logging.getLogger("isoscribe.distributed")


@dataclass(frozen=True)
class CompletedTask:
    task_id: str
    stage: str
    worker: str
    """Celery node name (``isoscribe-PID@host``) that produced the result."""
    ok: bool


@dataclass
class PendingTask:
    task_id: str
    stage: str
    envelope: dict[str, Any]
    future: Future
    original_audio: str | None
    """The caller's audio_path; results' ``source`` gets it back."""
    sent_audio: str | None
    staged: tuple[str, ...]
    """Names in shared storage this task holds (its audio, then its voice samples)."""
    caller_paths: dict[str, str] = field(default_factory=dict)
    """Each file as the task names it -> the caller's path; an error the worker returns names the caller's."""
    on_event: Callable[[Any], None] | None = None
    last_event: Any = None
    lost_workers: set[str] = field(default_factory=set)
    """Workers that died running this task; it was published again for each."""
    celery_losses: int = 0
    """Times Celery reported the task lost (WorkerLostError, TimeLimitExceeded); it was published again for each."""


class CeleryExecutor:
    """StageExecutor over Celery: ``submit(stage, request)`` publishes a task and returns a Future.

    One waiter thread polls the result backend for every unfinished task and watches Redis's
    ``run_id``; after a restart it publishes again the unfinished tasks Redis lost. Isolation errors
    raised on a worker are raised here with the same types and fields.
    """

    runs_any_model = True
    """Any installed model's speech runs here (stage ``speech:MODEL``): the workers load the model a task names."""
    completed_kept = 1000
    """How many of the latest ``completed`` tasks are kept (a service runs for months)."""

    def __init__(self, settings: Settings, app: Celery | None = None) -> None:
        self.settings = settings
        self.app = app or create_app(settings)
        # The client polls result keys itself; Celery's per-task pub/sub subscription would only
        # pile unread result messages up on this connection.
        self.app.backend.on_task_call = lambda producer, task_id: None
        self.shared_dir = settings.celery.shared_dir
        self.completed: deque[CompletedTask] = deque(maxlen=self.completed_kept)
        self.republished = 0
        """Tasks published again because a restarted Redis had lost them."""
        self.redispatched = 0
        """Tasks published again because the worker running them stopped beating."""
        self._sections = client_sections(settings)
        self._pending: dict[str, PendingTask] = {}
        self._abandoned: dict[str, float] = {}
        """Cancelled task -> until when to look for its late result, whose spilled file must go."""
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._broker = Redis.from_url(settings.celery.broker_url, **REDIS_TIMEOUTS)
        client_id = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._holds = StagedHolds(self._broker, self.shared_dir, client_id) if self.shared_dir is not None else None
        self._declare_queues_at_start()
        self._sweep_shared_storage()
        self._waiter = Waiter(self)

    def _sweep_shared_storage(self) -> None:
        """What clients that died left in shared storage a day ago goes (their holds have expired by then)."""
        if self.shared_dir is None:
            return
        try:
            removed = sweep_leftovers(self._broker, self.shared_dir)
        except (*REDIS_ERRORS, OSError) as exc:  # tidying only: the next client tries again
            log_event(logger, "shared_storage_sweep_failed", logging.WARNING, error=exc)
            return
        if removed:
            log_event(logger, "shared_storage_swept", files=removed)

    def submit(self, stage: str, request: Any, on_event: Callable[[Any], None] | None = None) -> Future[TaskResult]:
        """``stage`` is one of STAGE_TASKS, or ``speech:MODEL``: the speech task on ``MODEL`` instead of ``asr.model``."""
        stage, _, model = stage.partition(":")
        if stage not in STAGE_TASKS or (model and stage != "speech"):
            raise ValueError(f"unknown stage {stage!r}; Celery runs {sorted(STAGE_TASKS)} and speech:MODEL")
        sections = {**self._sections, "asr": {**self._sections["asr"], "model": model}} if model else self._sections
        if self._stopped.is_set():
            raise RuntimeError("CeleryExecutor is shut down")
        original, staged, sent_request = self._stage_request(request)
        sent = getattr(sent_request, "audio_path", None)
        # The Future stays pending while the task is queued, so that cancelling it drops the task (a stopped
        # batch's queued tasks); the waiter marks it running once a worker has started the task.
        future: Future[TaskResult] = Future()
        pending = PendingTask(
            task_id=f"isoscribe-{stage}-{uuid.uuid4().hex}",
            stage=stage,
            envelope={"request": encode_value(sent_request), "settings": sections},
            future=future,
            original_audio=original,
            sent_audio=sent,
            staged=staged,
            caller_paths=dict(zip(request_files(sent_request), request_files(request))),
            on_event=on_event,
        )
        with self._lock:
            self._pending[pending.task_id] = pending
        future.add_done_callback(lambda done: self._drop_if_cancelled(pending.task_id, done))
        try:
            self._publish(pending)
        except Exception as exc:
            self._finish(pending.task_id, exc, worker="")
        self._wake.set()
        return future

    def cancel(self, future: Future) -> bool:
        """Cancel the task: a worker that has not started it drops it; one running it stops its stage."""
        with self._lock:
            pending = next((p for p in self._pending.values() if p.future is future), None)
        if pending is None:
            return False
        try:
            self._cancel_remote([pending.task_id])
        except REDIS_ERRORS as exc:
            log_event(logger, "celery_revoke_failed", logging.WARNING, tasks=1, error=exc)
            return False
        with self._lock:
            self._abandoned[pending.task_id] = time.monotonic() + visibility_timeout_s(self.settings)
        self._finish(pending.task_id, TaskCancelled(pending.stage, detail="cancelled; its Celery task was revoked"), worker="")
        return True

    def _drop_if_cancelled(self, task_id: str, future: Future) -> None:
        """A Future cancelled while its task waited in the queue: the task is revoked, and a worker that takes
        it all the same finds its cancel key and runs nothing (one that started it a moment ago stops it)."""
        if not future.cancelled():
            return
        with self._lock:
            pending = self._pending.pop(task_id, None)
            if pending is None:
                return
            self._abandoned[task_id] = time.monotonic() + visibility_timeout_s(self.settings)
            self.completed.append(CompletedTask(task_id, pending.stage, "", False))
        try:
            self._cancel_remote([task_id])
        except REDIS_ERRORS as exc:
            log_event(logger, "celery_revoke_failed", logging.WARNING, tasks=1, error=exc)
        if self._holds is not None:
            self._holds.drop(pending.staged)
        log_event(logger, "celery_task_dropped", task_id=task_id, stage=pending.stage)

    def shutdown(self) -> None:
        """Stop waiting; tasks not finished are cancelled on the workers and their Futures fail with TaskCancelled."""
        self._stopped.set()
        self._wake.set()
        self._waiter.join(timeout_s=10)
        with self._lock:
            unfinished = list(self._pending.values())
        if unfinished:
            try:
                self._cancel_remote([pending.task_id for pending in unfinished])
            except REDIS_ERRORS as exc:
                log_event(logger, "celery_revoke_failed", logging.WARNING, tasks=len(unfinished), error=exc)
        for pending in unfinished:
            error = TaskCancelled(pending.stage, detail="the Celery executor shut down before the task finished")
            self._finish(pending.task_id, error, worker="")
        self._broker.close()

    def __enter__(self) -> CeleryExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def _cancel_remote(self, task_ids: list[str]) -> None:
        """Set each task's cancel key, which a worker running it watches, then revoke the queued copies."""
        pipe = self._broker.pipeline()
        for task_id in task_ids:
            pipe.set(CANCEL_KEY + task_id, "1", ex=CANCEL_TTL_S)
        pipe.execute()
        self.app.control.revoke(task_ids)

    def _stage_request(self, request: Any) -> tuple[str | None, tuple[str, ...], Any]:
        """(the caller's audio_path, the staged names this task holds, the request naming them).

        The audio and the known speakers' voice samples go to shared storage; without one, every
        machine must see them at the same absolute path."""
        audio_path = getattr(request, "audio_path", None)
        paths = request_files(request)
        if self._holds is None:
            return audio_path, (), with_request_files(request, [str(Path(path).resolve()) for path in paths])
        names = [staged_name(Path(path)) for path in paths]
        # Hold before copying: see StagedHolds.
        try:
            self._holds.take(names)
            for path, name in zip(paths, names):
                copy_staged(Path(path), self.shared_dir, name)
        except BaseException:
            self._holds.drop(names)
            raise
        return audio_path, tuple(names), with_request_files(request, names)

    def _publish(self, pending: PendingTask) -> None:
        """Publish once on a fresh connection, and again on a fresh one while Redis is away.

        Not kombu's own publish retry: after an outage it can go on with a channel it has closed
        (AttributeError on the channel's connection), which failed jobs that should have waited.
        """

        def publish_once() -> None:
            with self.app.connection_for_write() as connection:
                self.app.send_task(
                    STAGE_TASKS[pending.stage],
                    kwargs={"envelope": pending.envelope},
                    task_id=pending.task_id,
                    queue=STAGE_QUEUES[pending.stage],
                    connection=connection,
                    retry=False,
                )

        with_redis_retry(publish_once)
        log_event(logger, "celery_task_sent", task_id=pending.task_id, stage=pending.stage)

    def _declare_queues_at_start(self) -> None:
        """Declare the queues, saying at once that the broker does not answer, and raising BrokerUnreachable
        with its cause once it has not for as long as any call waits for Redis."""
        broker = redacted_url(self.settings.celery.broker_url)
        said: list[bool] = []

        def waiting(exc: Exception, _interval_s: float) -> None:
            if not said:
                log_event(
                    logger, "redis_unreachable", logging.WARNING, broker=broker, error=exc, waiting_s=REDIS_OUTAGE_S
                )
                said.append(True)

        try:
            self._declare_queues(waiting)
        except REDIS_ERRORS as exc:
            self._broker.close()
            raise BrokerUnreachable(
                f"the Celery broker {broker} did not answer for {REDIS_OUTAGE_S / 60:.0f} minutes: {exc}"
            ) from exc

    def _declare_queues(self, on_retry: Callable[[Exception, float], None] | None = None) -> None:
        """Declare both queues so a publish lands even before any worker has (re)connected."""
        with self.app.connection_for_write() as connection:
            connection.ensure_connection(  # kombu's own back-off would wait ~an hour: REDIS_RETRY's, as every call
                errback=on_retry, max_retries=REDIS_TRIES, interval_start=REDIS_RETRY.first_s,
                interval_step=REDIS_RETRY.first_s, interval_max=REDIS_RETRY.max_s,
            )
            channel = connection.default_channel
            for queue in STAGE_QUEUES.values():
                self.app.amqp.queues[queue](channel).declare()

    def _finish(self, task_id: str, outcome: Any, worker: str) -> None:
        """Resolve the task's Future once, with a TaskResult or an exception, and drop its holds."""
        with self._lock:
            pending = self._pending.pop(task_id, None)
            if pending is None:
                return
            ok = not isinstance(outcome, BaseException)
            self.completed.append(CompletedTask(task_id, pending.stage, worker, ok))
        if self._holds is not None:
            self._holds.drop(pending.staged)
        log_event(logger, "celery_task_resolved", task_id=task_id, stage=pending.stage, worker=worker, ok=ok)
        try:
            if ok:
                pending.future.set_result(outcome)
            else:
                pending.future.set_exception(outcome)
        except InvalidStateError:
            pass  # its caller cancelled it meanwhile

    def _mark_running(self, task_id: str) -> None:
        """A worker has started the task: its Future can no longer be cancelled (``cancel`` stops it)."""
        with self._lock:
            pending = self._pending.get(task_id)
        if pending is not None and not pending.future.running():
            try:
                pending.future.set_running_or_notify_cancel()
            except RuntimeError:
                pass  # resolved meanwhile
