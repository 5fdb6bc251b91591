"""What the parent's death or shutdown leaves behind: nothing, whichever way it ends."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from isoscribe.isolation import transport

PARENT_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    import numpy as np
    from isoscribe.cli.signals import install_stop_signals
    from isoscribe.isolation import StageSpec, WorkerPool
    from isoscribe.stages.faults import FaultRequest

    mode = sys.argv[1]
    if mode == "sigterm":
        install_stop_signals()
    pool = WorkerPool(StageSpec("isoscribe.stages.faults"), size=2)
    pool.wait_ready(60)
    pool.run(FaultRequest("ok", payload=np.ones(2**18)))
    busy = pool.submit(FaultRequest("hang"))
    while pool.stats().busy < 1:
        time.sleep(0.01)
    print(" ".join(str(pid) for pid in pool.worker_pids()), pool._supervisor.tmpdir, flush=True)
    if mode == "exit":
        sys.exit(0)  # no shutdown call: atexit must clean up
    time.sleep(600)
    """
)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _start_parent(mode: str) -> tuple[subprocess.Popen, list[int], str]:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT_SCRIPT, mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    line = parent.stdout.readline().split()
    assert line, parent.stderr.read()
    *pids, tmpdir = line
    return parent, [int(pid) for pid in pids], tmpdir


def _assert_nothing_left(parent_pid: int, worker_pids: list[int], tmpdir: str) -> None:
    """Called once the parent has exited: its shutdown killed and reaped the workers before that."""
    assert [pid for pid in worker_pids if not _gone(pid)] == []
    assert glob.glob(f"/dev/shm/isoscribe-{parent_pid}-*") == []
    assert not os.path.exists(tmpdir)


def test_kill_9_of_the_parent_takes_its_workers():
    """The kernel kills them (PR_SET_PDEATHSIG); how soon is measured by bench isolation, kill_latency."""
    parent, worker_pids, tmpdir = _start_parent("sleep")
    assert len(worker_pids) == 2 and all(not _gone(pid) for pid in worker_pids)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 60  # only a bound on a hang: they go at once, or never
    while time.monotonic() < deadline and not all(_gone(pid) for pid in worker_pids):
        time.sleep(0.02)
    assert [pid for pid in worker_pids if not _gone(pid)] == []
    transport.sweep_stale()  # nobody could clean up after a SIGKILL: the next pool sweeps what dead owners left
    assert not os.path.exists(tmpdir)
    assert glob.glob(f"/dev/shm/isoscribe-{parent.pid}-*") == []


@pytest.mark.parametrize(("mode", "sig"), [("sigterm", signal.SIGTERM), ("sleep", signal.SIGINT)])
def test_sigterm_and_ctrl_c_shut_the_pool_down_cleanly(mode: str, sig: int):
    parent, worker_pids, tmpdir = _start_parent(mode)
    parent.send_signal(sig)
    parent.wait(timeout=30)
    _assert_nothing_left(parent.pid, worker_pids, tmpdir)


def test_normal_exit_without_shutdown_cleans_up_through_atexit():
    parent, worker_pids, tmpdir = _start_parent("exit")
    assert parent.wait(timeout=30) == 0
    _assert_nothing_left(parent.pid, worker_pids, tmpdir)
