"""WorkerPool: warm worker processes that load their model once and are recycled by policy.

One manager thread per pool owns every worker: it starts them, hands out tasks, samples their RSS
(and GPU memory) while they work, enforces the timeout and the hard RSS cap, notices deaths through
the process's exit fd, retires workers after ``max_tasks_per_worker`` tasks, past ``max_rss_mb`` after a
task or idle longer than ``idle_ttl_s``, and starts replacements ahead of need. A worker's death fails
only the task that worker was running; the pool starts another worker and carries on.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import secrets
import shutil
import signal
import tempfile
import threading
import time
import traceback
import weakref
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Any

from isoscribe.isolation import monitor, transport
from isoscribe.isolation.dispatcher import Delivery, Dispatcher, Outcome
from isoscribe.isolation.process import START_METHODS, WorkerProcess, start_worker
from isoscribe.isolation.types import (
    IsolationError,
    Limits,
    PoolStats,
    StageError,
    StageOutOfMemory,
    StageSpec,
    StageTimeout,
    TaskCancelled,
    TaskResult,
    TaskStats,
    WorkerCrashed,
    WorkerExit,
    WorkerInfo,
)
from isoscribe.logs import log_event

__all__ = ["WorkerPool", "install_termination_handler", "shutdown_all_pools"]

logger = logging.getLogger("isoscribe.isolation")

_BUSY_TICK_S = 0.05
"""How often a busy worker's RSS is sampled and its deadline checked."""
_IDLE_TICK_S = 0.5
_RETIRE_GRACE_S = 3.0
"""How long a worker told to stop may take before it is killed."""
_LOAD_RETRY_FIRST_S = 0.5
"""Wait before starting a worker again after a failed load; doubles with each consecutive failure."""
_pools: weakref.WeakSet[WorkerPool] = weakref.WeakSet()
_atexit_registered = False
_swept = False


@dataclass
class _Task:
    id: int
    payload: bytes
    segments: list[str]
    future: Future
    on_event: Callable[[Any], None] | None = None
    running: bool = False


@dataclass
class _Worker:
    process: WorkerProcess
    started_at: float
    state: str = "starting"
    """starting, idle, busy, retiring."""
    tasks_done: int = 0
    task: _Task | None = None
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
    inbox: list[tuple] = field(default_factory=list)
    """Messages received outside the pool's lock, not yet handled."""
    rss_mb: float = 0.0
    """The latest RSS sample (children included), so ``stats()`` reads no /proc files."""
    anon_mb: float = 0.0
    """The latest anonymous-memory sample (children included): what the memory limits count."""

    @property
    def pid(self) -> int:
        return self.process.pid


@dataclass
class _Counters:
    tasks_completed: int = 0
    tasks_failed: int = 0
    crashes: int = 0
    likely_oom_kills: int = 0
    workers_started: int = 0
    exits_by_reason: Counter = field(default_factory=Counter)


class WorkerPool:
    """Warm, recycled worker processes for one stage; ``submit`` returns a ``concurrent.futures.Future``.

    ``max_tasks_per_worker``: retire a worker after this many tasks (its replacement starts while it
    runs the last one). ``max_rss_mb``: retire a worker whose RSS (children included) is above this
    after a task. ``idle_ttl_s``: retire a worker idle this long. ``prespawn``: keep ``size`` workers
    loaded even with nothing queued; without it workers start on demand and idle ones are not replaced.
    ``limits``: per-task timeout and hard RSS cap, enforced by killing the worker; load timeout.
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
        self.exits: deque[WorkerExit] = deque(maxlen=exits_kept)
        """The latest ``exits_kept`` worker exits, oldest first (``stats()`` counts them all by reason)."""

        _sweep_once()
        token = f"{os.getpid()}-{secrets.token_hex(4)}"
        self.segment_prefix = f"{transport.SEGMENT_PREFIX}{token}-"
        self._tmpdir = tempfile.mkdtemp(prefix=f"{transport.SEGMENT_PREFIX}{token}-")
        self._lock = threading.Lock()
        self._wake_lock = threading.Lock()
        """Guards the wake pipe's write end, which ``_cleanup`` closes: its fd number may be reused."""
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._pending: deque[_Task] = deque()
        self._workers: list[_Worker] = []
        self._task_ids = itertools.count(1)
        self._counters = _Counters()
        self._gpu = monitor.GpuMonitor()
        self._load_failed = False
        self._load_failures = 0
        """Consecutive failed loads."""
        self._next_start_at = 0.0
        self._closing = False
        self._kill_running = False
        self._closed = threading.Event()
        _register(self)
        self._dispatcher = Dispatcher(f"isoscribe-pool-{stage.label}-dispatch")
        self._thread = threading.Thread(target=self._manage, name=f"isoscribe-pool-{stage.label}", daemon=True)
        self._thread.start()

    # ----- public API -------------------------------------------------------------------------

    def submit(self, request: Any, on_event: Callable[[Any], None] | None = None) -> Future[TaskResult]:
        """Queue one task; the future gets a TaskResult or an IsolationError.

        ``on_event`` is called (on the pool's dispatcher thread, in order, before the future resolves)
        with each object the stage emits while it runs the task. Done-callbacks run on that thread too.
        """
        payload, segments = transport.dumps(request, self.segment_prefix)
        future: Future[TaskResult] = Future()
        with self._lock:
            if self._closing:
                transport.unlink_segments(segments)
                raise RuntimeError(f"worker pool for stage {self.stage.label} is shut down")
            self._pending.append(_Task(next(self._task_ids), payload, segments, future, on_event))
            self._load_failed = False
        self._wake()
        return future

    def run(self, request: Any) -> TaskResult:
        return self.submit(request).result()

    def cancel(self, future: Future) -> bool:
        """Drop a queued task or kill the worker running it: the future fails with TaskCancelled.

        False for a future this pool does not hold (finished, or never its own).
        """
        with self._lock:
            task = next((task for task in self._pending if task.future is future), None)
            if task is not None:
                self._pending.remove(task)
                transport.unlink_segments(task.segments)
                if task.running or future.set_running_or_notify_cancel():
                    error = TaskCancelled(self.stage.label, detail="task cancelled before it ran")
                    self._dispatcher.put([Outcome(future, error=error)])
                return True
            worker = next((w for w in self._workers if w.task is not None and w.task.future is future), None)
            if worker is None:
                return False
            self._kill(worker, "cancelled")
        self._wake()
        return True

    def stats(self) -> PoolStats:
        now = time.monotonic()
        with self._lock:
            workers = [
                WorkerInfo(pid=w.pid, state=w.state, rss_mb=w.rss_mb, tasks_done=w.tasks_done, age_s=now - w.started_at)
                for w in self._workers
            ]
            queued = sum(1 for task in self._pending if not task.future.cancelled())
            counters = self._counters
            stats = dict(
                tasks_completed=counters.tasks_completed,
                tasks_failed=counters.tasks_failed,
                crashes=counters.crashes,
                likely_oom_kills=counters.likely_oom_kills,
                exits_by_reason=dict(counters.exits_by_reason),
                workers_started=counters.workers_started,
            )
        return PoolStats(stage=self.stage.label, size=self.size, workers=workers, queue_depth=queued, **stats)

    def worker_pids(self) -> list[int]:
        with self._lock:
            return [worker.pid for worker in self._workers]

    def wait_ready(self, timeout_s: float | None = None) -> bool:
        """Block until ``size`` workers are loaded and idle (with prespawn); False on timeout."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while deadline is None or time.monotonic() < deadline:
            with self._lock:
                idle = sum(1 for worker in self._workers if worker.state == "idle")
                if idle >= self.size or self._load_failed or self._closing:
                    return idle >= self.size
            time.sleep(0.01)
        return False

    def shutdown(self, wait: bool = True, kill_running: bool = False) -> None:
        """Stop the pool: queued tasks are cancelled; running ones finish unless ``kill_running``.

        Afterwards no worker process, shared-memory segment or temp file of this pool is left. Calling
        it again (atexit, a second ``with``) only waits for the first. It does not wait for listeners:
        futures still being resolved resolve on the dispatcher thread.
        """
        with self._lock:
            self._closing = True
            self._kill_running = self._kill_running or kill_running
        self._wake()
        if wait and threading.current_thread() is not self._thread:
            self._thread.join()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        self.shutdown(wait=True, kill_running=exc_type is not None)

    # ----- manager thread ---------------------------------------------------------------------

    def _wake(self) -> None:
        with self._wake_lock:
            if self._wake_w is None:
                return  # the pool is gone
            try:
                os.write(self._wake_w, b"x")
            except BlockingIOError:
                pass  # a full pipe already means "wake up"

    def _manage(self) -> None:
        try:
            while True:
                try:
                    finished, waitables, tick = self._round()
                except Exception:
                    # A bug here must not close the pool for good: a service would fail every request after.
                    logger.exception("event=pool_supervisor_error stage=%s", self.stage.label)
                    finished, waitables, tick = False, [self._wake_r], _IDLE_TICK_S
                if finished:
                    return
                wait(waitables, timeout=tick)
        except BaseException:
            logger.exception("event=pool_manager_failed stage=%s", self.stage.label)
            with self._lock:
                self._closing = self._kill_running = True
                for worker in self._workers:
                    worker.process.kill()
        finally:
            self._cleanup()

    def _round(self) -> tuple[bool, list, float]:
        """One pass: receive, supervise, hand tasks out; what ends goes to the dispatcher even if this fails."""
        outcomes: list[Outcome | Delivery] = []
        try:
            self._observe()
            with self._lock:
                self._step(outcomes)
                handed_out = self._dispatch(time.monotonic())
            self._send(handed_out)
            with self._lock:
                self._fill(time.monotonic(), outcomes)
                finished = self._closing and not self._workers
                waitables, tick = self._waitables()
        finally:
            self._dispatcher.put(outcomes)
        return finished, waitables, tick

    def _observe(self) -> None:
        """Receive messages and sample memory without the lock: only this thread reads worker pipes
        or changes the worker list, and ``stats()`` or ``submit()`` must not wait behind a large result."""
        for worker in list(self._workers):
            worker.inbox += self._receive(worker)
            memory = monitor.tree_memory(worker.pid)
            worker.rss_mb, worker.anon_mb = (memory.rss_mb, memory.anon_mb) if memory else (0.0, 0.0)
            if worker.state == "busy" and self._gpu.available:
                gpu_mb = self._gpu.used_mb({worker.pid})
                if gpu_mb is not None:
                    worker.task_peak_gpu_mb = max(worker.task_peak_gpu_mb or 0.0, gpu_mb)

    def _receive(self, worker: _Worker) -> list[tuple]:
        """Every message waiting in the worker's pipe; a result's value is decoded here as well."""
        received: list[tuple] = []
        conn = worker.process.conn
        while not worker.messages_closed:
            try:
                if not conn.poll():
                    break
                message = conn.recv()
            except (EOFError, OSError):
                worker.messages_closed = True
                break
            received.append(_decoded(message))
        return received

    def _waitables(self) -> tuple[list, float]:
        waitables: list = [self._wake_r]
        polled = False
        for worker in self._workers:
            if not worker.messages_closed:
                waitables.append(worker.process.conn)
            if worker.process.sentinel is None:
                polled = True
            else:
                waitables.append(worker.process.sentinel)
        active = any(w.state in ("busy", "starting", "retiring") for w in self._workers)
        tick = _BUSY_TICK_S if active or polled else _IDLE_TICK_S
        until_start_s = self._next_start_at - time.monotonic()
        if self._pending and until_start_s > 0:  # once past, the next start is under way: no shorter tick
            tick = min(tick, until_start_s)
        return waitables, tick

    def _step(self, outcomes: list[Outcome | Delivery]) -> None:
        self._drain_wake()
        now = time.monotonic()
        for worker in list(self._workers):
            self._handle_messages(worker, outcomes, now)
        for worker in list(self._workers):
            code = worker.process.poll()
            if code is not None:
                self._reap(worker, code, outcomes)
        self._watch_busy(now)
        self._expire(now)
        if self._closing:
            self._close_down(outcomes)

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _handle_messages(self, worker: _Worker, outcomes: list[Outcome | Delivery], now: float) -> None:
        messages, worker.inbox = worker.inbox, []
        for message in messages:
            kind = message[0]
            if kind == "ready":
                worker.state = "idle"
                worker.idle_since = now
                worker.peak_rss_mb = max(worker.peak_rss_mb, worker.rss_mb)
                self._load_failures = 0
                self._next_start_at = 0.0
                log_event(logger, "worker_ready", logging.DEBUG, pid=worker.pid, load_s=message[1])
            elif kind == "load_error":
                _, exc_type, text, tb = message
                worker.load_error = StageError(
                    self.stage.label, exc_type=exc_type, message=text, traceback_text=tb, detail="model load failed"
                )
            elif kind == "event" and worker.task is not None and worker.task.id == message[1]:
                if worker.task.on_event is not None:
                    outcomes.append(Delivery(worker.task.on_event, message[2]))
            elif kind in ("result", "error") and worker.task is not None and worker.task.id == message[1]:
                self._finish_task(worker, message, outcomes, now)

    def _finish_task(self, worker: _Worker, message: tuple, outcomes: list[Outcome | Delivery], now: float) -> None:
        task = worker.task
        assert task is not None
        worker.task = None
        worker.tasks_done += 1
        transport.unlink_segments(task.segments)
        peak_rss_mb = max(worker.task_peak_rss_mb, message[-1])
        worker.peak_rss_mb = max(worker.peak_rss_mb, peak_rss_mb)
        if message[0] == "result":
            value, decode_error = message[2]
            if decode_error is not None:
                outcomes.append(Outcome(task.future, error=self._unreadable_result(decode_error, peak_rss_mb)))
                self._counters.tasks_failed += 1
            else:
                stats = TaskStats(
                    wall_s=now - worker.task_started_at,
                    peak_rss_mb=peak_rss_mb,
                    peak_gpu_mb=worker.task_peak_gpu_mb,
                    worker_pid=worker.pid,
                    worker_task_number=worker.tasks_done,
                )
                outcomes.append(Outcome(task.future, result=TaskResult(value, stats)))
                self._counters.tasks_completed += 1
        else:
            _, _, exc_type, text, tb, _ = message
            error = StageError(self.stage.label, peak_rss_mb, exc_type=exc_type, message=text, traceback_text=tb)
            outcomes.append(Outcome(task.future, error=error))
            self._counters.tasks_failed += 1
        self._after_task(worker, now)

    def _unreadable_result(self, exc: Exception, peak_rss_mb: float) -> StageError:
        return StageError(
            self.stage.label,
            peak_rss_mb,
            exc_type=type(exc).__name__,
            message=f"result could not be read in the parent: {exc}",
            traceback_text="".join(traceback.format_exception(exc)),
        )

    def _after_task(self, worker: _Worker, now: float) -> None:
        if self.max_tasks_per_worker is not None and worker.tasks_done >= self.max_tasks_per_worker:
            self._retire(worker, "max_tasks", now)
            return
        if self.max_rss_mb is not None:
            memory = monitor.tree_memory(worker.pid)
            if memory is not None and memory.anon_mb > self.max_rss_mb:
                self._retire(worker, "rss_cap", now)
                return
        if self._closing:
            self._retire(worker, "shutdown", now)
            return
        worker.state = "idle"
        worker.idle_since = now

    def _watch_busy(self, now: float) -> None:
        busy = [w for w in self._workers if w.state == "busy" and w.kill_reason is None]
        for worker in busy:
            rss_mb = worker.rss_mb
            worker.task_peak_rss_mb = max(worker.task_peak_rss_mb, rss_mb)
            worker.peak_rss_mb = max(worker.peak_rss_mb, rss_mb)
            hard_cap = self.limits.hard_rss_mb
            if hard_cap is not None and worker.anon_mb > hard_cap:
                self._kill(worker, "oom_guard")
            elif self.limits.timeout_s is not None and now - worker.task_started_at > self.limits.timeout_s:
                self._kill(worker, "timeout")

    def _expire(self, now: float) -> None:
        load_timeout_s = self.limits.load_timeout_s
        for worker in self._workers:
            if worker.state == "starting" and load_timeout_s is not None and now - worker.started_at > load_timeout_s:
                self._kill(worker, "load_timeout")
            elif worker.state == "retiring" and worker.kill_reason is None and now > worker.retire_deadline:
                self._kill(worker, worker.retire_reason or "shutdown")
            elif (
                worker.state == "idle"
                and self.idle_ttl_s is not None
                and now - worker.idle_since > self.idle_ttl_s
                and not (self.prespawn and worker.tasks_done == 0)
            ):
                # A fresh prespawned worker holds only its model: replacing it would gain nothing.
                self._retire(worker, "idle", now)

    def _close_down(self, outcomes: list[Outcome | Delivery]) -> None:
        while self._pending:
            task = self._pending.popleft()
            transport.unlink_segments(task.segments)
            if task.running or task.future.set_running_or_notify_cancel():
                error = TaskCancelled(self.stage.label, detail="the pool shut down before the task ran")
                outcomes.append(Outcome(task.future, error=error))
        for worker in self._workers:
            if worker.state == "starting":
                self._kill(worker, "shutdown")
            elif worker.state == "idle":
                self._retire(worker, "shutdown", time.monotonic())
            elif worker.state == "busy" and self._kill_running and worker.kill_reason is None:
                self._kill(worker, "shutdown")

    def _dispatch(self, now: float) -> list[tuple[_Worker, _Task]]:
        """Give queued tasks to idle workers; the caller sends them once the lock is released."""
        handed_out: list[tuple[_Worker, _Task]] = []
        while self._pending:
            worker = next((w for w in self._workers if w.state == "idle"), None)
            if worker is None:
                break
            task = self._pending.popleft()
            if not task.running and not task.future.set_running_or_notify_cancel():
                transport.unlink_segments(task.segments)
                continue
            task.running = True
            handed_out.append((worker, task))
            worker.state = "busy"
            worker.task = task
            worker.task_started_at = now
            worker.task_peak_rss_mb = 0.0
            worker.task_peak_gpu_mb = None
            limit = self.max_tasks_per_worker
            worker.final_task = limit is not None and worker.tasks_done + 1 >= limit
        return handed_out

    def _send(self, handed_out: list[tuple[_Worker, _Task]]) -> None:
        """Send tasks without the lock: a large payload must not hold up ``submit``, ``stats`` or ``cancel``."""
        for worker, task in handed_out:
            try:
                worker.process.conn.send(("task", task.id, task.payload))
            except OSError:
                with self._lock:
                    self._undeliverable(worker, task)

    def _undeliverable(self, worker: _Worker, task: _Task) -> None:
        """The worker's pipe broke before it got the task: the task goes back to the queue, unless it
        was cancelled meanwhile (then the worker's reaping fails it with TaskCancelled)."""
        if worker.task is not task or worker.kill_reason is not None:
            return
        worker.task = None
        self._pending.appendleft(task)
        worker.state = "retiring"
        worker.retire_deadline = time.monotonic()

    def _fill(self, now: float, outcomes: list[Outcome | Delivery]) -> None:
        """Start workers so that capacity is there before it is needed."""
        if self._closing or self._load_failed or now < self._next_start_at:
            return
        states = Counter(w.state for w in self._workers)
        if self.prespawn:
            ready_soon = states["starting"] + states["idle"]
            ready_soon += sum(1 for w in self._workers if w.state == "busy" and not w.final_task)
            missing = self.size - ready_soon
        else:
            occupied = states["starting"] + states["idle"] + states["busy"]
            waiting = sum(1 for task in self._pending if not task.future.cancelled())
            missing = min(self.size - occupied, waiting - states["starting"] - states["idle"])
        for _ in range(max(0, missing)):
            try:
                self._start_worker(now)
            except Exception as exc:
                logger.exception("event=worker_start_failed stage=%s", self.stage.label)
                self._load_failed_once(exc, now, outcomes)
                return

    def _start_worker(self, now: float) -> None:
        from isoscribe.isolation.worker import WorkerInit

        output_path = os.path.join(self._tmpdir, f"worker-{self._counters.workers_started + 1}.log")
        init = WorkerInit(self.stage, self.segment_prefix)
        process = start_worker(self.start_method, init, output_path)
        self._workers.append(_Worker(process=process, started_at=now))
        self._counters.workers_started += 1
        log_event(logger, "worker_start", logging.DEBUG, pid=process.pid, stage=self.stage.label)

    def _retire(self, worker: _Worker, reason: str, now: float) -> None:
        worker.state = "retiring"
        worker.retire_reason = reason
        worker.retire_deadline = now + _RETIRE_GRACE_S
        try:
            worker.process.conn.send(("stop",))
        except OSError:
            worker.retire_deadline = now

    def _kill(self, worker: _Worker, reason: str) -> None:
        if worker.kill_reason is None:
            worker.kill_reason = reason
        worker.process.kill()

    def _reap(self, worker: _Worker, code: int, outcomes: list[Outcome | Delivery]) -> None:
        # A result sent just before the exit still counts. The process is gone, so this read never
        # waits, and what is left is at most one pipe buffer (a larger write would not have finished).
        worker.inbox += self._receive(worker)
        self._handle_messages(worker, outcomes, time.monotonic())
        self._workers.remove(worker)
        worker.process.close()
        transport.remove_segments(f"{self.segment_prefix}{worker.pid}-")
        reason, crashed = self._exit_reason(worker, code)
        likely_oom_kill = code == -signal.SIGKILL and worker.kill_reason is None
        if worker.task is not None:
            task, worker.task = worker.task, None
            transport.unlink_segments(task.segments)
            outcomes.append(Outcome(task.future, error=self._task_error(worker, code, reason)))
            self._counters.tasks_failed += 1
        elif worker.state == "starting" and not self._closing:
            self._load_failed_once(self._load_failure(worker, code), time.monotonic(), outcomes)
        record = WorkerExit(
            pid=worker.pid,
            reason=reason,
            peak_rss_mb=worker.peak_rss_mb,
            tasks_done=worker.tasks_done,
            likely_oom_kill=likely_oom_kill,
        )
        self.exits.append(record)
        self._counters.exits_by_reason[reason] += 1
        self._counters.crashes += crashed
        self._counters.likely_oom_kills += likely_oom_kill
        if crashed:
            log_event(logger, "worker_output", logging.WARNING, pid=worker.pid, tail=worker.process.output_tail())
        worker.process.remove_output()
        log_event(
            logger,
            "worker_exit",
            logging.WARNING if crashed or likely_oom_kill else logging.INFO,
            stage=self.stage.label,
            pid=worker.pid,
            reason=reason,
            peak_rss_mb=round(worker.peak_rss_mb, 1),
            tasks=worker.tasks_done,
            likely_oom_kill=likely_oom_kill,
        )

    def _exit_reason(self, worker: _Worker, code: int) -> tuple[str, bool]:
        if worker.kill_reason is not None:
            return worker.kill_reason, False
        if worker.load_error is not None:
            return "load_error", False
        if worker.retire_reason is not None and code == 0:
            return worker.retire_reason, False
        return (f"signal {-code}" if code < 0 else f"exit {code}"), True

    def _task_error(self, worker: _Worker, code: int, reason: str) -> IsolationError:
        stage, peak = self.stage.label, max(worker.task_peak_rss_mb, 0.0)
        if reason == "timeout":
            return StageTimeout(stage, peak, timeout_s=self.limits.timeout_s or 0.0)
        if reason == "oom_guard":
            return StageOutOfMemory(stage, peak, limit_mb=self.limits.hard_rss_mb or 0.0)
        if reason == "cancelled":
            return TaskCancelled(stage, peak, detail="task cancelled; its worker was killed")
        if reason == "shutdown":
            return TaskCancelled(stage, peak, detail="the pool shut down while the task ran; its worker was killed")
        return self._crash_error(worker, code, "")

    def _crash_error(self, worker: _Worker, code: int, detail: str) -> WorkerCrashed:
        return WorkerCrashed(
            self.stage.label,
            max(worker.task_peak_rss_mb, worker.peak_rss_mb if worker.task is None else 0.0),
            detail=detail,
            signal=-code if code < 0 else None,
            exit_code=code if code >= 0 else None,
            stderr_tail=worker.process.output_tail(),
        )

    def _load_failure(self, worker: _Worker, code: int) -> IsolationError:
        if worker.load_error is not None:
            return worker.load_error
        if worker.kill_reason == "load_timeout":
            timeout_s = self.limits.load_timeout_s or 0.0
            return StageTimeout(self.stage.label, worker.peak_rss_mb, detail="model load timed out", timeout_s=timeout_s)
        return self._crash_error(worker, code, "worker died while loading the stage")

    def _load_failed_once(self, error: BaseException, now: float, outcomes: list[Outcome | Delivery]) -> None:
        """A worker could not load the stage: try again after a pause (an OOM kill during a load may
        not recur), and after ``load_attempts`` failures in a row fail what is queued."""
        self._load_failures += 1
        if self._load_failures >= self.load_attempts:
            self._load_failures, self._next_start_at = 0, 0.0
            self._fail_pending(error, outcomes)
            return
        backoff_s = _LOAD_RETRY_FIRST_S * 2 ** (self._load_failures - 1)
        self._next_start_at = now + backoff_s
        log_event(
            logger, "worker_load_retry", logging.WARNING, stage=self.stage.label,
            failures=self._load_failures, backoff_s=backoff_s, cause=str(error),
        )

    def _fail_pending(self, error: BaseException, outcomes: list[Outcome | Delivery]) -> None:
        """Loading failed ``load_attempts`` times in a row: fail what is queued instead of restarting in a loop."""
        self._load_failed = True
        while self._pending:
            task = self._pending.popleft()
            transport.unlink_segments(task.segments)
            if task.running or task.future.set_running_or_notify_cancel():
                outcomes.append(Outcome(task.future, error=error))
                self._counters.tasks_failed += 1

    def _cleanup(self) -> None:
        orphaned = [task for task in self._pending] + [w.task for w in self._workers if w.task is not None]
        error = TaskCancelled(self.stage.label, detail="the pool stopped before the task finished")
        ending = [task for task in orphaned if task.running or task.future.set_running_or_notify_cancel()]
        self._dispatcher.put([Outcome(task.future, error=error) for task in ending])
        self._dispatcher.close()
        for task in orphaned:
            transport.unlink_segments(task.segments)
        for worker in self._workers:
            worker.process.kill()
        for worker in self._workers:
            _wait_exit(worker.process)
            worker.process.close()
        self._workers.clear()
        transport.remove_segments(self.segment_prefix)
        shutil.rmtree(self._tmpdir, ignore_errors=True)
        with self._wake_lock:
            os.close(self._wake_w)
            self._wake_w = None
        os.close(self._wake_r)
        self._closed.set()


def _decoded(message: tuple) -> tuple:
    """A "result" message with its payload replaced by (value, None) or (None, the decoding error)."""
    if message[0] != "result":
        return message
    try:
        decoded = (transport.loads(message[2]), None)
    except Exception as exc:
        decoded = (None, exc)
    return (*message[:2], decoded, *message[3:])


def _wait_exit(process: WorkerProcess, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)


def _sweep_once() -> None:
    global _swept
    if not _swept:
        _swept = True
        transport.sweep_stale()


def _register(pool: WorkerPool) -> None:
    global _atexit_registered
    if not _atexit_registered:
        atexit.register(shutdown_all_pools)
        _atexit_registered = True
    _pools.add(pool)


def shutdown_all_pools() -> None:
    """Kill every live pool's workers and remove their files; registered with atexit."""
    for pool in list(_pools):
        pool.shutdown(wait=True, kill_running=True)


def install_termination_handler() -> None:
    """Turn SIGTERM into ``SystemExit(143)`` in the main thread, so ``with`` blocks and atexit shut pools down.

    For the CLI and the service to call; the runtime installs no signal handler by itself. Ctrl-C
    already raises KeyboardInterrupt, and workers ignore SIGINT (they are in their own session anyway).
    """
    signal.signal(signal.SIGTERM, _exit_on_sigterm)


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)
