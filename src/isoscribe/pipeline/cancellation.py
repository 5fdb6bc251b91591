"""Stopping the pipelines that share a ``Cancellation``: no new stage, queued tasks dropped, running
ones let finish or cancelled through their executor."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager

from isoscribe.executors import StageExecutor
from isoscribe.pipeline.policy import FailureKind, PipelineError

__all__ = ["Cancellation"]


class Cancellation:
    """Stops the pipelines that share it (a batch shares one across its files).

    ``stop_starting``: no new stage starts, and tasks still queued in their executor are dropped;
    running ones go on. ``cancel``: that, and every running stage task is cancelled through its
    executor, which kills the worker running it. A ``child`` stops with its parent, and can be
    cancelled alone (a file's pieces, when one of them fails).
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._stopped = threading.Event()
        self._killed = False
        self._running: dict[Future, StageExecutor] = {}
        self._children: set[Cancellation] = set()
        self._parent: Cancellation | None = None

    @property
    def cancelled(self) -> bool:
        return self._stopped.is_set()

    def stop_starting(self) -> None:
        with self._changed:
            self._stopped.set()
            queued = list(self._running)
            children = list(self._children)
        for future in queued:
            future.cancel()  # only a task not yet running can be cancelled this way; running ones go on
        for child in children:
            child.stop_starting()

    def cancel(self) -> None:
        with self._changed:
            self._stopped.set()
            self._killed = True
            running = list(self._running.items())
            children = list(self._children)
        for future, executor in running:
            executor.cancel(future)
        for child in children:
            child.cancel()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True at once when stopped."""
        return self._stopped.wait(seconds)

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no stage task is running; False when some still are after ``timeout_s``."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._running, timeout_s)

    @contextmanager
    def child(self) -> Iterator[Cancellation]:
        child = Cancellation()
        child._parent = self
        with self._changed:
            self._children.add(child)
            stopped, killed = self.cancelled, self._killed
        if killed:
            child.cancel()
        elif stopped:
            child.stop_starting()
        try:
            yield child
        finally:
            with self._changed:
                self._children.discard(child)

    @contextmanager
    def track(self, executor: StageExecutor, future: Future) -> Iterator[None]:
        with self._changed:
            self._running[future] = executor
            stopped, killed = self.cancelled, self._killed
        if killed:
            executor.cancel(future)
        elif stopped:
            future.cancel()
        try:
            if self._parent is None:
                yield
            else:
                with self._parent.track(executor, future):
                    yield
        finally:
            with self._changed:
                self._running.pop(future, None)
                self._changed.notify_all()

    def check(self, stage: str) -> None:
        if self.cancelled:
            raise PipelineError(FailureKind.CANCELLED, stage, "cancelled")
