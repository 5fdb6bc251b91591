"""Faults of the isolation runtime found in review (issue 24): each test drives one with real workers."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future

import pytest

from isoscribe.isolation import (
    IsolationError,
    Limits,
    StageOutOfMemory,
    StageSpec,
    StageTimeout,
    TaskCancelled,
    WorkerCrashed,
    WorkerPool,
)
from isoscribe.executors import PerTaskExecutor
from isoscribe.isolation import supervisor as supervisor_module
from isoscribe.stages.faults import FaultConfig, FaultRequest
from isolation_support import FAULTS, HANG_S, wait_for


@pytest.fixture
def pool():
    with WorkerPool(FAULTS, size=1, limits=Limits(timeout_s=30)) as pool:
        yield pool


KILLS = {
    "timeout": (FaultRequest("hang"), Limits(timeout_s=2.0), StageTimeout),
    "oom_guard": (FaultRequest("alloc", mb=600, seconds=60), Limits(hard_rss_mb=300), StageOutOfMemory),
}


@pytest.mark.parametrize("kill", sorted(KILLS))
@pytest.mark.parametrize("listener", ["on_event", "done_callback"])
def test_a_blocking_listener_does_not_stop_the_supervisor_killing_the_next_task(listener: str, kill: str) -> None:
    request, limits, error = KILLS[kill]
    entered, release = threading.Event(), threading.Event()

    def block(_: object) -> None:
        entered.set()
        release.wait(60)

    with WorkerPool(FAULTS, limits=limits) as pool:
        try:
            if listener == "on_event":
                pool.submit(FaultRequest("emit", payload=[1]), on_event=block)
            else:  # the task sleeps, so the callback is added before the future can resolve
                pool.submit(FaultRequest("sleep", seconds=1.0)).add_done_callback(block)
            assert entered.wait(30)
            doomed = pool.submit(request)
            assert wait_for(lambda: [exit.reason for exit in pool.exits] == [kill])
            assert wait_for(lambda: pool.stats().idle == 1)  # the killed worker was reaped and replaced
        finally:
            release.set()
        with pytest.raises(error):
            doomed.result(timeout=30)


def test_a_worker_killed_while_sending_fails_its_task_though_its_children_live_on(pool) -> None:
    """A forked child and an exec'd one outlive the worker: neither holds its pipe, so the supervisor
    sees the pipe close instead of waiting forever for the rest of the result."""
    doomed = pool.submit(FaultRequest("die_while_sending", mb=200))
    with pytest.raises(WorkerCrashed):
        doomed.result(timeout=HANG_S)
    assert pool.run(FaultRequest("ok", payload=2)).value == 2


def test_the_supervisor_does_not_spin_while_a_load_is_retried(tmp_path, monkeypatch) -> None:
    """After a failed load and its back-off, the retry loads for 3 s: the supervisor keeps its tick."""
    waits = []
    real_wait = supervisor_module.wait

    def counted_wait(*args, **kwargs):
        waits.append(1)
        return real_wait(*args, **kwargs)

    monkeypatch.setattr(supervisor_module, "wait", counted_wait)
    config = FaultConfig(crash_loads=1, load_count_file=str(tmp_path / "loads"), load_s=3.0)
    with WorkerPool(StageSpec("isoscribe.stages.faults", config), prespawn=False) as pool:
        assert pool.run(FaultRequest("ok", payload=1)).value == 1
        assert [exit.reason for exit in pool.exits] == ["signal 9"]
    # ~3.5 s at a 50 ms tick is ~70 rounds plus one per message; a spinning loop makes thousands.
    assert len(waits) < 400, f"{len(waits)} supervisor rounds during one retried load"


def test_cancelling_a_queued_task_fails_it_with_task_cancelled(pool) -> None:
    running = pool.submit(FaultRequest("sleep", seconds=30))
    queued = pool.submit(FaultRequest("ok"))
    assert wait_for(lambda: pool.stats().busy == 1)
    assert pool.cancel(queued)
    with pytest.raises(TaskCancelled) as caught:
        queued.result(timeout=HANG_S)
    assert isinstance(caught.value, IsolationError) and "before it ran" in caught.value.detail
    assert pool.stats().queue_depth == 0
    assert pool.cancel(running)
    assert pool.run(FaultRequest("ok", payload=1)).value == 1
    assert pool.stats().tasks_completed == 1


def test_cancel_of_a_future_the_pool_does_not_know_is_false_and_leaves_it_alone(pool) -> None:
    foreign: Future = Future()
    assert pool.cancel(foreign) is False
    assert not foreign.done()


def test_events_a_stage_sends_while_its_result_goes_out_do_not_corrupt_the_pipe(pool) -> None:
    payload = b"r" * 3_000_000
    received: list = []
    for _ in range(3):
        future = pool.submit(FaultRequest("emit_late", mb=100, payload=payload), on_event=received.append)
        assert future.result(timeout=30).value == payload
    assert all(event == b"e" * 100_000 for event in received)
    assert pool.run(FaultRequest("ok", payload=1)).stats.worker_task_number == 4
    assert list(pool.exits) == []


def test_file_backed_pages_do_not_count_against_the_memory_limits(tmp_path) -> None:
    """A mmapped model file (a GGUF) is page cache the kernel can drop, not memory the worker holds."""
    weights = tmp_path / "weights.gguf"
    with open(weights, "wb") as file:
        file.truncate(400 * 2**20)  # sparse: reading it maps 400 MB of file-backed pages
    with WorkerPool(FAULTS, max_rss_mb=250, limits=Limits(hard_rss_mb=250, timeout_s=60)) as pool:
        mapped = pool.run(FaultRequest("map_file", payload=str(weights), seconds=1.0))
        after = pool.run(FaultRequest("ok"))
        assert mapped.stats.peak_rss_mb > 400  # what it reports still counts the mapping
        assert after.stats.worker_pid == mapped.stats.worker_pid
        assert list(pool.exits) == []


class _PollFailsOnce:
    """Stands in for a worker's pipe whose next ``poll`` raises, as a bug in the supervisor would."""

    def __init__(self, conn) -> None:
        self._conn, self.failed = conn, threading.Event()

    def poll(self, *args):
        if not self.failed.is_set():
            self.failed.set()
            raise RuntimeError("injected supervisor fault")
        return self._conn.poll(*args)

    def __getattr__(self, name):
        return getattr(self._conn, name)


def test_an_exception_in_the_supervisor_loop_is_logged_and_the_pool_carries_on(pool, caplog) -> None:
    pool.run(FaultRequest("ok"))
    [worker] = pool._supervisor.state.workers
    faulty = _PollFailsOnce(worker.process.conn)
    with caplog.at_level(logging.ERROR, logger="isoscribe.isolation"):
        worker.process.conn = faulty
        assert faulty.failed.wait(10)
        assert pool.run(FaultRequest("ok", payload="after")).value == "after"
    assert any("injected supervisor fault" in record.exc_text for record in caplog.records if record.exc_text)
    assert pool.stats().tasks_completed == 2


def test_the_exit_history_keeps_only_the_latest_records() -> None:
    with WorkerPool(FAULTS, max_tasks_per_worker=1, exits_kept=2) as pool:
        pids = [pool.run(FaultRequest("ok")).stats.worker_pid for _ in range(4)]
        assert wait_for(lambda: pool.stats().exits_by_reason.get("max_tasks") == 4)
        assert [exit.pid for exit in pool.exits] == pids[-2:]


@pytest.fixture
def per_task():
    executor = PerTaskExecutor({"faults": (FAULTS, Limits(timeout_s=60))}, max_concurrent=1)
    yield executor
    executor.shutdown()


def test_per_task_cancel_right_after_submit_is_never_lost(per_task) -> None:
    """Issued while the task's thread may be starting its process: it stops the task, as TaskCancelled."""
    future = per_task.submit("faults", FaultRequest("sleep", seconds=60))
    assert per_task.cancel(future)
    with pytest.raises(TaskCancelled):
        future.result(timeout=30)


def test_per_task_cancel_of_a_waiting_task_is_task_cancelled(per_task) -> None:
    running = per_task.submit("faults", FaultRequest("sleep", seconds=60))
    waiting = per_task.submit("faults", FaultRequest("ok"))
    assert per_task.cancel(waiting)
    with pytest.raises(TaskCancelled):
        waiting.result(timeout=HANG_S)
    assert per_task.cancel(Future()) is False
    assert wait_for(lambda: running in per_task._running)  # handed to its own process
    assert per_task.cancel(running)
    with pytest.raises(TaskCancelled):
        running.result(timeout=30)


def test_per_task_shutdown_fails_waiting_tasks_with_task_cancelled(per_task) -> None:
    per_task.submit("faults", FaultRequest("sleep", seconds=60))
    waiting = per_task.submit("faults", FaultRequest("ok"))
    per_task.shutdown()
    with pytest.raises(TaskCancelled):
        waiting.result(timeout=HANG_S)
