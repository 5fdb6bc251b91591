"""Memory budget gate: a stage starts only when its peak fits beside what already holds memory.

What holds memory is counted per stage as ``peak × max(running tasks, warm workers)``: a task
running in a fresh process holds its stage's peak until it exits, and in pooled mode a warm idle
worker keeps its model loaded, so it holds the peak too. When a stage does not fit, the gate first
retires idle warm workers of the other stages (their memory goes back to the OS with the process),
then waits for running tasks to finish. A stage whose peak alone exceeds the budget still runs when
nothing else does (waiting could never help); that is logged.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psutil

from isoscribe.config import Settings
from isoscribe.isolation.monitor import gpu_total_mb
from isoscribe.logs import log_event

__all__ = [
    "BUDGET_FRACTION", "DEFAULT_PEAKS_MB", "default_budget_mb", "gpu_total_mb", "stage_peaks_mb", "GateClosed", "MemoryGate",
]

log = logging.getLogger("isoscribe.budget")

DEFAULT_PEAKS_MB = {"speech": 1500.0, "summary": 1000.0}
"""Guesses used before a stage has run once in this output directory and none is declared."""

BUDGET_FRACTION = 0.8


def default_budget_mb() -> float:
    return BUDGET_FRACTION * psutil.virtual_memory().total / 2**20


def stage_peaks_mb(settings: Settings, learned: Callable[[str], float | None]) -> dict[str, float]:
    """Peak RSS per stage: declared in settings, else learned from earlier runs, else a default guess."""
    declared = {"speech": settings.batch.asr_peak_mb, "summary": settings.batch.llm_peak_mb}
    peaks = {}
    for stage, value in declared.items():
        peaks[stage] = value if value is not None else (learned(stage) or DEFAULT_PEAKS_MB[stage])
    return peaks


class GateClosed(Exception):
    """The gate was closed (the batch is stopping) while a stage waited for its turn."""


class MemoryGate:
    """Admits stage tasks while the sum of what holds memory fits the budget; tasks of one stage in
    the order they asked. ``close`` turns every waiting and later ``acquire`` away."""

    def __init__(
        self,
        budget_mb: float,
        peaks_mb: dict[str, float],
        *,
        keep_warm: bool = False,
        warm_limit: int = 1,
        release_warm: Callable[[str], None] | None = None,
        gpu_budget_mb: float | None = None,
        gpu_peaks_mb: dict[str, float] | None = None,
    ) -> None:
        self.budget_mb = budget_mb
        self.peaks_mb = dict(peaks_mb)
        self.keep_warm = keep_warm
        self.warm_limit = warm_limit
        self.gpu_budget_mb = gpu_budget_mb
        self.gpu_peaks_mb = dict(gpu_peaks_mb or {})
        self.release_warm = release_warm
        """Called with a stage name to shut that stage's warm workers down."""
        self._running = {stage: 0 for stage in peaks_mb}
        self._warm = {stage: 0 for stage in peaks_mb}
        self._cond = threading.Condition()
        self._tickets = itertools.count()
        self._waiting: dict[str, deque[int]] = {stage: deque() for stage in peaks_mb}
        self._closed = False
        self.overcommitted: Counter[str] = Counter()
        """Per stage, how often it started alone although its peak exceeds the budget."""

    def coexist(self, workers: int = 1) -> bool:
        """Whether ``workers`` tasks of every stage fit at once."""
        return workers * sum(self.peaks_mb.values()) <= self.budget_mb

    def held_mb(self) -> float:
        with self._cond:
            return self._held(self._running, self.peaks_mb)

    @contextmanager
    def reserve(self, stage: str) -> Iterator[None]:
        self.acquire(stage)
        try:
            yield
        finally:
            self.release(stage)

    def acquire(self, stage: str) -> None:
        """Wait for room; raises GateClosed when the gate is closed before there is."""
        with self._cond:
            ticket = next(self._tickets)
            waiting = self._waiting[stage]
            waiting.append(ticket)
            try:
                while self._closed or waiting[0] != ticket or not self._admit(stage):
                    if self._closed:
                        raise GateClosed(stage)
                    self._cond.wait()
            finally:
                waiting.remove(ticket)
                self._cond.notify_all()
            self._running[stage] += 1
            if self.keep_warm:
                self._warm[stage] = min(self.warm_limit, max(self._warm[stage], self._running[stage]))

    def release(self, stage: str) -> None:
        with self._cond:
            self._running[stage] -= 1
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def waiting(self, stage: str) -> int:
        """Tasks of ``stage`` waiting for their turn."""
        with self._cond:
            return len(self._waiting[stage])

    def _admit(self, stage: str) -> bool:
        if self._fits(stage):
            return True
        for other in self._warm:
            if other != stage and self._warm[other] and not self._running[other]:
                log_event(log, "budget_retire_warm", stage=other, to_start=stage, budget_mb=self.budget_mb)
                if self.release_warm is not None:
                    self.release_warm(other)
                self._warm[other] = 0
        if self._fits(stage):
            return True
        if not any(self._running.values()):
            log_event(
                log, "budget_overcommit", logging.WARNING, stage=stage,
                peak_mb=self.peaks_mb[stage], budget_mb=self.budget_mb,
            )
            self.overcommitted[stage] += 1
            return True
        return False

    def _fits(self, stage: str) -> bool:
        running = dict(self._running)
        running[stage] += 1
        if self._held(running, self.peaks_mb) > self.budget_mb:
            return False
        if self.gpu_budget_mb is not None and self.gpu_peaks_mb:
            return self._held(running, self.gpu_peaks_mb) <= self.gpu_budget_mb
        return True

    def _held(self, running: dict[str, int], peaks: dict[str, float]) -> float:
        return sum(peaks.get(stage, 0.0) * max(count, self._warm[stage]) for stage, count in running.items())
