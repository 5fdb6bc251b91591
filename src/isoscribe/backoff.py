"""One doubling, capped backoff for every loop that tries a call again while a service is away.

(The isolation runtime keeps its own: it imports nothing else of isoscribe.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["Backoff", "retry"]

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    first_s: float
    max_s: float

    def delays(self) -> Iterator[float]:
        """``first_s``, doubled after each try, never above ``max_s``; endless."""
        delay_s = self.first_s
        while True:
            yield delay_s
            delay_s = min(2 * delay_s, self.max_s)


def retry(call: Callable[[], T], errors: tuple[type[BaseException], ...], backoff: Backoff, tries: int) -> T:
    """``call()``, tried up to ``tries`` times while it raises one of ``errors``; the last try's error propagates."""
    delays = backoff.delays()
    for _ in range(tries - 1):
        try:
            return call()
        except errors:
            time.sleep(next(delays))
    return call()
