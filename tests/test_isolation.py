"""The isolation runtime with real worker processes and real signals, driven by the fault-injection stage."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import Future

import numpy as np
import psutil
import pytest

from isoscribe.isolation import (
    Limits,
    StageError,
    StageOutOfMemory,
    StageSpec,
    StageTimeout,
    TaskCancelled,
    WorkerCrashed,
    WorkerPool,
    run_isolated,
)
from isoscribe.isolation import protocol
from isoscribe.isolation.monitor import GpuMonitor, tree_memory
from isoscribe.isolation.transport import LARGE_ARRAY_BYTES
from isoscribe.stages.faults import FaultConfig, FaultRequest
from isolation_support import FAULTS, HANG_S, wait_for


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def _children() -> set[int]:
    """Our live child processes; other suites may legitimately keep some (redis-server, a forkserver)."""
    return {child.pid for child in psutil.Process().children(recursive=True) if not _is_zombie_or_gone(child.pid)}


def _our_segments() -> list[str]:
    return glob.glob(f"/dev/shm/isoscribe-{os.getpid()}-*")


@pytest.fixture
def pool():
    with WorkerPool(FAULTS, size=1, limits=Limits(timeout_s=30)) as pool:
        yield pool


def test_run_isolated_returns_value_from_a_fresh_process_and_leaves_none_behind():
    before = _children()
    first = run_isolated(FAULTS, FaultRequest("ok", payload={"a": 1}))
    second = run_isolated(FAULTS, FaultRequest("ok", payload="b"))
    assert first.value == {"a": 1} and second.value == "b"
    assert first.stats.worker_pid != second.stats.worker_pid != os.getpid()
    assert first.stats.worker_task_number == 1
    assert _is_zombie_or_gone(first.stats.worker_pid)
    assert _children() <= before


def _is_zombie_or_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_run_isolated_reports_a_crash():
    before = _children()
    with pytest.raises(WorkerCrashed) as caught:
        run_isolated(FAULTS, FaultRequest("exit", exit_code=7))
    assert caught.value.exit_code == 7 and caught.value.signal is None
    assert _children() <= before


def test_pool_reuses_a_warm_worker_and_reports_stats(pool):
    first = pool.run(FaultRequest("ok", payload=1))
    second = pool.run(FaultRequest("ok", payload=2))
    assert (first.value, second.value) == (1, 2)
    assert first.stats.worker_pid == second.stats.worker_pid
    assert second.stats.worker_task_number == 2
    assert second.stats.peak_rss_mb > 5 and second.stats.wall_s >= 0
    if not GpuMonitor().available:  # no NVML (no driver or no GPU): GPU memory is unknown, not zero
        assert second.stats.peak_gpu_mb is None
    stats = pool.stats()
    assert stats.tasks_completed == 2 and stats.queue_depth == 0 and stats.crashes == 0
    assert [(w.pid, w.tasks_done, w.state) for w in stats.workers] == [(first.stats.worker_pid, 2, "idle")]
    assert stats.workers[0].rss_mb > 5


def test_segfault_is_worker_crashed_with_sigsegv_and_the_next_call_succeeds(pool):
    with pytest.raises(WorkerCrashed) as caught:
        pool.run(FaultRequest("segfault"))
    assert caught.value.signal == signal.SIGSEGV
    assert "Segmentation fault" in caught.value.stderr_tail
    assert pool.run(FaultRequest("ok", payload="after")).value == "after"
    assert pool.exits[0].reason == f"signal {signal.SIGSEGV}"
    assert pool.stats().crashes == 1


def test_abort_is_worker_crashed_with_sigabrt_and_the_pool_heals(pool):
    with pytest.raises(WorkerCrashed) as caught:
        pool.run(FaultRequest("abort"))
    assert caught.value.signal == signal.SIGABRT
    assert pool.run(FaultRequest("ok", payload=1)).value == 1


def test_hang_is_stage_timeout_and_its_worker_is_killed_for_it():
    pool = WorkerPool(FAULTS, limits=Limits(timeout_s=1.0))
    pool.run(FaultRequest("ok"))
    with pytest.raises(StageTimeout) as caught:
        pool.run(FaultRequest("hang"))  # how soon after the timeout: bench isolation, kill_latency
    assert caught.value.timeout_s == 1.0
    assert pool.exits[-1].reason == "timeout" and not pool.exits[-1].likely_oom_kill
    assert pool.run(FaultRequest("ok", payload=1)).value == 1
    pool.shutdown()


def test_timeout_kills_the_workers_whole_process_group():
    with WorkerPool(FAULTS, limits=Limits(timeout_s=2.0)) as pool:
        child_pid = pool.run(FaultRequest("spawn_child")).value
        assert psutil.pid_exists(child_pid)
        with pytest.raises(StageTimeout):
            pool.run(FaultRequest("hang"))
        assert wait_for(lambda: _is_zombie_or_gone(child_pid))


@pytest.mark.parametrize("ending", ["retired", "shut down"])
def test_what_a_stage_started_dies_with_its_worker_however_it_ends(ending: str):
    pool = WorkerPool(FAULTS, size=1, max_tasks_per_worker=1 if ending == "retired" else None)
    try:
        child_pid = pool.run(FaultRequest("spawn_child")).value
        if ending == "retired":
            assert pool.run(FaultRequest("ok", payload=1)).value == 1  # on the next worker: the first has exited
    finally:
        pool.shutdown()
    assert wait_for(lambda: _is_zombie_or_gone(child_pid))


def test_exception_in_stage_is_stage_error_with_traceback(pool):
    with pytest.raises(StageError) as caught:
        pool.run(FaultRequest("raise", payload="boom"))
    error = caught.value
    assert error.exc_type == "RuntimeError" and "boom" in error.message
    assert "Traceback" in error.traceback_text and "faults.py" in error.traceback_text
    assert pool.run(FaultRequest("ok", payload=1)).stats.worker_task_number == 2  # same worker carries on


def test_an_exception_that_cannot_be_said_is_still_a_stage_error(pool):
    with pytest.raises(StageError) as caught:
        pool.run(FaultRequest("raise_unsayable"))
    assert caught.value.exc_type == "_Unsayable"
    assert pool.run(FaultRequest("ok", payload=1)).stats.worker_task_number == 2  # no crash, no model reload


def test_allocation_past_the_hard_cap_is_stage_out_of_memory():
    pool = WorkerPool(FAULTS, limits=Limits(hard_rss_mb=400))
    with pytest.raises(StageOutOfMemory) as caught:
        pool.run(FaultRequest("alloc", mb=600, seconds=10))
    assert caught.value.limit_mb == 400 and caught.value.peak_rss_mb > 400
    assert pool.exits[-1].reason == "oom_guard"
    assert pool.run(FaultRequest("ok", payload=1)).value == 1
    pool.shutdown()


def test_external_sigkill_is_flagged_as_likely_oom_kill(pool):
    pid = pool.run(FaultRequest("ok")).stats.worker_pid
    future = pool.submit(FaultRequest("sleep", seconds=5))
    assert wait_for(lambda: pool.stats().busy == 1)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(WorkerCrashed) as caught:
        future.result(timeout=HANG_S)
    assert caught.value.signal == signal.SIGKILL
    assert pool.exits[-1].likely_oom_kill and pool.stats().likely_oom_kills == 1
    assert pool.run(FaultRequest("ok", payload=1)).value == 1


def test_a_crash_fails_only_its_own_task_concurrent_task_survives():
    with WorkerPool(FAULTS, size=2) as pool:
        assert pool.wait_ready(30)
        survivor = pool.submit(FaultRequest("sleep", seconds=1.0, payload="intact"))
        crasher = pool.submit(FaultRequest("segfault"))
        with pytest.raises(WorkerCrashed):
            crasher.result(timeout=HANG_S)
        assert survivor.result(timeout=HANG_S).value == "intact"
        assert survivor.result().stats.worker_pid != pool.exits[0].pid
        assert wait_for(lambda: pool.stats().idle == 2)


def test_worker_over_max_rss_is_replaced_and_the_call_in_flight_returns():
    with WorkerPool(FAULTS, max_rss_mb=150) as pool:
        first = pool.run(FaultRequest("leak", mb=200, payload="in flight"))
        assert first.value == "in flight" and first.stats.peak_rss_mb > 200
        second = pool.run(FaultRequest("ok", payload=2))
        assert second.stats.worker_pid != first.stats.worker_pid
        assert [(e.pid, e.reason, e.tasks_done) for e in pool.exits] == [(first.stats.worker_pid, "rss_cap", 1)]
        assert pool.exits[0].peak_rss_mb > 200


def test_max_tasks_recycles_and_starts_the_replacement_ahead():
    with WorkerPool(FAULTS, max_tasks_per_worker=2) as pool:
        assert pool.wait_ready(30)
        pids = [pool.run(FaultRequest("ok")).stats.worker_pid for _ in range(5)]
        assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4]
        assert wait_for(lambda: len(pool.exits) == 2)
        assert [(e.reason, e.tasks_done) for e in pool.exits] == [("max_tasks", 2), ("max_tasks", 2)]
        assert pool.stats().exits_by_reason == {"max_tasks": 2}


def test_replacement_loads_while_the_retiring_worker_runs_its_last_task():
    slow_load = StageSpec("isoscribe.stages.faults", FaultConfig(load_s=0.5))
    with WorkerPool(slow_load, max_tasks_per_worker=1) as pool:
        assert pool.wait_ready(30)
        last = pool.submit(FaultRequest("sleep", seconds=1.5))
        assert wait_for(lambda: pool.stats().busy == 1)
        assert wait_for(lambda: len(pool.stats().workers) == 2)  # started before the last task ended
        states = sorted(worker.state for worker in pool.stats().workers)
        assert states in (["busy", "starting"], ["busy", "idle"])
        assert last.result(timeout=30).stats.worker_task_number == 1
        assert pool.stats().workers_started == 2


def test_workers_lead_their_own_session_and_offer_themselves_to_the_oom_killer(pool):
    pid = pool.run(FaultRequest("ok")).stats.worker_pid
    assert os.getpgid(pid) == pid != os.getpgid(0)
    with open(f"/proc/{pid}/oom_score_adj") as handle:
        assert int(handle.read()) == 1000


def test_idle_ttl_recycles_a_worker():
    with WorkerPool(FAULTS, idle_ttl_s=0.3) as pool:
        pid = pool.run(FaultRequest("ok")).stats.worker_pid
        assert wait_for(lambda: any(e.reason == "idle" for e in pool.exits))
        assert pool.exits[0].pid == pid
        assert pool.run(FaultRequest("ok")).stats.worker_pid != pid


def test_parent_rss_stays_flat_while_the_stage_leaks_50_mb_per_call():
    with WorkerPool(FAULTS, max_rss_mb=300) as pool:
        pool.run(FaultRequest("ok"))
        before_mb = _rss_mb()
        for _ in range(50):
            pool.run(FaultRequest("leak", mb=50))
        growth_mb = _rss_mb() - before_mb
        assert growth_mb < 20, f"parent grew {growth_mb:.1f} MB"
        assert pool.stats().exits_by_reason["rss_cap"] >= 8


def test_large_array_crosses_by_shared_memory_and_leaves_no_segment(pool):
    array = np.random.default_rng(0).standard_normal(10 * 2**20 // 8)
    result = pool.run(FaultRequest("ok", payload={"audio": array, "note": "x"}))
    np.testing.assert_array_equal(result.value["audio"], array)
    assert _our_segments() == []


def test_cancel_a_queued_task_and_a_running_one(pool):
    running = pool.submit(FaultRequest("sleep", seconds=30))
    queued = pool.submit(FaultRequest("ok"))
    assert wait_for(lambda: pool.stats().busy == 1)
    assert pool.stats().queue_depth == 1
    assert pool.cancel(queued)
    with pytest.raises(TaskCancelled):
        queued.result(timeout=HANG_S)
    assert pool.cancel(running)
    with pytest.raises(TaskCancelled):
        running.result(timeout=HANG_S)
    assert pool.exits[-1].reason == "cancelled"
    assert pool.run(FaultRequest("ok", payload=1)).value == 1


def test_load_failure_fails_the_task_with_the_load_traceback():
    with WorkerPool(StageSpec("isoscribe.stages.faults", FaultConfig(fail=True)), prespawn=False) as pool:
        with pytest.raises(StageError) as caught:
            pool.run(FaultRequest("ok"))
        assert "injected load failure" in caught.value.traceback_text
        assert pool.exits[0].reason == "load_error"


def test_load_timeout_kills_a_worker_stuck_loading():
    slow = StageSpec("isoscribe.stages.faults", FaultConfig(load_s=60))
    with WorkerPool(slow, prespawn=False, limits=Limits(load_timeout_s=0.5)) as pool:
        with pytest.raises(StageTimeout) as caught:
            pool.run(FaultRequest("ok"))
        assert "load" in caught.value.detail
        assert pool.exits[0].reason == "load_timeout"


def test_shutdown_leaves_no_process_segment_or_temp_dir():
    before = _children()
    pool = WorkerPool(FAULTS, size=2, limits=Limits(timeout_s=30))
    assert pool.wait_ready(30)
    pool.run(FaultRequest("ok", payload=np.ones(2**20)))
    busy = pool.submit(FaultRequest("hang"))
    assert wait_for(lambda: pool.stats().busy == 1)
    pool.shutdown(kill_running=True)
    with pytest.raises(TaskCancelled):
        busy.result(timeout=HANG_S)
    assert _children() <= before
    assert not set(pool.worker_pids())
    assert _our_segments() == []
    assert glob.glob(os.path.join(os.path.dirname(pool._supervisor.tmpdir), f"isoscribe-{os.getpid()}-*")) == []
    with pytest.raises(RuntimeError):
        pool.submit(FaultRequest("ok"))


_FORKING_PARENT = """
import os, sys, time
held = b"x" * (300 * 2**20)
for extra_mb in (0, 200):
    if os.fork() == 0:
        mine = b"y" * (extra_mb * 2**20)
        open(os.path.join(sys.argv[1], str(os.getpid())), "w").close()
        time.sleep(60)
        os._exit(0)
time.sleep(60)
"""


def test_tree_memory_counts_a_forked_child_by_what_it_holds_above_its_parent(tmp_path):
    # A forked child maps its parent's pages until it execs (a forkserver worker never does): the
    # tree holds the parent's 300 MB once, plus the 200 MB one child allocated after the fork.
    parent = subprocess.Popen([sys.executable, "-c", _FORKING_PARENT, str(tmp_path)])
    try:
        assert wait_for(lambda: len(list(tmp_path.iterdir())) == 2)
        parent_mb = psutil.Process(parent.pid).memory_info().rss / 2**20
        memory = tree_memory(parent.pid)
        assert parent_mb >= 300
        assert parent_mb + 170 <= memory.rss_mb <= parent_mb + 260, (memory, parent_mb)
        assert 400 <= memory.anon_mb <= parent_mb + 260, memory
    finally:
        for child in psutil.Process(parent.pid).children():
            child.kill()
        parent.kill()
        parent.wait()


def test_forkserver_start_method_runs_and_reports_crashes():
    with WorkerPool(FAULTS, start_method="forkserver") as pool:
        assert pool.run(FaultRequest("ok", payload=3)).value == 3
        with pytest.raises(WorkerCrashed) as caught:
            pool.run(FaultRequest("segfault"))
        assert caught.value.signal == signal.SIGSEGV
        assert pool.run(FaultRequest("ok", payload=4)).value == 4


def _modules_loaded(code: str, names: set[str]) -> list[str]:
    """Which of ``names`` a fresh interpreter has imported after running ``code``."""
    code += f"\nimport json, sys\nprint(json.dumps(sorted(set({sorted(names)!r}) & set(sys.modules))))\n"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(output.stdout.strip().splitlines()[-1])


def test_the_runtime_never_imports_gpu_frameworks_in_the_parent():
    code = (
        "from isoscribe.isolation import StageSpec, WorkerPool, run_isolated\n"
        "from isoscribe.stages.faults import FaultRequest\n"
        "run_isolated(StageSpec('isoscribe.stages.faults'), FaultRequest('ok'))\n"
        "with WorkerPool(StageSpec('isoscribe.stages.faults')) as pool: pool.run(FaultRequest('ok'))\n"
    )
    assert _modules_loaded(code, {"torch", "ctranslate2", "tensorflow", "jax"}) == []


def test_a_worker_starts_without_the_parent_side_machinery():
    parent_side = {"psutil", "isoscribe.isolation.pool", "isoscribe.isolation.supervisor"}
    assert _modules_loaded("import isoscribe.isolation.worker", parent_side) == []


def test_submitting_from_many_threads():
    with WorkerPool(FAULTS, size=2) as pool:
        results: list[int] = []

        def client(index: int) -> None:
            results.append(pool.run(FaultRequest("ok", payload=index)).value)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(results) == list(range(20))


def test_events_reach_the_caller_in_order_before_the_result(pool: WorkerPool) -> None:
    received: list = []
    future = pool.submit(FaultRequest("emit", payload=[1, "two", {"three": 3}]), on_event=received.append)
    assert future.result(timeout=30).value == 3
    assert received == [1, "two", {"three": 3}]


def test_events_sent_before_a_crash_still_arrive_and_the_crash_is_reported(pool: WorkerPool) -> None:
    received: list = []
    future = pool.submit(FaultRequest("emit_then_crash", payload=["a", "b"]), on_event=received.append)
    with pytest.raises(WorkerCrashed):
        future.result(timeout=30)
    assert received == ["a", "b"]


def test_a_failing_event_listener_does_not_fail_the_task(pool: WorkerPool) -> None:
    def listener(event: object) -> None:
        raise RuntimeError("listener bug")

    assert pool.submit(FaultRequest("emit", payload=[1, 2]), on_event=listener).result(timeout=30).value == 2


def test_large_arrays_emitted_to_nobody_leave_no_shared_memory_behind(pool: WorkerPool) -> None:
    arrays = [np.ones(LARGE_ARRAY_BYTES // 4, np.float64) for _ in range(3)]
    assert pool.submit(FaultRequest("emit", payload=arrays)).result(timeout=30).value == 3
    assert glob.glob(f"/dev/shm/{pool.segment_prefix}*") == [], "the worker is alive, its segments must be gone"


def test_a_callback_that_raises_system_exit_does_not_stop_the_pool(pool: WorkerPool) -> None:
    future = pool.submit(FaultRequest("ok", payload=1))
    future.add_done_callback(lambda done: sys.exit("a caller's bug"))
    assert future.result(timeout=30).value == 1
    assert pool.submit(FaultRequest("ok", payload=2)).result(timeout=30).value == 2


def test_run_isolated_passes_events_on() -> None:
    received: list = []
    result = run_isolated(FAULTS, FaultRequest("emit", payload=["x"]), Limits(timeout_s=30), on_event=received.append)
    assert result.value == 1 and received == ["x"]


def _crashing_loads(tmp_path, crashes: int) -> StageSpec:
    return StageSpec("isoscribe.stages.faults", FaultConfig(crash_loads=crashes, load_count_file=str(tmp_path / "loads")))


def test_a_load_killed_once_is_retried_and_the_queued_tasks_run(tmp_path):
    with WorkerPool(_crashing_loads(tmp_path, 1), prespawn=False, limits=Limits(timeout_s=30)) as pool:
        futures = [pool.submit(FaultRequest("ok", payload=n)) for n in range(3)]
        assert [future.result(timeout=60).value for future in futures] == [0, 1, 2]
        assert [exit.reason for exit in pool.exits] == ["signal 9"]
        assert pool.exits[0].likely_oom_kill


def test_consecutive_load_failures_fail_the_queue_then_a_later_load_recovers(tmp_path):
    with WorkerPool(_crashing_loads(tmp_path, 3), prespawn=False, load_attempts=3) as pool:
        futures = [pool.submit(FaultRequest("ok", payload=n)) for n in range(2)]
        for future in futures:
            with pytest.raises(WorkerCrashed) as caught:
                future.result(timeout=60)
            assert caught.value.signal == signal.SIGKILL and "loading" in caught.value.detail
        assert pool.stats().workers_started == 3
        assert pool.run(FaultRequest("ok", payload="back")).value == "back"


def test_shutdown_twice_and_calls_after_it_never_touch_a_reused_descriptor():
    pool = WorkerPool(FAULTS, prespawn=False)
    pool.shutdown()
    read_end, write_end = os.pipe()  # likely to reuse the pool's closed wake-pipe numbers
    os.set_blocking(read_end, False)
    try:
        pool.shutdown()
        assert pool.cancel(Future()) is False  # not this pool's
        with pytest.raises(RuntimeError, match="shut down"):
            pool.submit(FaultRequest("ok"))
        with pytest.raises(BlockingIOError):
            os.read(read_end, 1)
    finally:
        os.close(read_end)
        os.close(write_end)


class _StalledConnection:
    """Stands in for a worker's pipe on which receiving a message, or sending a task, takes until
    ``release`` is set."""

    def __init__(self, conn, stalls: str) -> None:
        self._conn, self._stalls = conn, stalls
        self.stalled, self.release = threading.Event(), threading.Event()

    def recv(self):
        if self._stalls == "receive":
            self._stall()
        return self._conn.recv()

    def send(self, message) -> None:
        if self._stalls == "send" and isinstance(message, protocol.RunTask):
            self._stall()
        self._conn.send(message)

    def _stall(self) -> None:
        self.stalled.set()
        self.release.wait(30)

    def __getattr__(self, name):
        return getattr(self._conn, name)


@pytest.mark.parametrize("stalls", ["receive", "send"])
def test_stats_and_submit_do_not_wait_while_the_supervisor_talks_to_a_worker(pool, stalls):
    pool.run(FaultRequest("ok"))
    [worker] = pool._supervisor.state.workers
    stalled = worker.process.conn = _StalledConnection(worker.process.conn, stalls)
    running = pool.submit(FaultRequest("ok", payload="slow"))
    assert stalled.stalled.wait(10)
    answered = threading.Event()
    caller = threading.Thread(target=lambda: (pool.stats(), pool.submit(FaultRequest("ok")), answered.set()))
    caller.start()
    try:
        assert answered.wait(10), f"stats() or submit() waited for the supervisor to {stalls}"
    finally:
        stalled.release.set()
    caller.join(10)
    assert running.result(timeout=30).value == "slow"
