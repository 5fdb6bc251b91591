"""Measuring workers from the parent: RSS of a process tree, and GPU memory where NVML is present.

NVML is a management library: querying it does not initialise CUDA in the parent.
"""

from __future__ import annotations

import logging
import os
import signal

import psutil

__all__ = ["GpuMonitor", "kill_tree", "tree_rss_mb"]

_MB = 1024 * 1024
logger = logging.getLogger(__name__)


def tree_rss_mb(pid: int) -> float | None:
    """RSS of a process and all its descendants in MB; None when the process is gone."""
    try:
        root = psutil.Process(pid)
        total = root.memory_info().rss
        children = root.children(recursive=True)
    except psutil.Error:
        return None
    for child in children:
        try:
            total += child.memory_info().rss
        except psutil.Error:
            pass
    return total / _MB


def kill_tree(pid: int) -> None:
    """SIGKILL a worker's process group (it leads its own session) and any descendant that left it."""
    try:
        descendants = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        descendants = []
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
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
        self._nvml = None
        self._handles: list = []
        try:
            import pynvml

            pynvml.nvmlInit()
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
            self._nvml = pynvml
        except Exception as exc:  # no library, no driver, no device: all mean "not measurable"
            logger.debug("event=nvml_unavailable error=%r", exc)

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
