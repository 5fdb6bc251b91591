"""Starting one worker process and holding its parent-side handle.

``spawn`` runs a fresh interpreter with ``subprocess`` rather than ``multiprocessing``'s spawn: the
same clean process, but its stdout/stderr go straight to a file (so a crash during start-up is
captured too), it starts in its own session with no window in which a group kill could miss it, it
does not re-import the parent's ``__main__``, and no resource-tracker process is left behind.
``forkserver`` uses ``multiprocessing``'s forkserver (its server process lives until the parent exits).
Plain fork is never used: a forked copy of a threaded parent can deadlock and would share its CUDA state.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
from multiprocessing.connection import Connection, Pipe
from typing import Any

from isoscribe.isolation import monitor
from isoscribe.isolation.worker import WorkerInit, forkserver_main

__all__ = ["START_METHODS", "WorkerProcess", "start_worker"]

START_METHODS = ("spawn", "forkserver")
_SPAWN_CODE = "from isoscribe.isolation.worker import main; main()"


class WorkerProcess:
    """Parent-side handle: pid, pipe, something ``connection.wait`` can wait on for its exit."""

    def __init__(self, pid: int, conn: Connection, output_path: str, handle: Any) -> None:
        self.pid = pid
        self.conn = conn
        self.output_path = output_path
        self._handle = handle
        self._pidfd: int | None = None
        if isinstance(handle, subprocess.Popen):
            try:
                self._pidfd = os.pidfd_open(pid)
            except (AttributeError, OSError):
                self._pidfd = None

    @property
    def sentinel(self) -> int | None:
        """Readable when the process has exited; None means poll() must be called instead."""
        if isinstance(self._handle, subprocess.Popen):
            return self._pidfd
        return self._handle.sentinel

    def poll(self) -> int | None:
        """Exit status once exited (negative: killed by that signal), reaping the process; else None."""
        if isinstance(self._handle, subprocess.Popen):
            return self._handle.poll()
        self._handle.join(0)
        return self._handle.exitcode

    def kill(self) -> None:
        monitor.kill_tree(self.pid)

    def wait_exit(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self) -> None:
        self.conn.close()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        if not isinstance(self._handle, subprocess.Popen):
            self._handle.close()

    def remove_output(self) -> None:
        try:
            os.unlink(self.output_path)
        except FileNotFoundError:
            pass

    def output_tail(self, max_bytes: int = 4096, max_lines: int = 40) -> str:
        """The end of what the worker wrote to stdout/stderr (tracebacks, faulthandler dumps)."""
        try:
            with open(self.output_path, "rb") as output:
                output.seek(0, os.SEEK_END)
                output.seek(max(0, output.tell() - max_bytes))
                text = output.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-max_lines:])


def start_worker(start_method: str, init: WorkerInit, output_path: str) -> WorkerProcess:
    if start_method == "spawn":
        return _spawn(init, output_path)
    if start_method == "forkserver":
        return _forkserver(init, output_path)
    raise ValueError(f"start_method must be one of {START_METHODS}, not {start_method!r}")


def _spawn(init: WorkerInit, output_path: str) -> WorkerProcess:
    parent_end, child_end = Pipe()
    try:
        with open(output_path, "ab") as output:
            popen = subprocess.Popen(
                [sys.executable, "-c", _SPAWN_CODE, str(child_end.fileno()), str(os.getpid())],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                pass_fds=(child_end.fileno(),),
                start_new_session=True,
            )
    except BaseException:
        parent_end.close()
        raise
    finally:
        child_end.close()
    parent_end.send(list(sys.path))
    parent_end.send(init)
    return WorkerProcess(popen.pid, parent_end, output_path, popen)


def _forkserver(init: WorkerInit, output_path: str) -> WorkerProcess:
    context = multiprocessing.get_context("forkserver")
    parent_end, child_end = context.Pipe()
    redirected = WorkerInit(init.stage, init.segment_prefix, redirect_output_to=output_path)
    process = context.Process(target=forkserver_main, args=(child_end, redirected), name="isoscribe-worker")
    try:
        process.start()
    finally:
        child_end.close()
    return WorkerProcess(process.pid, parent_end, output_path, process)
