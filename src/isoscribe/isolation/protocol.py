"""The wire protocol between a pool and its workers: small typed messages over a ``multiprocessing`` pipe.

parent → worker: ``RunTask``, then more of them, or ``Stop``.
worker → parent: ``Ready`` or ``LoadFailed`` once; then per task any number of ``Emitted`` while it
runs, and one ``TaskDone`` or ``TaskFailed``. Payloads are ``transport.dumps`` bytes, so large arrays
cross by shared memory. Imported by workers too: nothing here but dataclasses and one receive loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from isoscribe.isolation import transport

__all__ = [
    "DecodedResult",
    "Emitted",
    "LoadFailed",
    "Ready",
    "RunTask",
    "Stop",
    "TaskDone",
    "TaskFailed",
    "receive_waiting",
]


@dataclass(frozen=True)
class _ForTask:
    task_id: int
    payload: bytes


@dataclass(frozen=True)
class RunTask(_ForTask):
    """Run the pickled request in ``payload``."""


@dataclass(frozen=True)
class Stop:
    """Finish nothing more and exit."""


@dataclass(frozen=True)
class Ready:
    load_s: float


@dataclass(frozen=True)
class _Raised:
    exc_type: str
    message: str
    traceback_text: str


@dataclass(frozen=True)
class LoadFailed(_Raised):
    """``load`` raised: the worker exits after sending this."""


@dataclass(frozen=True)
class Emitted(_ForTask):
    """One object the stage emitted while the task runs."""


@dataclass(frozen=True)
class TaskDone(_ForTask):
    peak_rss_mb: float
    """The worker's own peak RSS during the task (VmHWM)."""


@dataclass(frozen=True)
class TaskFailed(_Raised):
    task_id: int
    peak_rss_mb: float


@dataclass(frozen=True)
class DecodedResult:
    """A ``TaskDone`` as the parent holds it: its value unpickled, or the error that prevented it."""

    task_id: int
    value: Any
    error: Exception | None
    peak_rss_mb: float


def receive_waiting(conn: Connection) -> tuple[list[Any], bool]:
    """Every message already waiting in the pipe, results decoded; and whether the pipe has closed."""
    received: list[Any] = []
    while True:
        try:
            if not conn.poll():
                return received, False
            message = conn.recv()
        except (EOFError, OSError):
            return received, True
        received.append(_decoded(message) if isinstance(message, TaskDone) else message)


def _decoded(done: TaskDone) -> DecodedResult:
    try:
        return DecodedResult(done.task_id, transport.loads(done.payload), None, done.peak_rss_mb)
    except BaseException as exc:  # whatever unpickling raises (SystemExit too) fails this task, not the pool
        return DecodedResult(done.task_id, None, exc, done.peak_rss_mb)
