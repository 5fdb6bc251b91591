"""Measuring workers from the parent: memory of a process tree, GPU memory where NVML is present, and
what a worker's exit means.

NVML is a management library: querying it does not initialise CUDA in the parent.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass
from typing import Any

import psutil

__all__ = [
    "ExitCause",
    "GpuMonitor",
    "TreeMemory",
    "classify_exit",
    "gpu_total_mb",
    "kill_group",
    "kill_tree",
    "tree_memory",
    "tree_rss_mb",
]

_MB = 1024 * 1024
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TreeMemory:
    rss_mb: float
    """All resident pages of the tree, file-backed ones included (what ``ps`` shows)."""
    anon_mb: float
    """Anonymous pages only (RssAnon): what the tree's own allocations hold. A mmapped model file is
    file-backed page cache that the kernel can drop, so memory limits count this, not ``rss_mb``."""


def tree_memory(pid: int) -> TreeMemory | None:
    """Resident memory of a process and all its descendants; None when the process is gone.

    A child that has not exec'd since it was forked (a forkserver worker, or the instant between
    fork and exec of any launch) still maps its parent's pages; only what it holds above its parent
    is its own, so counting its whole VmRSS would count the parent twice.
    """
    try:
        members = [pid] + [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return None
    fields_by_pid = {member: _status_kb(member) for member in members}
    if fields_by_pid[pid] is None:
        return None
    stats = {member: _stat_fields(member) for member in members} if len(members) > 1 else {}
    rss_kb = anon_kb = 0
    for member in members:
        fields = fields_by_pid[member]
        if fields is None:
            continue
        rss, anon = fields.get("VmRSS", 0), fields.get("RssAnon", 0)
        parent_fields = fields_by_pid.get(_unexeced_parent(member, stats)) if member != pid else None
        if parent_fields is not None:
            rss = max(0, rss - parent_fields.get("VmRSS", 0))
            anon = max(0, anon - parent_fields.get("RssAnon", 0))
        rss_kb += rss
        anon_kb += anon
    return TreeMemory(rss_mb=rss_kb / 1024, anon_mb=anon_kb / 1024)


def tree_rss_mb(pid: int) -> float | None:
    """RSS of a process and all its descendants in MB; None when the process is gone."""
    memory = tree_memory(pid)
    return None if memory is None else memory.rss_mb


# Fields of /proc/PID/stat after the command name, counted from 0: state, ppid, …, startcode,
# endcode, startstack.
_PPID, _STARTCODE, _STARTSTACK = 1, 23, 25


def _unexeced_parent(pid: int, stats: dict[int, list[str] | None]) -> int | None:
    """The parent whose program image ``pid`` still runs (same command line and, where the kernel
    shows them, the same code and stack addresses, which exec randomises); None once it has exec'd.
    ``stats``: the /proc stat fields of the tree's members, read once per sample."""
    child_stat = stats.get(pid)
    if child_stat is None:
        return None
    parent = int(child_stat[_PPID])
    parent_stat = stats.get(parent)
    layout = slice(_STARTCODE, _STARTSTACK + 1)
    if parent_stat is None or child_stat[layout] != parent_stat[layout]:
        return None
    child_cmdline = _cmdline(pid)
    return parent if child_cmdline is not None and child_cmdline == _cmdline(parent) else None


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            text = stat.read()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def _cmdline(pid: int) -> bytes | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read()
    except OSError:
        return None


def _status_kb(pid: int) -> dict[str, int] | None:
    """The kB fields of /proc/PID/status (VmRSS, RssAnon …); None when the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            lines = status.read().splitlines()
    except OSError:
        return None
    fields = {}
    for line in lines:
        name, _, value = line.partition(":")
        if value.endswith(" kB"):
            fields[name] = int(value[:-3])
    return fields


@dataclass(frozen=True)
class ExitCause:
    reason: str
    """The runtime's own reason (max_tasks, timeout, cancelled …), load_error, or "signal N" / "exit N"."""
    crashed: bool
    """It died on its own, by a signal or a non-zero exit, whatever it was doing."""
    likely_oom_kill: bool
    """SIGKILL that the runtime did not send: most likely the kernel's OOM killer."""


def classify_exit(code: int, kill_reason: str | None, load_failed: bool, retire_reason: str | None) -> ExitCause:
    """Why a worker exited with ``code`` (negative: the signal), given what the runtime asked of it."""
    likely_oom_kill = code == -signal.SIGKILL and kill_reason is None
    if kill_reason is not None:
        return ExitCause(kill_reason, False, likely_oom_kill)
    if load_failed:
        return ExitCause("load_error", False, likely_oom_kill)
    if retire_reason is not None and code == 0:
        return ExitCause(retire_reason, False, likely_oom_kill)
    return ExitCause(f"signal {-code}" if code < 0 else f"exit {code}", True, likely_oom_kill)


def kill_group(pid: int) -> None:
    """SIGKILL what is left of the process group a worker led (it leads its own session); the group's
    id cannot be given to a new process while any member lives, so this never reaches a stranger."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def kill_tree(pid: int) -> None:
    """SIGKILL a worker's process group (it leads its own session) and any descendant that left it."""
    try:
        descendants = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        descendants = []
    kill_group(pid)
    for process in descendants:
        try:
            process.kill()
        except psutil.Error:
            pass
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class GpuMonitor:
    """Per-process GPU memory from NVML; ``used_mb`` is None where NVML cannot be initialised."""

    def __init__(self) -> None:
        self._nvml = _nvml()
        self._handles: list = []
        if self._nvml is not None:
            try:
                count = self._nvml.nvmlDeviceGetCount()
                self._handles = [self._nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            except Exception as exc:
                logger.debug("event=nvml_unavailable error=%r", exc)
                self._nvml = None

    @property
    def available(self) -> bool:
        return self._nvml is not None

    def used_mb(self, pids: set[int]) -> float | None:
        if self._nvml is None:
            return None
        total = 0
        for handle in self._handles:
            try:
                processes = self._nvml.nvmlDeviceGetComputeRunningProcesses(handle)
            except Exception:
                continue
            total += sum(p.usedGpuMemory or 0 for p in processes if p.pid in pids)
        return total / _MB


def gpu_total_mb() -> float | None:
    """Memory of GPU 0 where NVML sees one, else None (CPU only)."""
    nvml = _nvml()
    if nvml is None:
        return None
    try:
        return nvml.nvmlDeviceGetMemoryInfo(nvml.nvmlDeviceGetHandleByIndex(0)).total / _MB
    except Exception:
        return None
    finally:
        nvml.nvmlShutdown()


def _nvml() -> Any:
    """pynvml, initialised; None where it cannot be (no library, no driver, no device: "not measurable")."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as exc:
        logger.debug("event=nvml_unavailable error=%r", exc)
        return None
    return pynvml
