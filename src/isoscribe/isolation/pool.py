"""WorkerPool: warm worker processes that load their model once and are recycled by policy.

The pool is the public face; behind it each pool has a supervisor thread that owns the workers
(supervisor.py) and a dispatcher thread that resolves futures and calls listeners (dispatcher.py).
"""

from __future__ import annotations

import itertools
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from isoscribe.isolation import registry, transport
from isoscribe.isolation.dispatcher import Dispatcher, Outcome
from isoscribe.isolation.process import START_METHODS
from isoscribe.isolation.state import PoolPolicy, PoolState, Task
from isoscribe.isolation.supervisor import Supervisor
from isoscribe.isolation.types import Limits, PoolStats, StageSpec, TaskCancelled, TaskResult, WorkerExit, WorkerInfo

__all__ = ["WorkerPool"]


class WorkerPool:
    """Warm, recycled worker processes for one stage; ``submit`` returns a ``concurrent.futures.Future``.

    ``max_tasks_per_worker``: retire a worker after this many tasks (its replacement starts while it
    runs the last one). ``max_rss_mb``: retire a worker whose memory (children included) is above this
    after a task. ``idle_ttl_s``: retire a worker idle this long. ``prespawn``: keep ``size`` workers
    loaded even with nothing queued; without it workers start on demand and idle ones are not replaced.
    ``limits``: per-task timeout and hard memory cap, enforced by killing the worker; load timeout.
    ``load_attempts``: consecutive failed loads (crash, exception, timeout) before queued tasks fail
    with the load's error; between them the pool waits, 0.5 s doubling. A later ``submit`` tries again.
    ``exits_kept``: how many ``WorkerExit`` records ``exits`` keeps (a service lives long).
    Memory limits count a worker tree's anonymous pages (RssAnon), not file-backed ones: a mmapped
    model file is page cache the kernel can drop. Peaks are reported as plain RSS.
    """

    def __init__(
        self,
        stage: StageSpec,
        size: int = 1,
        max_tasks_per_worker: int | None = None,
        max_rss_mb: float | None = None,
        idle_ttl_s: float | None = None,
        prespawn: bool = True,
        limits: Limits = Limits(),
        start_method: str = "spawn",
        load_attempts: int = 3,
        exits_kept: int = 1000,
    ) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        if max_tasks_per_worker is not None and max_tasks_per_worker < 1:
            raise ValueError("max_tasks_per_worker must be at least 1 or None")
        if start_method not in START_METHODS:
            raise ValueError(f"start_method must be one of {START_METHODS}, not {start_method!r}")
        if load_attempts < 1:
            raise ValueError("load_attempts must be at least 1")
        self.stage = stage
        self.size = size
        self.max_tasks_per_worker = max_tasks_per_worker
        self.max_rss_mb = max_rss_mb
        self.idle_ttl_s = idle_ttl_s
        self.prespawn = prespawn
        self.limits = limits
        self.start_method = start_method
        self.load_attempts = load_attempts
        policy = PoolPolicy(
            stage, size, max_tasks_per_worker, max_rss_mb, idle_ttl_s, prespawn, limits, start_method, load_attempts
        )
        token = f"{os.getpid()}-{secrets.token_hex(4)}"
        self.segment_prefix = f"{transport.SEGMENT_PREFIX}{token}-"
        tmpdir = tempfile.mkdtemp(prefix=f"{transport.SEGMENT_PREFIX}{token}-")
        self._state = PoolState(exits_kept)
        self._task_ids = itertools.count(1)
        self._dispatcher = Dispatcher(f"isoscribe-pool-{stage.label}-dispatch")
        self._supervisor = Supervisor(policy, self._state, self._dispatcher, self.segment_prefix, tmpdir)
        self._supervisor.thread.start()
        registry.register(self)

    @property
    def exits(self) -> list[WorkerExit]:
        """The latest ``exits_kept`` worker exits, oldest first (``stats()`` counts them all by reason)."""
        with self._state.lock:
            return list(self._state.exits)

    def submit(self, request: Any, on_event: Callable[[Any], None] | None = None) -> Future[TaskResult]:
        """Queue one task; the future gets a TaskResult or an IsolationError.

        ``on_event`` is called (on the pool's dispatcher thread, in order, before the future resolves)
        with each object the stage emits while it runs the task. Done-callbacks run on that thread too.
        """
        payload, segments = transport.dumps(request, self.segment_prefix)
        future: Future[TaskResult] = Future()
        state = self._state
        with state.lock:
            if state.closing:
                transport.unlink_segments(segments)
                raise RuntimeError(f"worker pool for stage {self.stage.label} is shut down")
            state.pending.append(Task(next(self._task_ids), payload, segments, future, on_event))
            state.load_failed = False
        state.wake()
        return future

    def run(self, request: Any) -> TaskResult:
        return self.submit(request).result()

    def cancel(self, future: Future) -> bool:
        """Drop a queued task or kill the worker running it: the future fails with TaskCancelled.

        False for a future this pool does not hold (finished, or never its own).
        """
        state = self._state
        with state.lock:
            task = state.take_queued(future)
            if task is not None:
                transport.unlink_segments(task.segments)
                if task.running or future.set_running_or_notify_cancel():
                    error = TaskCancelled(self.stage.label, detail="task cancelled before it ran")
                    self._dispatcher.put([Outcome(future, error=error)])
                return True
            worker = state.running(future)
            if worker is None:
                return False
            worker.kill("cancelled")
        state.wake()
        return True

    def stats(self) -> PoolStats:
        now = time.monotonic()
        state = self._state
        with state.lock:
            workers = [
                WorkerInfo(pid=w.pid, state=w.state, rss_mb=w.rss_mb, tasks_done=w.tasks_done, age_s=now - w.started_at)
                for w in state.workers
            ]
            counters = state.counters
            return PoolStats(
                stage=self.stage.label,
                size=self.size,
                workers=workers,
                queue_depth=state.queue_depth(),
                tasks_completed=counters.tasks_completed,
                tasks_failed=counters.tasks_failed,
                crashes=counters.crashes,
                likely_oom_kills=counters.likely_oom_kills,
                exits_by_reason=dict(counters.exits_by_reason),
                workers_started=counters.workers_started,
            )

    def worker_pids(self) -> list[int]:
        with self._state.lock:
            return [worker.pid for worker in self._state.workers]

    def wait_ready(self, timeout_s: float | None = None) -> bool:
        """Block until ``size`` workers are loaded and idle (with prespawn); False on timeout."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        state = self._state
        while deadline is None or time.monotonic() < deadline:
            with state.lock:
                idle = sum(1 for worker in state.workers if worker.state == "idle")
                if idle >= self.size or state.load_failed or state.closing:
                    return idle >= self.size
            time.sleep(0.01)
        return False

    def shutdown(self, wait: bool = True, kill_running: bool = False) -> None:
        """Stop the pool: queued tasks fail with TaskCancelled; running ones finish unless ``kill_running``.

        Afterwards no worker process, shared-memory segment or temp file of this pool is left. Calling
        it again (atexit, a second ``with``) only waits for the first. It does not wait for listeners:
        futures still being resolved resolve on the dispatcher thread.
        """
        state = self._state
        with state.lock:
            state.closing = True
            state.kill_running = state.kill_running or kill_running
        state.wake()
        if wait and threading.current_thread() is not self._supervisor.thread:
            self._supervisor.thread.join()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        self.shutdown(wait=True, kill_running=exc_type is not None)
