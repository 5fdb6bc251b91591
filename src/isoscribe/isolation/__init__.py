"""Process isolation runtime: run stages in fresh or recycled worker processes.

Knows nothing about audio or models; see types.StageSpec for what a stage is.
"""

from isoscribe.isolation.types import (
    IsolationError,
    Limits,
    StageError,
    StageOutOfMemory,
    StageSpec,
    StageTimeout,
    TaskResult,
    TaskStats,
    WorkerCrashed,
    WorkerExit,
)

__all__ = [
    "IsolationError",
    "Limits",
    "StageError",
    "StageOutOfMemory",
    "StageSpec",
    "StageTimeout",
    "TaskResult",
    "TaskStats",
    "WorkerCrashed",
    "WorkerExit",
]
