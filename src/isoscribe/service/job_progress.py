"""A running job's pipeline events into its record: progress, stage, ETA, languages and its segments so far.

The ETA of the first job of a kind (model stage, diarized, summarized) is its own pace: audio seconds
transcribed per second between its first words and its latest ones, the rest of the audio at that pace,
plus the stages after it in proportion (``ProgressTracker``'s shares). The pace does not count from
the stage's start: decoding the file, VAD and language detection all land in the first window (on
base, a minute's first window took 9 s, the next ones 3.5 s). Fixed costs still escape it (diarization
comes after the text), so once this server has finished a job of the same kind, the ETA is the seconds
per audio second such jobs took from their speech start to their end (``JobPaces``), known from the
job's first second on. While the speech stage waits for its model to load, the stage reads
``load_model``: a watcher thread sees the pool's worker come up (no event comes from a loading worker),
and the speech starts then. Segments are kept as they arrive so that the events feed can replay them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from isoscribe.executors import PerTaskExecutor, PooledExecutor
from isoscribe.pipeline import (
    Event,
    FileDone,
    Probed,
    Progress,
    ProgressTracker,
    SegmentReady,
    StageFinished,
    StageStarted,
)
from isoscribe.service.job_store import JobStore

__all__ = ["JobProgress", "JobPaces", "AudioPace", "model_loading", "LOAD_MODEL_STAGE"]

LOAD_MODEL_STAGE = "load_model"
LOAD_POLL_S = 0.25
BURST_S = 1.0
"""Segments of one decoding window arrive within this of each other: the pace needs two windows."""
MAX_LOAD_WATCH_S = 1800.0


class AudioPace:
    """Audio seconds per second of one job since a starting point, and what that predicts."""

    def __init__(self) -> None:
        self._since: tuple[float, float] | None = None
        """(wall time, audio seconds done) when the pace started to count."""

    def start(self, now: float, done_s: float) -> None:
        self._since = (now, done_s)

    @property
    def started(self) -> bool:
        return self._since is not None

    def seconds_since(self, now: float) -> float:
        return now - self._since[0] if self._since is not None else 0.0

    def audio_per_s(self, now: float, done_s: float) -> float | None:
        """Audio seconds per second since the start; None before any is known."""
        if self._since is None:
            return None
        elapsed_s, audio_s = now - self._since[0], done_s - self._since[1]
        return audio_s / elapsed_s if elapsed_s > 0 and audio_s > 0 else None


class JobPaces:
    """Per kind of job, the seconds from speech start (model loaded) to the end per audio second, averaged
    over the jobs this server finished (the newest counts half)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seconds_per_audio_s: dict[str, float] = {}

    def record(self, kind: str, seconds: float, audio_s: float) -> None:
        if audio_s <= 0 or seconds <= 0:
            return
        with self._lock:
            before = self._seconds_per_audio_s.get(kind)
            rate = seconds / audio_s
            self._seconds_per_audio_s[kind] = rate if before is None else (before + rate) / 2

    def predict_s(self, kind: str, audio_s: float) -> float | None:
        with self._lock:
            rate = self._seconds_per_audio_s.get(kind)
        return None if rate is None else rate * audio_s


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


class JobProgress:
    """The pipeline's listener for one job: called on the pipeline's threads, it writes the job store."""

    def __init__(
        self,
        store: JobStore,
        job_id: str,
        timings: dict[str, float],
        tracker: ProgressTracker,
        loading: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.time,
        load_poll_s: float = LOAD_POLL_S,
        paces: JobPaces | None = None,
        kind: str = "",
    ) -> None:
        self.store = store
        self.job_id = job_id
        self.timings = timings
        self.tracker = tracker
        self.loading = loading
        self.clock = clock
        self.load_poll_s = load_poll_s
        self._lock = threading.Lock()
        """Events come on the pipeline's threads, the end of a model load on the watcher's."""
        self.pace = AudioPace()
        self.paces = paces or JobPaces()
        self.kind = kind
        self.speech_started_at: float | None = None
        self.waiting_for_model = False
        self.languages: list[str] = []
        self.expected_done_at: float | None = None

    def __call__(self, event: Event) -> None:
        with self._lock:
            self._fold(event)

    def _fold(self, event: Event) -> None:
        if isinstance(event, Probed):
            self.timings["audio_duration_s"] = round(event.duration_s, 3)
        elif isinstance(event, StageFinished) and event.error is None and event.stage in ("speech", "summary"):
            self.timings[f"{event.stage}_s"] = round(event.wall_s, 3)
        elif isinstance(event, SegmentReady):
            self._keep(event)
        changed = self.tracker.update(event)
        if isinstance(event, StageStarted) and event.stage == "speech":
            changed |= self._speech_started()
        elif isinstance(event, Progress) and event.stage == "speech":
            self._speech_progress(event)
        elif isinstance(event, StageFinished) and event.stage == "speech":
            self.waiting_for_model = False  # the watcher stops, whatever became of the stage
        elif isinstance(event, FileDone) and self.speech_started_at is not None:
            self.paces.record(self.kind, self.clock() - self.speech_started_at, event.duration_s)
        if changed and self.tracker.stage != "done":
            self._record()

    def _record(self) -> None:
        tracker = self.tracker
        stage = LOAD_MODEL_STAGE if self.waiting_for_model else tracker.stage
        self.store.set_progress(
            self.job_id, tracker.fraction, stage, round(tracker.audio_done_s, 3), tracker.audio_total_s,
            self.expected_done_at, self.languages,
        )

    def _speech_started(self) -> bool:
        self.waiting_for_model = self.loading()
        if not self.waiting_for_model:
            self._transcribing_from(self.clock())
        if self.waiting_for_model:
            threading.Thread(target=self._watch_load, name=f"load-watch-{self.job_id}", daemon=True).start()
        return self.waiting_for_model

    def _watch_load(self) -> None:
        """Until the stage's model is loaded (or the stage is over): then the speech starts and the stage shows."""
        deadline = time.monotonic() + MAX_LOAD_WATCH_S
        while time.monotonic() < deadline:
            time.sleep(self.load_poll_s)
            with self._lock:
                if not self.waiting_for_model:
                    return
                if not self.loading():
                    self.waiting_for_model = False
                    self._transcribing_from(self.clock())
                    self._record()
                    return

    def _transcribing_from(self, now: float) -> None:
        """The model is there: the speech starts ``now``, and a known kind of job has its ETA at once."""
        self.speech_started_at = now
        predicted_s = self.paces.predict_s(self.kind, self.tracker.audio_total_s or 0.0)
        if predicted_s is not None:
            self.expected_done_at = now + predicted_s

    def _speech_progress(self, event: Progress) -> None:
        now = self.clock()
        if self.waiting_for_model:  # the model took the time so far: the speech starts now
            self.waiting_for_model = False
            self._transcribing_from(now)
        if self.paces.predict_s(self.kind, event.total_s) is not None:
            return  # jobs of this kind have shown what this one will take, fixed costs included
        first_window = self.expected_done_at is None and self.pace.seconds_since(now) < BURST_S
        if not self.pace.started or first_window:  # the first window's words: the pace counts from its last
            self.pace.start(now, event.done_s)
            return
        rate = self.pace.audio_per_s(now, event.done_s)
        if rate is None:
            return
        tracker = self.tracker
        after_s = event.total_s / rate * (tracker.diarize_share + tracker.summary_share) / tracker.speech_end
        self.expected_done_at = now + max(0.0, event.total_s - event.done_s) / rate + after_s

    def _keep(self, event: SegmentReady) -> None:
        segment = event.segment
        if segment.language and segment.language not in self.languages:
            self.languages.append(segment.language)
        shown = {"start": segment.start, "end": segment.end, "text": segment.text.strip(), "language": segment.language}
        self.store.add_partial_segment(self.job_id, segment.id, shown)
