"""Shared by the isolation runtime's tests: the fault-injection stage and waiting for a condition."""

from __future__ import annotations

import time
from collections.abc import Callable

from isoscribe.isolation import StageSpec

FAULTS = StageSpec("isoscribe.stages.faults")
HANG_S = 60.0
"""How long a test waits for a future before it calls the wait a hang: a bound on a hang, no speed check."""


def wait_for(condition: Callable[[], bool], timeout_s: float = 30.0) -> bool:
    """Poll ``condition`` until it holds; ``timeout_s`` only bounds a hang, it is no speed check."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()
