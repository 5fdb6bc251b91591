"""A running job's pipeline events into its record: progress, stage, ETA, languages and its segments so far.

The ETA is ``job_eta.JobEta``'s: each phase's work learned from the phases this server finished, the
work left turned into time at the CPU share the job's worker gets now. A watcher thread reads that
worker's CPU a few times a second (``StageWorkers``) and refreshes the ETA between events, so that it
follows the load while the first window is decoded (no event comes for the first half of a minute
on base). While a stage waits for its model to load, the stage reads ``load_model`` (no event comes
from a loading worker either: the watcher sees the pool's worker come up), and its phase starts
then. Segments are kept as they arrive so that the events feed can replay them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import psutil

from isoscribe.executors import PerTaskExecutor, PooledExecutor
from isoscribe.logs import log_event
from isoscribe.pipeline import (
    Event,
    FileDone,
    FileFailed,
    Probed,
    Progress,
    ProgressTracker,
    SegmentReady,
    StageFinished,
    StageStarted,
)
from isoscribe.service.job_eta import JobEta, PhasePaces
from isoscribe.service.job_store import JobStore

__all__ = ["JobProgress", "StageWorkers", "CpuMeter", "model_loading", "LOAD_MODEL_STAGE"]

logger = logging.getLogger("isoscribe.service.jobs")

LOAD_MODEL_STAGE = "load_model"
POLL_S = 0.25
ETA_MOVED_S = 0.5
"""The ETA is written again when its end time moves by this much."""
MAX_WATCH_S = 3600.0


def model_loading(executor: Any, stage: str) -> bool:
    """True when the stage's worker will have to load its model first: a process per task always does; a
    pool does until one of its workers is up (a pool built on first use counts as loading)."""
    if isinstance(executor, PerTaskExecutor):
        return True
    if not isinstance(executor, PooledExecutor):
        return False  # Celery: the workers are elsewhere
    pool = executor.pools.get(stage)
    if pool is None:
        return stage in executor.factories
    return not any(worker.state in ("idle", "busy") for worker in pool.stats().workers)


class CpuMeter:
    """CPU seconds the busy workers of one pool used since the meter was made (each counted from when it
    was first seen busy); None while none is busy or while ``exclusive`` says the pool runs others' tasks.
    ``first_task``: one of them was on its first task."""

    def __init__(self, executor: PooledExecutor, stage: str, exclusive: Callable[[], bool]) -> None:
        self.executor = executor
        self.stage = stage
        self.exclusive = exclusive
        self.first_task = False
        self._first: dict[int, float] = {}
        self._used: dict[int, float] = {}

    def read(self) -> float | None:
        pool = self.executor.pools.get(self.stage)
        if pool is None or not self.exclusive():
            return None
        busy = [worker for worker in pool.stats().workers if worker.state == "busy"]
        if not busy:
            return None
        self.first_task |= any(worker.tasks_done == 0 for worker in busy)
        for pid in (worker.pid for worker in busy):
            try:
                times = psutil.Process(pid).cpu_times()
            except psutil.Error:
                continue
            cpu_s = times.user + times.system + times.children_user + times.children_system
            self._used[pid] = cpu_s - self._first.setdefault(pid, cpu_s)
        return sum(self._used.values())


class Workers(Protocol):
    def loading(self, stage: str) -> bool: ...

    def meter(self, stage: str) -> CpuMeter | None: ...


class StageWorkers:
    """The workers behind a job's pipeline stages (``speech`` runs on the model's executor stage)."""

    def __init__(self, executor: Any, speech_stage: str, exclusive: Callable[[], bool] = lambda: True) -> None:
        self.executor = executor
        self.stages = {"speech": speech_stage}
        self.exclusive = exclusive

    def loading(self, stage: str) -> bool:
        return model_loading(self.executor, self.stages.get(stage, stage))

    def meter(self, stage: str) -> CpuMeter | None:
        if not isinstance(self.executor, PooledExecutor):
            return None
        return CpuMeter(self.executor, self.stages.get(stage, stage), self.exclusive)


class _NoWorkers:
    def loading(self, stage: str) -> bool:
        return False

    def meter(self, stage: str) -> CpuMeter | None:
        return None


class JobProgress:
    """The pipeline's listener for one job: called on the pipeline's threads, it writes the job store."""

    def __init__(
        self,
        store: JobStore,
        job_id: str,
        timings: dict[str, float],
        tracker: ProgressTracker,
        workers: Workers | None = None,
        clock: Callable[[], float] = time.time,
        poll_s: float = POLL_S,
        paces: PhasePaces | None = None,
        text_key: str = "text",
    ) -> None:
        self.store = store
        self.job_id = job_id
        self.timings = timings
        self.tracker = tracker
        self.workers = workers or _NoWorkers()
        self.clock = clock
        self.poll_s = poll_s
        self._lock = threading.Lock()
        """Events come on the pipeline's threads, the model's load and CPU readings on the watcher's."""
        self.paces = paces or PhasePaces()
        keys = {"text": text_key}
        if tracker.diarize_share:
            keys["diarize"] = "diarize"
        if tracker.summary_share:
            keys["summary"] = "summary"
        shares = {"text": tracker.speech_end, "diarize": tracker.diarize_share, "summary": tracker.summary_share}
        self.eta = JobEta(self.paces, keys, shares)
        self.meter: CpuMeter | None = None
        self.waiting: tuple[str, str] | None = None
        """(phase, stage) waiting for the stage's model to load."""
        self.languages: list[str] = []
        self.expected_done_at: float | None = None
        self._stopped = threading.Event()
        self._watcher: threading.Thread | None = None

    def __call__(self, event: Event) -> None:
        with self._lock:
            self._fold(event)

    def close(self) -> None:
        """The job is over (whatever became of it): the watcher stops."""
        self._stopped.set()

    def _fold(self, event: Event) -> None:
        if isinstance(event, Probed):
            self.timings["audio_duration_s"] = round(event.duration_s, 3)
        elif isinstance(event, StageFinished) and event.error is None and event.stage in ("speech", "summary"):
            self.timings[f"{event.stage}_s"] = round(event.wall_s, 3)
        elif isinstance(event, SegmentReady):
            self._keep(event)
        changed = self.tracker.update(event)
        now = self.clock()
        if isinstance(event, StageStarted):
            changed |= self._stage_started(event.stage, now)
        elif isinstance(event, Progress):
            self._progress(event, now)
        elif isinstance(event, StageFinished):
            self._stage_finished(event, now)
        elif isinstance(event, FileDone | FileFailed):
            self.close()
        if changed and self.tracker.stage != "done":
            self._estimate(now)
            self._record()

    def _record(self) -> None:
        tracker = self.tracker
        stage = LOAD_MODEL_STAGE if self.waiting else tracker.stage
        self.store.set_progress(
            self.job_id, tracker.fraction, stage, round(tracker.audio_done_s, 3), tracker.audio_total_s,
            self.expected_done_at, self.languages,
        )

    def _estimate(self, now: float) -> bool:
        """The end time from the ETA now; True when it moved enough to be written."""
        remaining_s = self.eta.remaining_s(now, self.tracker.audio_total_s or 0.0, self.tracker.audio_done_s)
        if logger.isEnabledFor(logging.DEBUG) and self.eta.running is not None:
            log_event(logger, "job_eta", logging.DEBUG, id=self.job_id, **self.eta.explain(now), remaining_s=remaining_s)
        expected = None if remaining_s is None else now + remaining_s
        before = self.expected_done_at
        self.expected_done_at = expected
        if expected is None or before is None:
            return expected != before
        return abs(expected - before) >= ETA_MOVED_S

    def _stage_started(self, stage: str, now: float) -> bool:
        phase = {"speech": "text", "summary": "summary"}.get(stage)
        if phase is None or phase not in self.eta.keys or phase in self.eta.worked or self.eta.running:
            return False  # a later piece of the same text, or a phase this job does not have
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, name=f"job-watch-{self.job_id}", daemon=True)
            self._watcher.start()
        if self.workers.loading(stage):
            self.waiting = (phase, stage)
            return True
        self._begin(phase, stage, now)
        return False

    def _begin(self, phase: str, stage: str, now: float) -> None:
        self.waiting = None
        self.meter = self.workers.meter(stage)
        self.eta.begin(phase, now, by_cpu=self.meter is not None)
        self.eta.sample(now, self._read())  # from here on: the busy worker's CPU so far is not this phase's

    def _read(self) -> float | None:
        return None if self.meter is None else self.meter.read()

    def _progress(self, event: Progress, now: float) -> None:
        if event.stage == "speech":
            if self.waiting:  # the model took the time so far: the text starts now
                self._begin(*self.waiting, now)
            self.eta.words(now, self._read(), event.done_s)
        elif event.stage == "diarize" and event.done_s == 0 and self._running("text"):
            self._end_phase(now, event.total_s)
            self._begin("diarize", "speech", now)  # in the same worker, after the text

    def _stage_finished(self, event: StageFinished, now: float) -> None:
        if self.waiting and self.waiting[1] == event.stage:
            self.waiting = None  # a retry of the stage waits again
        running = self.eta.running
        if running is None:
            return
        if event.error is not None:
            self.eta.abort()
            return
        total_s = self.tracker.audio_total_s or 0.0
        text_done = self.tracker.audio_done_s >= 0.99 * total_s  # else a piece of a long file ended; more come
        if (event.stage == "speech" and (running.name == "diarize" or text_done)) or event.stage == running.name:
            self._end_phase(now, total_s)
            self.meter = None

    def _end_phase(self, now: float, audio_s: float) -> None:
        running, warmed = self.eta.running, self.meter is None or not self.meter.first_task
        self.eta.end(now, self._read(), audio_s, warmed)
        log_event(
            logger, "job_phase_done", id=self.job_id, phase=running.name, wall_s=round(now - running.started_at, 3),
            work_s=round(self.eta.worked[running.name], 3), by_cpu=running.by_cpu, warmed=warmed, audio_s=audio_s,
        )

    def _running(self, phase: str) -> bool:
        return self.eta.running is not None and self.eta.running.name == phase

    def _watch(self) -> None:
        """Until the job is over: a loaded model starts its phase, CPU readings refresh the ETA."""
        deadline = time.monotonic() + MAX_WATCH_S
        while not self._stopped.wait(self.poll_s) and time.monotonic() < deadline:
            with self._lock:
                if self._stopped.is_set():
                    return
                try:
                    self._look(self.clock())
                except Exception as error:  # an unreachable store: the next event or round writes again
                    log_event(logger, "job_progress_not_recorded", logging.DEBUG, id=self.job_id, error=error)

    def _look(self, now: float) -> None:
        if self.waiting and not self.workers.loading(self.waiting[1]):
            self._begin(*self.waiting, now)
            self._estimate(now)
            self._record()
            return
        self.eta.sample(now, self._read())
        if self._estimate(now) and self.tracker.stage != "done":
            self._record()

    def _keep(self, event: SegmentReady) -> None:
        segment = event.segment
        if segment.language and segment.language not in self.languages:
            self.languages.append(segment.language)
        shown = {"start": segment.start, "end": segment.end, "text": segment.text.strip(), "language": segment.language}
        self.store.add_partial_segment(self.job_id, segment.id, shown)
