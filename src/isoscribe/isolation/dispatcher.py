"""The dispatcher: one thread per pool that resolves futures and hands events to their listeners.

Whatever a caller attached (an ``on_event`` listener, a done-callback) runs here, in the order the
supervisor handed it over, never on the supervisor's thread: a listener that blocks (a Redis update
retrying, a file write, a lock) delays other listeners of its pool, never a timeout, a memory kill or
the reaping of a worker.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from typing import Any

from isoscribe.isolation import transport

__all__ = ["Delivery", "Dispatcher", "Outcome"]

logger = logging.getLogger("isoscribe.isolation")


@dataclass
class Outcome:
    """How one future ends: with ``result``, or with ``error`` when that is set."""

    future: Future
    result: Any = None
    error: BaseException | None = None


@dataclass
class Delivery:
    """One event a running task emitted, still pickled, for its ``on_event`` listener."""

    on_event: Callable[[Any], None]
    payload: bytes


class Dispatcher:
    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue[list[Outcome | Delivery] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def put(self, items: list[Outcome | Delivery]) -> None:
        """Hand over outcomes and deliveries, to be carried out in this order after those before."""
        if items:
            self._queue.put(items)

    def close(self) -> None:
        """Carry out what was handed over, then end the thread."""
        self._queue.put(None)

    def _run(self) -> None:
        while (items := self._queue.get()) is not None:
            for item in items:
                try:
                    _deliver(item) if isinstance(item, Delivery) else _resolve(item)
                except BaseException:  # a caller's callback that raises SystemExit must not end this thread
                    logger.exception("event=task_callback_failed")


def _resolve(outcome: Outcome) -> None:
    try:
        if outcome.error is not None:
            outcome.future.set_exception(outcome.error)
        else:
            outcome.future.set_result(outcome.result)
    except InvalidStateError:
        pass  # its owner cancelled it first


def _deliver(delivery: Delivery) -> None:
    """A listener's failure is logged and never reaches the task or the pool."""
    try:
        delivery.on_event(transport.loads(delivery.payload))
    except Exception:
        logger.exception("event=task_event_listener_failed")
