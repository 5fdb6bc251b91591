"""Typed objects of the isolation runtime: what a stage is, its limits, results and failures.

The runtime knows nothing about audio: a stage is any importable module with
``load(config) -> model`` and ``run(model, request) -> result``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

__all__ = [
    "StageSpec",
    "Limits",
    "TaskStats",
    "TaskResult",
    "WorkerExit",
    "IsolationError",
    "WorkerCrashed",
    "StageTimeout",
    "StageOutOfMemory",
    "StageError",
    "TaskCancelled",
    "WorkerInfo",
    "PoolStats",
]

T = TypeVar("T")


@dataclass(frozen=True)
class StageSpec:
    module: str
    """Dotted path of a module defining ``load(config)`` and ``run(model, request)``."""
    config: Any = None
    """Picklable object handed to ``load``."""
    name: str = ""

    @property
    def label(self) -> str:
        return self.name or self.module.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class Limits:
    timeout_s: float | None = None
    """Wall time of one task; past it the worker's whole process group is killed."""
    hard_rss_mb: float | None = None
    """RSS of the worker tree during a task; past it the worker is killed (StageOutOfMemory)."""
    load_timeout_s: float | None = None
    """Wall time for a new worker to load its stage; past it the worker is killed and queued tasks fail."""


@dataclass(frozen=True)
class TaskStats:
    wall_s: float
    peak_rss_mb: float
    """Peak RSS of the worker and its children during the task."""
    peak_gpu_mb: float | None
    """Peak GPU memory of the worker during the task, where NVML is present."""
    worker_pid: int
    worker_task_number: int
    """1 for the first task a worker ran."""


@dataclass(frozen=True)
class TaskResult(Generic[T]):
    value: T
    stats: TaskStats


@dataclass(frozen=True)
class WorkerExit:
    pid: int
    reason: str
    """max_tasks, rss_cap, idle, timeout, oom_guard, cancelled, shutdown, load_error, load_timeout, signal N, exit N."""
    peak_rss_mb: float
    tasks_done: int
    likely_oom_kill: bool = False
    """SIGKILL that the runtime did not send: most likely the kernel's OOM killer."""


@dataclass
class IsolationError(Exception):
    stage: str
    peak_rss_mb: float = 0.0
    detail: str = field(default="", kw_only=True)

    def __str__(self) -> str:
        return f"{type(self).__name__} in stage {self.stage}: {self.describe()}"

    def describe(self) -> str:
        return self.detail

    def __reduce__(self):
        # Exceptions pickle through their args, which dataclass fields do not fill.
        return (_restore_error, (type(self), dict(vars(self))))


def _restore_error(cls: type[IsolationError], state: dict[str, Any]) -> IsolationError:
    error = cls.__new__(cls)
    error.__dict__.update(state)
    return error


@dataclass
class WorkerCrashed(IsolationError):
    signal: int | None = None
    exit_code: int | None = None
    stderr_tail: str = ""

    def describe(self) -> str:
        how = f"killed by signal {self.signal}" if self.signal is not None else f"exit code {self.exit_code}"
        tail = f"; stderr tail:\n{self.stderr_tail}" if self.stderr_tail else ""
        return f"worker {how} (peak RSS {self.peak_rss_mb:.0f} MB){tail}"


@dataclass
class StageTimeout(IsolationError):
    timeout_s: float = 0.0

    def describe(self) -> str:
        return f"no result within {self.timeout_s:g} s; worker process group killed"


@dataclass
class StageOutOfMemory(IsolationError):
    limit_mb: float = 0.0

    def describe(self) -> str:
        return f"worker RSS {self.peak_rss_mb:.0f} MB passed the hard cap of {self.limit_mb:.0f} MB; worker killed"


@dataclass
class StageError(IsolationError):
    exc_type: str = ""
    message: str = ""
    traceback_text: str = ""

    def describe(self) -> str:
        return f"{self.exc_type}: {self.message}"


@dataclass
class TaskCancelled(IsolationError):
    """A running task was cancelled (its worker was killed) or the pool shut down under it."""

    def describe(self) -> str:
        return self.detail or "task cancelled; its worker was killed"


@dataclass(frozen=True)
class WorkerInfo:
    pid: int
    state: str
    """starting (loading its model), idle, busy, retiring."""
    rss_mb: float
    """RSS of the worker and its children when the stats were taken."""
    tasks_done: int
    age_s: float


@dataclass(frozen=True)
class PoolStats:
    """A snapshot of a WorkerPool, enough for a Prometheus /metrics page."""

    stage: str
    size: int
    workers: list[WorkerInfo]
    queue_depth: int
    """Submitted tasks not yet handed to a worker."""
    tasks_completed: int
    tasks_failed: int
    crashes: int
    """Workers that died on their own (signal or non-zero exit), whatever they were doing."""
    likely_oom_kills: int
    exits_by_reason: dict[str, int]
    workers_started: int

    @property
    def busy(self) -> int:
        return sum(1 for worker in self.workers if worker.state == "busy")

    @property
    def idle(self) -> int:
        return sum(1 for worker in self.workers if worker.state == "idle")
