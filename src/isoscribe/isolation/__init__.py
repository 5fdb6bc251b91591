"""Process isolation runtime: run stages in fresh or recycled worker processes.

Knows nothing about audio or models; see types.StageSpec for what a stage is.
"""

from isoscribe.isolation.oneshot import run_isolated
from isoscribe.isolation.pool import WorkerPool, install_termination_handler, shutdown_all_pools
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
    "WorkerPool",
    "install_termination_handler",
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
