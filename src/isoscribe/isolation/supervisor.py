"""The supervisor: one thread per pool that owns its workers and never runs caller code.

It starts workers, hands out tasks, samples memory while they work, enforces the timeout and the hard
memory cap, notices deaths through the process's exit fd, retires workers after
``max_tasks_per_worker`` tasks, past ``max_rss_mb`` after a task or idle longer than ``idle_ttl_s``, and
starts replacements ahead of need. A worker's death fails only the task it was running. How each task
ends goes to the dispatcher, which resolves futures and calls listeners on its own thread.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from multiprocessing.connection import wait
from typing import Any

from isoscribe.isolation import failures, monitor, protocol, transport
from isoscribe.isolation.dispatcher import Delivery, Dispatcher, Outcome
from isoscribe.isolation.process import start_worker
from isoscribe.isolation.state import PoolPolicy, PoolState, Task, Worker
from isoscribe.isolation.types import TaskCancelled, TaskResult, TaskStats

__all__ = ["Supervisor"]

logger = logging.getLogger("isoscribe.isolation")
# Log lines are "event=NAME key=value …" as isoscribe.logs writes them, formatted here (with _text) so
# that the runtime imports nothing else of isoscribe.

_BUSY_TICK_S = 0.05
"""How often a busy worker's memory is sampled and its deadline checked."""
_IDLE_TICK_S = 0.5


class Supervisor:
    def __init__(self, policy: PoolPolicy, state: PoolState, dispatcher: Dispatcher, segment_prefix: str, tmpdir: str):
        self.policy = policy
        self.state = state
        self.dispatcher = dispatcher
        self.segment_prefix = segment_prefix
        self.tmpdir = tmpdir
        self.label = policy.stage.label
        self._gpu = monitor.GpuMonitor()
        self._load_retry = failures.LoadRetry(policy.load_attempts)
        self.thread = threading.Thread(target=self._run, name=f"isoscribe-pool-{self.label}", daemon=True)

    def _run(self) -> None:
        try:
            while True:
                try:
                    finished, waitables, tick = self._round()
                except Exception:
                    # A bug here must not close the pool for good: a service would fail every request after.
                    logger.exception("event=pool_supervisor_error stage=%s", self.label)
                    finished, waitables, tick = False, [self.state.wake_fd], _IDLE_TICK_S
                if finished:
                    return
                wait(waitables, timeout=tick)
        except BaseException:
            logger.exception("event=pool_supervisor_failed stage=%s", self.label)
            with self.state.lock:
                self.state.closing = self.state.kill_running = True
                for worker in self.state.workers:
                    worker.process.kill()
        finally:
            self._cleanup()

    def _round(self) -> tuple[bool, list, float]:
        """One pass: receive, supervise, hand tasks out; what ended goes to the dispatcher even if this fails."""
        outcomes: list[Outcome | Delivery] = []
        state = self.state
        try:
            self._observe()
            with state.lock:
                self._step(outcomes)
                handed_out = self._dispatch(time.monotonic())
            self._send(handed_out)
            with state.lock:
                self._fill(time.monotonic(), outcomes)
                finished = state.closing and not state.workers
                waitables, tick = self._waitables()
        finally:
            self.dispatcher.put(outcomes)
        return finished, waitables, tick

    def _observe(self) -> None:
        """Receive messages and sample memory without the lock: only this thread reads worker pipes
        or changes the worker list, and ``stats()`` or ``submit()`` must not wait behind a large result."""
        for worker in list(self.state.workers):
            self._receive(worker)
            memory = monitor.tree_memory(worker.pid)
            worker.rss_mb, worker.anon_mb = (memory.rss_mb, memory.anon_mb) if memory else (0.0, 0.0)
            if worker.state == "busy" and self._gpu.available:
                gpu_mb = self._gpu.used_mb({worker.pid})
                if gpu_mb is not None:
                    worker.task_peak_gpu_mb = max(worker.task_peak_gpu_mb or 0.0, gpu_mb)

    def _receive(self, worker: Worker) -> None:
        if not worker.messages_closed:
            received, worker.messages_closed = protocol.receive_waiting(worker.process.conn)
            worker.inbox += received

    def _waitables(self) -> tuple[list, float]:
        waitables: list = [self.state.wake_fd]
        polled = False
        for worker in self.state.workers:
            if not worker.messages_closed:
                waitables.append(worker.process.conn)
            if worker.process.sentinel is None:
                polled = True
            else:
                waitables.append(worker.process.sentinel)
        active = any(w.state in ("busy", "starting", "retiring") for w in self.state.workers)
        tick = _BUSY_TICK_S if active or polled else _IDLE_TICK_S
        until_start_s = self._load_retry.next_start_at - time.monotonic()
        if self.state.pending and until_start_s > 0:  # once past, the next start is under way: no shorter tick
            tick = min(tick, until_start_s)
        return waitables, tick

    def _step(self, outcomes: list[Outcome | Delivery]) -> None:
        self.state.drain_wake()
        now = time.monotonic()
        for worker in list(self.state.workers):
            self._handle_messages(worker, outcomes, now)
        for worker in list(self.state.workers):
            code = worker.process.poll()
            if code is not None:
                self._reap(worker, code, outcomes)
        self._watch_busy(now)
        self._expire(now)
        if self.state.closing:
            self._close_down(outcomes)

    def _handle_messages(self, worker: Worker, outcomes: list[Outcome | Delivery], now: float) -> None:
        messages, worker.inbox = worker.inbox, []
        for message in messages:
            if isinstance(message, protocol.Ready):
                worker.state = "idle"
                worker.idle_since = now
                worker.peak_rss_mb = max(worker.peak_rss_mb, worker.rss_mb)
                self._load_retry.succeeded()
                logger.debug("event=worker_ready pid=%d load_s=%.3f", worker.pid, message.load_s)
            elif isinstance(message, protocol.LoadFailed):
                worker.load_error = failures.stage_error(self.label, message)
            elif isinstance(message, protocol.Emitted):
                listener = worker.task.on_event if worker.task and worker.task.id == message.task_id else None
                if listener is None:  # nobody listens, or its task has ended: its arrays' segments go now
                    transport.discard(message.payload)
                else:
                    outcomes.append(Delivery(listener, message.payload))
            elif worker.task is None or worker.task.id != message.task_id:
                continue  # a message of a task that has already ended
            else:
                self._finish_task(worker, message, outcomes, now)

    def _finish_task(self, worker: Worker, message: Any, outcomes: list[Outcome | Delivery], now: float) -> None:
        task = worker.task
        assert task is not None
        worker.task = None
        worker.tasks_done += 1
        transport.unlink_segments(task.segments)
        peak_rss_mb = max(worker.task_peak_rss_mb, message.peak_rss_mb)
        worker.peak_rss_mb = max(worker.peak_rss_mb, peak_rss_mb)
        counters = self.state.counters
        if isinstance(message, protocol.TaskFailed):
            outcomes.append(Outcome(task.future, error=failures.stage_error(self.label, message, peak_rss_mb)))
            counters.tasks_failed += 1
        elif message.error is not None:
            error = failures.unreadable_result(self.label, message.error, peak_rss_mb)
            outcomes.append(Outcome(task.future, error=error))
            counters.tasks_failed += 1
        else:
            stats = TaskStats(
                wall_s=now - worker.task_started_at,
                peak_rss_mb=peak_rss_mb,
                peak_gpu_mb=worker.task_peak_gpu_mb,
                worker_pid=worker.pid,
                worker_task_number=worker.tasks_done,
            )
            outcomes.append(Outcome(task.future, result=TaskResult(message.value, stats)))
            counters.tasks_completed += 1
        self._after_task(worker, now)

    def _after_task(self, worker: Worker, now: float) -> None:
        policy = self.policy
        if policy.max_tasks_per_worker is not None and worker.tasks_done >= policy.max_tasks_per_worker:
            worker.retire("max_tasks", now)
            return
        if policy.max_rss_mb is not None:
            memory = monitor.tree_memory(worker.pid)
            if memory is not None and memory.anon_mb > policy.max_rss_mb:
                worker.retire("rss_cap", now)
                return
        if self.state.closing:
            worker.retire("shutdown", now)
            return
        worker.state = "idle"
        worker.idle_since = now

    def _watch_busy(self, now: float) -> None:
        limits = self.policy.limits
        for worker in self.state.workers:
            if worker.state != "busy" or worker.kill_reason is not None:
                continue
            worker.task_peak_rss_mb = max(worker.task_peak_rss_mb, worker.rss_mb)
            worker.peak_rss_mb = max(worker.peak_rss_mb, worker.rss_mb)
            if limits.hard_rss_mb is not None and worker.anon_mb > limits.hard_rss_mb:
                worker.kill("oom_guard")
            elif limits.timeout_s is not None and now - worker.task_started_at > limits.timeout_s:
                worker.kill("timeout")

    def _expire(self, now: float) -> None:
        load_timeout_s = self.policy.limits.load_timeout_s
        idle_ttl_s = self.policy.idle_ttl_s
        for worker in self.state.workers:
            if worker.state == "starting" and load_timeout_s is not None and now - worker.started_at > load_timeout_s:
                worker.kill("load_timeout")
            elif worker.state == "retiring" and worker.kill_reason is None and now > worker.retire_deadline:
                worker.kill(worker.retire_reason or "shutdown")
            elif (
                worker.state == "idle"
                and idle_ttl_s is not None
                and now - worker.idle_since > idle_ttl_s
                and not (self.policy.prespawn and worker.tasks_done == 0)
            ):
                # A fresh prespawned worker holds only its model: replacing it would gain nothing.
                worker.retire("idle", now)

    def _close_down(self, outcomes: list[Outcome | Delivery]) -> None:
        state = self.state
        error = TaskCancelled(self.label, detail="the pool shut down before the task ran")
        while state.pending:
            task = state.pending.popleft()
            transport.unlink_segments(task.segments)
            if task.running or task.future.set_running_or_notify_cancel():
                outcomes.append(Outcome(task.future, error=error))
        for worker in state.workers:
            if worker.state == "starting":
                worker.kill("shutdown")
            elif worker.state == "idle":
                worker.retire("shutdown", time.monotonic())
            elif worker.state == "busy" and state.kill_running and worker.kill_reason is None:
                worker.kill("shutdown")

    def _dispatch(self, now: float) -> list[tuple[Worker, Task]]:
        """Give queued tasks to idle workers; the caller sends them once the lock is released."""
        handed_out: list[tuple[Worker, Task]] = []
        state = self.state
        while state.pending:
            worker = next((w for w in state.workers if w.state == "idle"), None)
            if worker is None:
                break
            task = state.pending.popleft()
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
            limit = self.policy.max_tasks_per_worker
            worker.final_task = limit is not None and worker.tasks_done + 1 >= limit
        return handed_out

    def _send(self, handed_out: list[tuple[Worker, Task]]) -> None:
        """Send tasks without the lock: a large payload must not hold up ``submit``, ``stats`` or ``cancel``."""
        for worker, task in handed_out:
            try:
                worker.process.conn.send(protocol.RunTask(task.id, task.payload))
            except OSError:
                with self.state.lock:
                    self._undeliverable(worker, task)

    def _undeliverable(self, worker: Worker, task: Task) -> None:
        """The worker's pipe broke before it got the task: the task goes back to the queue, unless it
        was cancelled meanwhile (then the worker's reaping fails it with TaskCancelled)."""
        if worker.task is not task or worker.kill_reason is not None:
            return
        worker.task = None
        self.state.pending.appendleft(task)
        worker.state = "retiring"
        worker.retire_deadline = time.monotonic()

    def _fill(self, now: float, outcomes: list[Outcome | Delivery]) -> None:
        """Start workers so that capacity is there before it is needed."""
        state = self.state
        if state.closing or state.load_failed or now < self._load_retry.next_start_at:
            return
        for _ in range(state.workers_missing(self.policy.size, self.policy.prespawn)):
            try:
                self._start_worker(now)
            except Exception as exc:
                logger.exception("event=worker_start_failed stage=%s", self.label)
                self._load_failed_once(exc, now, outcomes)
                return

    def _start_worker(self, now: float) -> None:
        from isoscribe.isolation.worker import WorkerInit

        counters = self.state.counters
        output_path = os.path.join(self.tmpdir, f"worker-{counters.workers_started + 1}.log")
        init = WorkerInit(self.policy.stage, self.segment_prefix)
        process = start_worker(self.policy.start_method, init, output_path)
        self.state.workers.append(Worker(process=process, started_at=now))
        counters.workers_started += 1
        logger.debug("event=worker_start pid=%d stage=%s", process.pid, self.label)

    def _reap(self, worker: Worker, code: int, outcomes: list[Outcome | Delivery]) -> None:
        # A result sent just before the exit still counts. The process is gone, so this read never
        # waits, and what is left is at most one pipe buffer (a larger write would not have finished).
        self._receive(worker)
        self._handle_messages(worker, outcomes, time.monotonic())
        self.state.workers.remove(worker)
        monitor.kill_group(worker.pid)  # what the stage started dies with its worker, however it ended
        worker.process.close()
        transport.remove_segments(f"{self.segment_prefix}{worker.pid}-")
        cause = monitor.classify_exit(code, worker.kill_reason, worker.load_error is not None, worker.retire_reason)
        if worker.task is not None:
            task, worker.task = worker.task, None
            transport.unlink_segments(task.segments)
            error = failures.task_failure(self.label, worker, code, cause.reason, self.policy.limits)
            outcomes.append(Outcome(task.future, error=error))
            self.state.counters.tasks_failed += 1
        elif worker.state == "starting" and not self.state.closing:
            error = failures.load_failure(self.label, worker, code, self.policy.limits)
            self._load_failed_once(error, time.monotonic(), outcomes)
        self._record_exit(worker, cause)

    def _record_exit(self, worker: Worker, cause: monitor.ExitCause) -> None:
        self.state.record_exit(worker, cause.reason, cause.crashed, cause.likely_oom_kill)
        if cause.crashed:
            logger.warning("event=worker_output pid=%d tail=%s", worker.pid, _text(worker.process.output_tail()))
        worker.process.remove_output()
        logger.log(
            logging.WARNING if cause.crashed or cause.likely_oom_kill else logging.INFO,
            "event=worker_exit stage=%s pid=%d reason=%s peak_rss_mb=%.1f tasks=%d likely_oom_kill=%s",
            self.label, worker.pid, _text(cause.reason), worker.peak_rss_mb, worker.tasks_done, cause.likely_oom_kill,
        )

    def _load_failed_once(self, error: BaseException, now: float, outcomes: list[Outcome | Delivery]) -> None:
        """A worker could not load the stage: try again after a pause (an OOM kill during a load may
        not recur), and after ``load_attempts`` failures in a row fail what is queued."""
        backoff_s = self._load_retry.failed(now)
        if backoff_s is None:
            self._fail_pending(error, outcomes)
            return
        logger.warning(
            "event=worker_load_retry stage=%s failures=%d backoff_s=%.3f cause=%s",
            self.label, self._load_retry.failures, backoff_s, _text(error),
        )

    def _fail_pending(self, error: BaseException, outcomes: list[Outcome | Delivery]) -> None:
        """Loading failed ``load_attempts`` times in a row: fail what is queued instead of restarting in a loop."""
        state = self.state
        state.load_failed = True
        while state.pending:
            task = state.pending.popleft()
            transport.unlink_segments(task.segments)
            if task.running or task.future.set_running_or_notify_cancel():
                outcomes.append(Outcome(task.future, error=error))
                state.counters.tasks_failed += 1

    def _cleanup(self) -> None:
        state = self.state
        orphaned = list(state.pending) + [w.task for w in state.workers if w.task is not None]
        error = TaskCancelled(self.label, detail="the pool stopped before the task finished")
        ending = [task for task in orphaned if task.running or task.future.set_running_or_notify_cancel()]
        self.dispatcher.put([Outcome(task.future, error=error) for task in ending])
        self.dispatcher.close()
        for task in orphaned:
            transport.unlink_segments(task.segments)
        for worker in state.workers:
            worker.process.kill()
        for worker in state.workers:
            worker.process.wait_exit(timeout_s=5.0)
            worker.process.close()
        state.workers.clear()
        transport.remove_segments(self.segment_prefix)
        shutil.rmtree(self.tmpdir, ignore_errors=True)
        state.close_wake()


def _text(value: object) -> str:
    """A log value bare, or double-quoted and escaped where it holds spaces, quotes or '='."""
    text = str(value)
    return json.dumps(text) if not text or any(c.isspace() or c in '"=' for c in text) else text
