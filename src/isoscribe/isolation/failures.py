"""What a task or a load that ended badly becomes: which IsolationError, carrying which cause.

Every error keeps what the caller needs to act on it: the stage, the peak memory, the signal or exit
code, the worker's own traceback or the tail of what it wrote before it died.
"""

from __future__ import annotations

import traceback

from isoscribe.isolation import protocol
from isoscribe.isolation.state import Worker
from isoscribe.isolation.types import (
    IsolationError,
    Limits,
    StageError,
    StageOutOfMemory,
    StageTimeout,
    TaskCancelled,
    WorkerCrashed,
)

__all__ = ["LoadRetry", "load_failure", "stage_error", "task_failure", "unreadable_result"]

_LOAD_RETRY_FIRST_S = 0.5
"""Wait before starting a worker again after a failed load; doubles with each consecutive failure."""


class LoadRetry:
    """Failed loads in a row: when the next worker may start, and when to stop trying.

    An OOM kill during a load may not recur, so a failed load is retried after a pause; after
    ``attempts`` failures in a row what is queued fails with the load's error instead.
    """

    def __init__(self, attempts: int) -> None:
        self.attempts = attempts
        self.failures = 0
        self.next_start_at = 0.0

    def succeeded(self) -> None:
        self.failures, self.next_start_at = 0, 0.0

    def failed(self, now: float) -> float | None:
        """The pause before the next start, or None when the attempts are used up (and start over)."""
        self.failures += 1
        if self.failures >= self.attempts:
            self.succeeded()
            return None
        backoff_s = _LOAD_RETRY_FIRST_S * 2 ** (self.failures - 1)
        self.next_start_at = now + backoff_s
        return backoff_s


def task_failure(stage: str, worker: Worker, code: int, reason: str, limits: Limits) -> IsolationError:
    """The error of the task a worker was running when it exited with ``code`` for ``reason``."""
    peak = max(worker.task_peak_rss_mb, 0.0)
    if reason == "timeout":
        return StageTimeout(stage, peak, timeout_s=limits.timeout_s or 0.0)
    if reason == "oom_guard":
        return StageOutOfMemory(stage, peak, limit_mb=limits.hard_rss_mb or 0.0)
    if reason == "cancelled":
        return TaskCancelled(stage, peak, detail="task cancelled; its worker was killed")
    if reason == "shutdown":
        return TaskCancelled(stage, peak, detail="the pool shut down while the task ran; its worker was killed")
    return _crash(stage, worker, code, "")


def load_failure(stage: str, worker: Worker, code: int, limits: Limits) -> IsolationError:
    """Why a worker that exited before it was ready could not load the stage."""
    if worker.load_error is not None:
        return worker.load_error
    if worker.kill_reason == "load_timeout":
        timeout_s = limits.load_timeout_s or 0.0
        return StageTimeout(stage, worker.peak_rss_mb, detail="model load timed out", timeout_s=timeout_s)
    return _crash(stage, worker, code, "worker died while loading the stage")


def stage_error(stage: str, failed: protocol.TaskFailed | protocol.LoadFailed, peak_rss_mb: float = 0.0) -> StageError:
    """The stage's own exception, raised in the worker, with its traceback text."""
    detail = "model load failed" if isinstance(failed, protocol.LoadFailed) else ""
    return StageError(
        stage,
        peak_rss_mb,
        exc_type=failed.exc_type,
        message=failed.message,
        traceback_text=failed.traceback_text,
        detail=detail,
    )


def unreadable_result(stage: str, exc: Exception, peak_rss_mb: float) -> StageError:
    return StageError(
        stage,
        peak_rss_mb,
        exc_type=type(exc).__name__,
        message=f"result could not be read in the parent: {exc}",
        traceback_text="".join(traceback.format_exception(exc)),
    )


def _crash(stage: str, worker: Worker, code: int, detail: str) -> WorkerCrashed:
    return WorkerCrashed(
        stage,
        max(worker.task_peak_rss_mb, worker.peak_rss_mb if worker.task is None else 0.0),
        detail=detail,
        signal=-code if code < 0 else None,
        exit_code=code if code >= 0 else None,
        stderr_tail=worker.process.output_tail(),
    )
