"""Process isolation runtime: run stages in fresh or recycled worker processes.

Knows nothing about audio or models; see types.StageSpec for what a stage is.
"""

import importlib
from typing import Any

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

__all__ = [
    "run_isolated",
    "one_shot_pool",
    "WorkerPool",
    "shutdown_all_pools",
    "IsolationError",
    "Limits",
    "PoolStats",
    "StageError",
    "StageOutOfMemory",
    "StageSpec",
    "StageTimeout",
    "TaskCancelled",
    "TaskResult",
    "TaskStats",
    "WorkerCrashed",
    "WorkerExit",
    "WorkerInfo",
]

# The parent-side machinery (pool, psutil, logging) loads on first use: a worker imports this package
# too, and its cold start should not pay for code only the parent runs.
_LAZY = {
    "run_isolated": "isoscribe.isolation.oneshot",
    "one_shot_pool": "isoscribe.isolation.oneshot",
    "WorkerPool": "isoscribe.isolation.pool",
    "shutdown_all_pools": "isoscribe.isolation.registry",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
