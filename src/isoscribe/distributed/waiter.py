"""The client's waiter thread: it polls the result backend for the executor's unfinished tasks and
resolves their Futures, reports their progress, and publishes again what was lost: tasks a
restarted Redis forgot, tasks of a worker whose heartbeat stopped, tasks Celery lost with their
pool process or at its hard time limit.

It works on its executor's state (pending tasks, holds, counters) under the executor's lock.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from isoscribe.distributed.app import (
    HEARTBEAT_KEY, READY_STATES, REDIS_ERRORS, REDIS_OUTAGE_S, RUNNING_STATES, STAGE_QUEUES, time_limit_s,
)
from isoscribe.distributed.broker_scripts import DROP_UNACKED, FIND_MESSAGES
from isoscribe.distributed.codec import decode_error, decode_value, renamed_paths, with_callers_source
from isoscribe.isolation import IsolationError, StageError, StageTimeout, TaskResult, TaskStats, WorkerCrashed
from isoscribe.logs import log_event

if TYPE_CHECKING:
    from isoscribe.distributed.client import CeleryExecutor, PendingTask

__all__ = ["Waiter"]

logger = logging.getLogger("isoscribe.distributed")

_LOST_TASK_RETRIES = 2
"""Times a task is published again after Celery lost it (its pool process died, its hard time limit)."""
_NO_WORKER_REMINDER_S = 300.0
_LOST_ERRORS = ("WorkerLostError", "TimeLimitExceeded")
"""Celery's failures of the task itself: its pool process died, or Celery's hard time limit killed it."""


class Waiter:
    def __init__(self, executor: CeleryExecutor) -> None:
        self._executor = executor
        self._app = executor.app
        self._broker = executor._broker
        self._drop_unacked = self._broker.register_script(DROP_UNACKED)
        self._find_messages = self._broker.register_script(FIND_MESSAGES)
        self._server_ids: tuple[str, str] | None = None
        self._unreachable_since: float | None = None
        self._beat_s = executor.settings.celery.heartbeat_timeout_s / 4
        self._next_heartbeat_check = 0.0
        self._missing_since: dict[str, float] = {}
        """Worker -> when its heartbeat was first seen missing."""
        self._no_worker_since: float | None = None
        self._thread = threading.Thread(target=self._run, name="celery-waiter", daemon=True)
        self._thread.start()

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout=timeout_s)

    def _run(self) -> None:
        """Look at the tasks until shutdown. A failure that is not Redis's fails the unfinished tasks
        with that error, and the waiter goes on for the tasks submitted after it."""
        executor = self._executor
        while not executor._stopped.is_set():
            with executor._lock:
                busy = bool(executor._pending or executor._abandoned)
            if not busy:
                executor._wake.wait(1.0)
                executor._wake.clear()
                continue
            try:
                self._look_once()
            except Exception as exc:
                logger.exception("event=celery_waiter_failed")
                self._fail_unfinished(exc)
                executor._stopped.wait(1.0)

    def _look_once(self) -> None:
        executor = self._executor
        with executor._lock:
            task_ids = list(executor._pending)
            abandoned = list(executor._abandoned)
        try:
            self._republish_after_restart()
            values = self._fetch([*task_ids, *abandoned])
            metas = self._decoded(task_ids, values)
            self._redispatch_from_dead_workers(metas)
            self._drop_abandoned(abandoned, values)
            for task_id, meta in metas.items():
                self._guarded(task_id, self._on_state, task_id, meta)
        except REDIS_ERRORS as exc:
            self._on_unreachable(exc)
            executor._stopped.wait(1.0)
            return
        if self._unreachable_since is not None:
            log_event(logger, "redis_reachable")
            self._unreachable_since = None
        executor._stopped.wait(executor.settings.celery.poll_interval_s)

    def _on_unreachable(self, exc: Exception) -> None:
        """Log the outage's start; once it has lasted ``REDIS_OUTAGE_S``, fail the tasks waiting on it (a
        batch ends with their files failed, to run again, rather than hang), and start counting anew."""
        now = time.monotonic()
        if self._unreachable_since is None:
            log_event(logger, "redis_unreachable", logging.WARNING, error=exc)
            self._unreachable_since = now
        elif now - self._unreachable_since >= REDIS_OUTAGE_S:
            log_event(logger, "redis_outage_gave_up", logging.ERROR, after_s=round(now - self._unreachable_since))
            self._fail_unfinished(exc, f"Redis was unreachable for {REDIS_OUTAGE_S:.0f} s")
            self._unreachable_since = now

    def _pending(self, task_id: str) -> PendingTask | None:
        with self._executor._lock:
            return self._executor._pending.get(task_id)

    def _guarded(self, task_id: str, call: Callable[..., None], *args: Any) -> None:
        """``call(*args)`` for one task; whatever it raises fails that task only."""
        try:
            call(*args)
        except REDIS_ERRORS:
            raise
        except Exception as exc:
            logger.exception("event=celery_task_state_unreadable task_id=%s", task_id)
            pending = self._pending(task_id)
            if pending is not None:
                error = _client_error(pending.stage, exc, "the client could not read the task's state")
                self._executor._finish(task_id, error, worker="")

    def _fail_unfinished(self, exc: Exception, why: str = "the Celery client's waiter failed") -> None:
        with self._executor._lock:
            unfinished = list(self._executor._pending.values())
        for pending in unfinished:
            error = _client_error(pending.stage, exc, why)
            self._executor._finish(pending.task_id, error, worker="")

    def _fetch(self, task_ids: list[str]) -> dict[str, bytes]:
        """The stored state of each task that has one, as Redis holds it."""
        backend = self._app.backend
        values: dict[str, bytes] = {}
        for start in range(0, len(task_ids), 500):
            chunk = task_ids[start : start + 500]
            found = backend.client.mget([backend.get_key_for_task(task_id) for task_id in chunk])
            values.update((task_id, value) for task_id, value in zip(chunk, found) if value is not None)
        return values

    def _decoded(self, task_ids: list[str], values: dict[str, bytes]) -> dict[str, dict[str, Any]]:
        metas: dict[str, dict[str, Any]] = {}
        for task_id in task_ids:
            if task_id in values:
                self._guarded(task_id, lambda: metas.update({task_id: self._decode_meta(values[task_id])}))
        return metas

    def _decode_meta(self, value: bytes) -> dict[str, Any]:
        meta = self._app.backend.decode_result(value)
        if not isinstance(meta, dict) or "status" not in meta:
            raise ValueError(f"not a Celery task state: {value[:200]!r}")
        return meta

    def _on_state(self, task_id: str, meta: dict[str, Any]) -> None:
        if meta["status"] in READY_STATES:
            self._resolve(task_id, meta)
            return
        if meta["status"] in RUNNING_STATES:
            self._executor._mark_running(task_id)
        if meta["status"] == "PROGRESS":
            self._report_progress(task_id, meta["result"])

    def _republish_after_restart(self) -> None:
        executor = self._executor
        server_ids = (self._broker.info("server")["run_id"], self._app.backend.client.info("server")["run_id"])
        if self._server_ids is None:
            self._server_ids = server_ids
        if self._server_ids == server_ids:
            return
        with executor._lock:
            unfinished = list(executor._pending.values())
        lost = self._lost_in_restart(unfinished)
        executor._declare_queues()
        if executor._holds is not None:
            executor._holds.restore()
        for pending in lost:
            executor._publish(pending)
        executor.republished += len(lost)
        log_event(logger, "redis_restarted", logging.WARNING, republished=len(lost), kept=len(unfinished) - len(lost))
        # Only now: if Redis went away again midway, the next look does all this once more.
        self._server_ids = server_ids

    def _lost_in_restart(self, unfinished: list[PendingTask]) -> list[PendingTask]:
        """The tasks a restarted Redis no longer knows: no message queued or delivered, no state stored."""
        if not unfinished:
            return []
        task_ids = [pending.task_id for pending in unfinished]
        queues = sorted({STAGE_QUEUES[pending.stage] for pending in unfinished})
        found = self._find_messages(keys=[*queues, "unacked"], args=task_ids)
        known = {task_id.decode() for task_id in found} | set(self._fetch(task_ids))
        return [pending for pending in unfinished if pending.task_id not in known]

    def _redispatch_from_dead_workers(self, metas: dict[str, dict[str, Any]]) -> None:
        """Publish again the running tasks of workers whose heartbeat key has expired (a dead machine).

        A worker counts as dead once its key has been missing for a beat, so a key lost with a
        restarted Redis, rewritten at the worker's next beat, does not count. The dead worker's
        unacknowledged copy is dropped so that ``visibility_timeout`` does not deliver it once more.
        """
        now = time.monotonic()
        if now < self._next_heartbeat_check:
            return
        self._next_heartbeat_check = now + self._beat_s
        running = {
            task_id: meta["result"]["worker"]
            for task_id, meta in metas.items()
            if meta.get("status") in RUNNING_STATES and isinstance(meta.get("result"), dict) and meta["result"].get("worker")
        }
        self._say_when_no_worker_runs(bool(running), now)
        workers = sorted(set(running.values()))
        beats = self._broker.mget([HEARTBEAT_KEY + worker for worker in workers]) if workers else []
        self._missing_since = {w: t for w, t in self._missing_since.items() if w in workers}
        for worker, beat in zip(workers, beats):
            if beat is not None:
                self._missing_since.pop(worker, None)
            elif now - self._missing_since.setdefault(worker, now) >= self._beat_s:
                for task_id in [task_id for task_id, holder in running.items() if holder == worker]:
                    self._redispatch(task_id, worker)

    def _say_when_no_worker_runs(self, any_running: bool, now: float) -> None:
        """Tasks that wait while no worker beats would wait without a word: a warning once the heartbeat timeout
        has passed with none, and again every ``_NO_WORKER_REMINDER_S`` while none comes."""
        if any_running or next(self._broker.scan_iter(match=f"{HEARTBEAT_KEY}*", count=1000), None) is not None:
            self._no_worker_since = None
            return
        self._no_worker_since = self._no_worker_since or now
        if now - self._no_worker_since >= self._executor.settings.celery.heartbeat_timeout_s:
            with self._executor._lock:
                waiting = len(self._executor._pending)
            log_event(logger, "celery_no_worker", logging.WARNING, waiting=waiting,
                      hint="no isoscribe worker is running: start one with 'isoscribe worker'")
            self._no_worker_since = now + _NO_WORKER_REMINDER_S

    def _redispatch(self, task_id: str, worker: str) -> None:
        pending = self._pending(task_id)
        if pending is None or worker in pending.lost_workers:
            return
        # kombu's Redis transport keeps delivered, unacknowledged messages under these keys.
        dropped = self._drop_unacked(keys=["unacked", "unacked_index"], args=[task_id])
        log_event(
            logger, "celery_task_redispatched", logging.WARNING, task_id=task_id, stage=pending.stage,
            dead_worker=worker, unacked_dropped=dropped,
        )
        self._executor._publish(pending)
        pending.lost_workers.add(worker)
        self._executor.redispatched += 1

    def _drop_abandoned(self, abandoned: list[str], values: dict[str, bytes]) -> None:
        """A cancelled task's late result is not wanted: remove its spilled file and its state once it ends."""
        executor, now = self._executor, time.monotonic()
        for task_id in abandoned:
            result = self._ended_result(values[task_id]) if task_id in values else None
            if result is not None:
                spilled = isinstance(result, dict) and isinstance(result.get("result_file"), str)
                if spilled and executor.shared_dir is not None:
                    self._remove_spilled(Path(executor.shared_dir) / result["result_file"])
                self._app.backend.forget(task_id)
            with executor._lock:
                if result is not None or now > executor._abandoned.get(task_id, 0.0):
                    executor._abandoned.pop(task_id, None)

    def _remove_spilled(self, path: Path) -> None:
        # OSError counts as Redis being away in the look's handler; a file that cannot go is only logged.
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            log_event(logger, "spilled_result_kept", logging.WARNING, path=path, error=exc)

    def _ended_result(self, value: bytes) -> Any:
        """The result of an ended task (``{}`` when unreadable: nothing to clean up), None while it runs."""
        try:
            meta = self._decode_meta(value)
        except Exception:
            return {}
        return meta.get("result") if meta["status"] in READY_STATES else None

    def _report_progress(self, task_id: str, meta: dict[str, Any]) -> None:
        """The latest Progress a worker stored for the task, to the caller's listener (once per change)."""
        pending = self._pending(task_id)
        if pending is None or pending.on_event is None or meta.get("event") == pending.last_event:
            return
        pending.last_event = meta.get("event")
        try:
            pending.on_event(decode_value(meta["event"]))
        except Exception:
            logger.exception("event=task_event_listener_failed task_id=%s", task_id)

    def _resolve(self, task_id: str, meta: dict[str, Any]) -> None:
        pending = self._pending(task_id)
        if pending is None:
            return
        if _lost_by_celery(meta) and pending.celery_losses < _LOST_TASK_RETRIES:
            self._publish_lost(pending, meta)
            return
        worker = ""
        try:
            if meta["status"] != "SUCCESS":
                raise _failure_error(pending.stage, meta, time_limit_s(self._executor.settings, pending.stage))
            payload = meta["result"]
            worker = payload.get("worker", "")
            outcome: TaskResult | BaseException = self._task_result(pending, payload)
        except Exception as exc:
            outcome = exc
        self._executor._finish(task_id, outcome, worker)

    def _publish_lost(self, pending: PendingTask, meta: dict[str, Any]) -> None:
        """Celery lost the task with its pool process or at its hard time limit: not the stage's doing, run it again."""
        pending.celery_losses += 1
        log_event(
            logger, "celery_task_lost", logging.WARNING, task_id=pending.task_id, stage=pending.stage,
            error=type(meta.get("result")).__name__, attempt=pending.celery_losses,
        )
        self._app.backend.forget(pending.task_id)
        self._executor._publish(pending)

    def _task_result(self, pending: PendingTask, payload: dict[str, Any]) -> TaskResult:
        shared_dir = self._executor.shared_dir
        spilled = Path(shared_dir) / payload["result_file"] if "result_file" in payload else None
        if spilled is not None:
            payload = {**json.loads(spilled.read_text()), "worker": payload["worker"]}
        if "error" in payload:
            outcome: TaskResult | IsolationError = renamed_paths(decode_error(payload["error"]), pending.caller_paths)
        else:
            value = with_callers_source(decode_value(payload["value"]), pending.sent_audio, pending.original_audio)
            outcome = TaskResult(value=value, stats=TaskStats(**payload["stats"]))
        # The file goes only once its content is decoded: one that fails to decode stays for a look.
        if spilled is not None:
            spilled.unlink(missing_ok=True)
        if isinstance(outcome, IsolationError):
            raise outcome
        return outcome


def _lost_by_celery(meta: dict[str, Any]) -> bool:
    return meta["status"] == "FAILURE" and type(meta.get("result")).__name__ in _LOST_ERRORS


def _failure_error(stage: str, meta: dict[str, Any], time_limit: float) -> IsolationError:
    """A task that raised outside the isolation runtime (bad input, lost audio), was lost by Celery, or was revoked."""
    error = meta.get("result")
    exc_type = type(error).__name__ if isinstance(error, BaseException) else str(meta["status"])
    if exc_type == "WorkerLostError":
        return WorkerCrashed(stage, detail=f"the Celery pool process running it died each time it ran: {error}")
    if exc_type == "TimeLimitExceeded":
        return StageTimeout(stage, detail="Celery's hard time limit killed it each time it ran", timeout_s=time_limit)
    return StageError(
        stage,
        exc_type=exc_type,
        message=str(error),
        traceback_text=str(meta.get("traceback") or ""),
        detail="raised in the Celery task, outside the isolated worker",
    )


def _client_error(stage: str, exc: Exception, what: str) -> StageError:
    """A fault of this client (not the stage's) that ends a task, with its cause."""
    return StageError(
        stage,
        exc_type=type(exc).__name__,
        message=f"{exc} ({what}; the task's outcome is unknown)",
        traceback_text="".join(traceback.format_exception(exc)),
        detail="a fault of the Celery client, not of the stage",
    )

