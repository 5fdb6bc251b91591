"""The worker process: load a stage's model once, then run the tasks its parent sends until told to stop.

Runs in a fresh interpreter (``python -c "…worker import main; main()" FD``) or a forkserver child.
Before loading anything it makes itself safe to kill and sure to die with its parent: its own
session (a timeout kills the whole process group), ``oom_score_adj`` 1000 (the kernel picks it, not
the parent), ``PR_SET_PDEATHSIG`` SIGKILL, and a thread that kills the group once the parent is gone.

Messages are the dataclasses of protocol.py over a ``multiprocessing.connection`` pipe.

A stage whose ``run`` takes a third argument gets ``emit``: a function that sends one picklable
object to whoever submitted the task (progress, partial results) while the task is still running.
"""

from __future__ import annotations

import ctypes
import faulthandler
import importlib
import inspect
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from isoscribe.isolation import protocol, transport
from isoscribe.isolation.types import StageSpec

__all__ = ["WorkerInit", "main", "serve"]

_PR_SET_PDEATHSIG = 1
_PARENT_CHECK_S = 0.2


@dataclass(frozen=True)
class WorkerInit:
    stage: StageSpec
    segment_prefix: str
    """Name prefix for the shared-memory segments of large arrays in results."""
    redirect_output_to: str | None = None
    """File for stdout and stderr, where the launcher could not redirect them itself (forkserver)."""


def main() -> None:
    """Entry point of a spawned worker: ``sys.argv[1:3]`` are its end of the pipe (fd) and the parent pid."""
    conn = Connection(int(sys.argv[1]))
    parent_pid = int(sys.argv[2])
    sys.path[:] = conn.recv()
    init: WorkerInit = conn.recv()
    sys.exit(serve(conn, init, parent_pid))


def forkserver_main(conn: Connection, init: WorkerInit) -> None:
    """Entry point of a worker started by multiprocessing's forkserver."""
    sys.exit(serve(conn, init, os.getppid()))


def serve(conn: Connection, init: WorkerInit, parent_pid: int) -> int:
    _become_worker(init, parent_pid)
    _keep_pipe_to_self(conn.fileno())
    started = time.monotonic()
    try:
        module = importlib.import_module(init.stage.module)
        model = module.load(init.stage.config)
    except Exception as exc:
        conn.send(protocol.LoadFailed(type(exc).__name__, _message(exc), traceback.format_exc()))
        return 1
    conn.send(protocol.Ready(time.monotonic() - started))
    emits = _takes_emit(module.run)
    outbox = _Outbox(conn, init.segment_prefix)
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return 0
        if isinstance(message, protocol.Stop):
            return 0
        emit = outbox.emitter(message.task_id) if emits else None
        outbox.finish(_run_task(module, model, message, init.segment_prefix, emit))


def _takes_emit(run: Any) -> bool:
    parameters = inspect.signature(run).parameters.values()
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 3 or any(p.kind == p.VAR_POSITIONAL for p in parameters)


class _Outbox:
    """The one way out of the worker once it is ready: the pipe takes one message at a time, and a
    stage may emit from its own threads, even after ``run`` returned; such late events go nowhere."""

    def __init__(self, conn: Connection, segment_prefix: str) -> None:
        self._conn = conn
        self._segment_prefix = segment_prefix
        self._lock = threading.Lock()
        self._open_task: int | None = None

    def emitter(self, task_id: int) -> Any:
        self._open_task = task_id

        def emit(event: Any) -> None:
            payload, segments = transport.dumps(event, self._segment_prefix)
            with self._lock:
                if self._open_task == task_id:
                    self._conn.send(protocol.Emitted(task_id, payload))
                    return
            transport.unlink_segments(segments)

        return emit

    def finish(self, message: protocol.TaskDone | protocol.TaskFailed) -> None:
        with self._lock:
            self._open_task = None
            self._conn.send(message)


def _run_task(
    module: Any, model: Any, task: protocol.RunTask, segment_prefix: str, emit: Any = None
) -> protocol.TaskDone | protocol.TaskFailed:
    _reset_peak_rss()
    try:
        request = transport.loads(task.payload)
        value = module.run(model, request) if emit is None else module.run(model, request, emit)
        del request
        result, _ = transport.dumps(value, segment_prefix)
    except Exception as exc:
        return protocol.TaskFailed(
            type(exc).__name__, _message(exc), traceback.format_exc(), task_id=task.task_id, peak_rss_mb=_peak_rss_mb()
        )
    return protocol.TaskDone(task.task_id, result, _peak_rss_mb())


def _message(exc: BaseException) -> str:
    """``str(exc)``, or a stand-in when the stage's exception cannot say it (the worker must not die of it)."""
    try:
        return str(exc)
    except Exception:
        return f"<{type(exc).__name__}: str() failed>"


def _become_worker(init: WorkerInit, parent_pid: int) -> None:
    if init.redirect_output_to is not None:
        _redirect_output(init.redirect_output_to)
    if os.getpgid(0) != os.getpid():
        os.setsid()
    faulthandler.enable(all_threads=True)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _raise_oom_score()
    _die_with_parent(parent_pid)


def _keep_pipe_to_self(pipe_fd: int) -> None:
    """No descendant of the stage holds the pipe: a copy held elsewhere would keep the parent waiting
    for the rest of a message this worker died while sending. An exec drops it (not inheritable); a
    fork without exec gets /dev/null in its place, so the fd number stays valid for it to close."""
    os.set_inheritable(pipe_fd, False)

    def drop_pipe() -> None:
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, pipe_fd, inheritable=False)
        os.close(devnull)

    os.register_at_fork(after_in_child=drop_pipe)


def _redirect_output(path: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _raise_oom_score() -> None:
    try:
        with open("/proc/self/oom_score_adj", "w") as handle:
            handle.write("1000")
    except OSError:
        pass


def _die_with_parent(parent_pid: int) -> None:
    """SIGKILL from the kernel when the parent dies, and a watchdog thread in case that never fires.

    PR_SET_PDEATHSIG fires when the parent *thread* that started us exits; the pool starts its
    workers from its manager thread, which outlives them. The watchdog covers a forkserver parent and
    kernels without prctl, and kills the whole process group so children of the stage go too.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:
        os.killpg(0, signal.SIGKILL)
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="parent-watch", daemon=True).start()


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(_PARENT_CHECK_S)
    os.killpg(0, signal.SIGKILL)


def _reset_peak_rss() -> None:
    """Reset the kernel's high-water mark (VmHWM) so the next read is this task's peak."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


def _peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0
