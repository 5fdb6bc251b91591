"""What a pool's public API and its supervisor share under one lock: the queue, the workers, the counters.

The API threads (``submit``, ``cancel``, ``stats``) and the supervisor thread change these only while
holding ``PoolState.lock``; the wake pipe tells the supervisor that something changed.
"""

from __future__ import annotations

import os
import threading
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from isoscribe.isolation import protocol
from isoscribe.isolation.process import WorkerProcess
from isoscribe.isolation.types import Limits, StageError, StageSpec, WorkerExit

__all__ = ["Counters", "PoolPolicy", "PoolState", "Task", "Worker"]

RETIRE_GRACE_S = 3.0
"""How long a worker told to stop may take before it is killed."""


@dataclass(frozen=True)
class PoolPolicy:
    """How a pool runs its workers; see ``WorkerPool`` for each field."""

    stage: StageSpec
    size: int
    max_tasks_per_worker: int | None
    max_rss_mb: float | None
    idle_ttl_s: float | None
    prespawn: bool
    limits: Limits
    start_method: str
    load_attempts: int


@dataclass
class Task:
    id: int
    payload: bytes
    segments: list[str]
    future: Future
    on_event: Callable[[Any], None] | None = None
    running: bool = False
    """Its future is marked running: only an outcome, never ``cancel()``, may end it now."""


@dataclass
class Worker:
    process: WorkerProcess
    started_at: float
    state: str = "starting"
    """starting, idle, busy, retiring."""
    tasks_done: int = 0
    task: Task | None = None
    task_started_at: float = 0.0
    task_peak_rss_mb: float = 0.0
    task_peak_gpu_mb: float | None = None
    final_task: bool = False
    """The task it runs is its last (max_tasks_per_worker): its replacement may start now."""
    peak_rss_mb: float = 0.0
    idle_since: float = 0.0
    retire_reason: str | None = None
    retire_deadline: float = 0.0
    kill_reason: str | None = None
    load_error: StageError | None = None
    messages_closed: bool = False
    inbox: list[Any] = field(default_factory=list)
    """Messages received outside the pool's lock, not yet handled."""
    rss_mb: float = 0.0
    """The latest RSS sample (children included), so ``stats()`` reads no /proc files."""
    anon_mb: float = 0.0
    """The latest anonymous-memory sample (children included): what the memory limits count."""

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self, reason: str) -> None:
        """SIGKILL its process group; the first reason given is the one its exit reports."""
        if self.kill_reason is None:
            self.kill_reason = reason
        self.process.kill()

    def retire(self, reason: str, now: float) -> None:
        """Ask it to exit after what it is doing; past the grace period it is killed."""
        self.state = "retiring"
        self.retire_reason = reason
        self.retire_deadline = now + RETIRE_GRACE_S
        try:
            self.process.conn.send(protocol.Stop())
        except OSError:
            self.retire_deadline = now


@dataclass
class Counters:
    tasks_completed: int = 0
    tasks_failed: int = 0
    crashes: int = 0
    likely_oom_kills: int = 0
    workers_started: int = 0
    exits_by_reason: Counter = field(default_factory=Counter)


class PoolState:
    def __init__(self, exits_kept: int) -> None:
        self.lock = threading.Lock()
        self.pending: deque[Task] = deque()
        self.workers: list[Worker] = []
        self.counters = Counters()
        self.exits: deque[WorkerExit] = deque(maxlen=exits_kept)
        self.closing = False
        self.kill_running = False
        self.load_failed = False
        """Loading failed ``load_attempts`` times in a row; a new ``submit`` clears it."""
        self._wake_lock = threading.Lock()
        """Guards the wake pipe's write end, which ``close_wake`` closes: its fd number may be reused."""
        self.wake_fd, self._wake_w = os.pipe()
        os.set_blocking(self.wake_fd, False)
        os.set_blocking(self._wake_w, False)

    def wake(self) -> None:
        with self._wake_lock:
            if self._wake_w is None:
                return  # the pool is gone
            try:
                os.write(self._wake_w, b"x")
            except BlockingIOError:
                pass  # a full pipe already means "wake up"

    def drain_wake(self) -> None:
        try:
            while os.read(self.wake_fd, 4096):
                pass
        except BlockingIOError:
            pass

    def close_wake(self) -> None:
        with self._wake_lock:
            os.close(self._wake_w)
            self._wake_w = None
        os.close(self.wake_fd)

    def record_exit(self, worker: Worker, reason: str, crashed: bool, likely_oom_kill: bool) -> None:
        """Keep the exit's record and count it (the supervisor holds the lock)."""
        self.exits.append(WorkerExit(worker.pid, reason, worker.peak_rss_mb, worker.tasks_done, likely_oom_kill))
        self.counters.exits_by_reason[reason] += 1
        self.counters.crashes += crashed
        self.counters.likely_oom_kills += likely_oom_kill

    def take_queued(self, future: Future) -> Task | None:
        """Remove and return the queued task of ``future``; None when it is not queued here."""
        task = next((task for task in self.pending if task.future is future), None)
        if task is not None:
            self.pending.remove(task)
        return task

    def running(self, future: Future) -> Worker | None:
        return next((w for w in self.workers if w.task is not None and w.task.future is future), None)

    def workers_missing(self, size: int, prespawn: bool) -> int:
        """How many workers to start now so that capacity is there before it is needed."""
        states = Counter(w.state for w in self.workers)
        if prespawn:
            ready_soon = states["starting"] + states["idle"]
            ready_soon += sum(1 for w in self.workers if w.state == "busy" and not w.final_task)
            return max(0, size - ready_soon)
        occupied = states["starting"] + states["idle"] + states["busy"]
        waiting = self.queue_depth() - states["starting"] - states["idle"]
        return max(0, min(size - occupied, waiting))

    def queue_depth(self) -> int:
        return sum(1 for task in self.pending if not task.future.cancelled())
