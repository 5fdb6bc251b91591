"""The batch's executor behind its memory gate."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from isoscribe.budget import GateClosed, MemoryGate
from isoscribe.executors import EventListener, StageExecutor
from isoscribe.isolation import TaskCancelled, TaskResult

__all__ = ["GatedExecutor"]


class GatedExecutor:
    """The batch's executor behind its memory gate: a stage task holds its share of the budget until it ends."""

    def __init__(self, inner: StageExecutor, gate: MemoryGate) -> None:
        self.inner = inner
        self.gate = gate

    def submit(self, stage: str, request: Any, on_event: EventListener | None = None) -> Future[TaskResult]:
        if stage not in self.gate.peaks_mb:
            return self.inner.submit(stage, request, on_event)
        try:
            self.gate.acquire(stage)
        except GateClosed:
            raise TaskCancelled(stage, detail="the batch is stopping") from None
        try:
            future = self.inner.submit(stage, request, on_event)
        except BaseException:
            self.gate.release(stage)
            raise
        future.add_done_callback(lambda _: self.gate.release(stage))
        return future

    def cancel(self, future: Future) -> bool:
        return self.inner.cancel(future)

    def shutdown(self) -> None:
        self.inner.shutdown()

