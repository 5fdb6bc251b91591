"""Fault-injection stage — for tests and benchmarks of the isolation runtime only, never for real work.

It misbehaves on request the way native model code does: leaks native memory that Python's garbage
collector cannot see, segfaults, aborts, hangs, raises, allocates past a memory cap, or exits.

Actions of a ``FaultRequest``:
``ok`` echo ``payload``; ``sleep`` wait ``seconds`` then echo; ``leak`` malloc ``mb`` MB with ctypes,
touch every page and never free it; ``alloc`` malloc and touch ``mb`` MB, hold it ``seconds``, free it;
``segfault``; ``abort``; ``hang`` (forever); ``raise`` (RuntimeError); ``raise_unsayable`` (an exception whose
``str`` raises); ``exit`` (``os._exit(exit_code)``);
``spawn_child`` start a ``sleep`` child process (to check that a group kill takes it too) and return its pid;
``emit`` send each item of ``payload`` as an event, then return how many; ``emit_then_crash`` send them, then segfault;
``emit_late`` return ``payload`` while a thread of the stage sends ``mb`` events of 100 kB (some after ``run`` returned);
``map_file`` map the file at ``payload`` read-only, read every page (file-backed memory, as a mmapped GGUF), hold it ``seconds``;
``die_while_sending`` start two children that keep every fd they may (one forked, one exec'd without closing fds),
return ``mb`` MB and SIGKILL the worker once it starts sending that result.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any

__all__ = ["FaultConfig", "FaultRequest", "load", "run", "leak_native", "ACTIONS"]

ACTIONS = (
    "ok", "sleep", "leak", "alloc", "segfault", "abort", "hang", "raise", "raise_unsayable", "exit", "spawn_child", "emit",
    "emit_then_crash", "emit_late", "map_file", "die_while_sending",
)
_MB = 1024 * 1024
_libc = ctypes.CDLL(None)
_libc.malloc.restype = ctypes.c_void_p
_libc.malloc.argtypes = [ctypes.c_size_t]
_libc.free.argtypes = [ctypes.c_void_p]


@dataclass(frozen=True)
class FaultConfig:
    """What ``load`` does: leak ``leak_mb`` like a model's weights, take ``load_s``, or fail: raise
    (``fail``), or be SIGKILLed like an OOM kill on the first ``crash_loads`` loads, counted in
    ``load_count_file``."""

    leak_mb: int = 0
    load_s: float = 0.0
    fail: bool = False
    crash_loads: int = 0
    load_count_file: str | None = None


@dataclass(frozen=True)
class FaultRequest:
    action: str
    mb: int = 0
    seconds: float = 0.0
    payload: Any = None
    exit_code: int = 3


def load(config: Any) -> dict[str, Any]:
    """``config`` may be a FaultConfig; anything else (e.g. Settings) means a plain, instant load."""
    if isinstance(config, FaultConfig):
        if config.fail:
            raise RuntimeError("injected load failure")
        if config.load_count_file is not None and _count_load(config.load_count_file) <= config.crash_loads:
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(config.load_s)
        leak_native(config.leak_mb)
    return {"pid": os.getpid()}


class _Unsayable(Exception):
    def __str__(self) -> str:
        raise ValueError("this exception cannot be said")


def _count_load(path: str) -> int:
    """This load's number, 1 for the first, kept in the file at ``path``."""
    with open(path, "a+", encoding="ascii") as counter:
        counter.seek(0)
        number = len(counter.read()) + 1
        counter.write("x")
    return number


def run(model: dict[str, Any], request: FaultRequest, emit: Callable[[Any], None] | None = None) -> Any:
    action = request.action
    if action in ("emit", "emit_then_crash"):
        for item in request.payload:
            emit(item)
        if action == "emit":
            return len(request.payload)
        ctypes.string_at(0)
    if action == "emit_late":
        return _emit_from_a_thread(emit, request.mb, request.payload)
    if action == "map_file":
        return _read_mapped(request.payload, request.seconds)
    if action == "die_while_sending":
        return _die_while_sending(request.mb)
    if action == "ok":
        return request.payload
    if action == "sleep":
        time.sleep(request.seconds)
        return request.payload
    if action == "leak":
        leak_native(request.mb)
        return request.payload
    if action == "alloc":
        address = leak_native(request.mb)
        time.sleep(request.seconds)
        _libc.free(address)
        return request.payload
    if action == "segfault":
        ctypes.string_at(0)
    if action == "abort":
        os.abort()
    if action == "hang":
        while True:
            time.sleep(3600)
    if action == "raise":
        raise RuntimeError(f"injected failure: {request.payload!r}")
    if action == "raise_unsayable":
        raise _Unsayable()
    if action == "exit":
        os._exit(request.exit_code)
    if action == "spawn_child":
        return subprocess.Popen(["sleep", "600"]).pid
    raise ValueError(f"unknown fault action {action!r}; expected one of {ACTIONS}")


def _emit_from_a_thread(emit: Callable[[Any], None], count: int, payload: Any) -> Any:
    started = threading.Event()

    def send() -> None:
        started.set()
        for _ in range(count):
            emit(b"e" * 100_000)

    threading.Thread(target=send, daemon=True).start()
    started.wait()
    return payload


def _die_while_sending(mb: int) -> bytes:
    if os.fork() == 0:
        time.sleep(600)
        os._exit(0)
    subprocess.Popen(["sleep", "600"], close_fds=False)
    written_before = _bytes_written()

    def kill_once_sending() -> None:
        while _bytes_written() == written_before:  # the message header goes first, in its own write
            time.sleep(0.001)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=kill_once_sending, daemon=True).start()
    return b"r" * (mb * _MB)


def _bytes_written() -> int:
    with open("/proc/self/io") as io:
        return next(int(line.split()[1]) for line in io if line.startswith("wchar:"))


def _read_mapped(path: str, seconds: float) -> int:
    with open(path, "rb") as file:
        mapping = mmap.mmap(file.fileno(), 0, prot=mmap.PROT_READ)
    checksum = sum(mapping[offset] for offset in range(0, len(mapping), mmap.PAGESIZE))
    time.sleep(seconds)
    mapping.close()
    return checksum


def leak_native(mb: int) -> int | None:
    """malloc ``mb`` MB outside Python's heap and write every page, so it counts in RSS; never freed here."""
    if mb <= 0:
        return None
    size = mb * _MB
    address = _libc.malloc(size)
    if not address:
        raise MemoryError(f"malloc of {mb} MB failed")
    ctypes.memset(address, 1, size)
    return address
