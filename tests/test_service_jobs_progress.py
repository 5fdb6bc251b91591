"""A running job's record from its pipeline events (service.job_progress), on recorded event timings with a
fake clock: the ETA from the job's own audio seconds per second, model loading named and left out of the
pace, languages and partial segments kept for the events feed. (The estimator itself, CPU work and
share, is tested on synthetic jobs in test_job_progress_eta.py.)"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from isoscribe.pipeline import FileDone, Probed, Progress, ProgressTracker, SegmentReady, StageFinished, StageStarted
from isoscribe.service.job_eta import BURST_S, PhasePaces
from isoscribe.service.job_progress import LOAD_MODEL_STAGE, JobProgress
from isoscribe.service.job_store import JobOptions, JobStore
from isoscribe.transcript import Segment

DURATION_S = 60.0
SETTLED_S = BURST_S + 0.05
"""After a window's words: long enough for them to be all in."""


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class Workers:
    """Workers whose CPU cannot be read (the ETA counts wall seconds); ``loading`` until told otherwise."""

    def __init__(self, loading) -> None:
        self.is_loading = loading

    def loading(self, stage: str) -> bool:
        return self.is_loading()

    def meter(self, stage: str) -> None:
        return None


@pytest.fixture
def running(tmp_path: Path):
    store = JobStore(tmp_path / "jobs.sqlite3")
    job = store.create(tmp_path / "a.wav", JobOptions(filename="a.wav"))
    store.claim_next()
    yield store, job.id
    store.close()


def _run(store: JobStore, job_id: str, loading: bool, load_s: float, pace: float, diarize: bool = False):
    """Feed a job's events: the model loads for ``load_s``, then 30 s windows of audio go at ``pace`` audio
    seconds per second (faster-whisper yields a window's segments at once); a watcher's round a second after
    each window, once its words are all in. Returns (time, record) after each round."""
    clock = Clock()
    start = clock.now
    progress = JobProgress(store, job_id, {}, ProgressTracker(diarize, False), Workers(lambda: loading), clock=clock)
    progress(StageStarted("probe"))
    progress(Probed(DURATION_S))
    progress(StageStarted("speech"))
    seen = [(clock.now - start, store.get(job_id))]
    clock.now += load_s
    for index, done_s in enumerate((10.0, 30.0, 40.0, 60.0)):
        clock.now = start + load_s + done_s / pace
        language = "en" if done_s < 40 else "de"
        progress(SegmentReady(Segment(index, done_s - 10, done_s, f" words until {done_s:.0f}", language=language)))
        progress(Progress("speech", done_s, DURATION_S))
        clock.now += SETTLED_S
        progress.refresh()
        seen.append((clock.now - start, store.get(job_id)))
    progress.close()
    return start, seen


@pytest.mark.parametrize("load_s", [0.0, 30.0])
def test_the_eta_at_half_way_is_the_time_left_and_leaves_the_model_load_out(running, load_s: float) -> None:
    store, job_id = running
    pace = 4.0
    start, seen = _run(store, job_id, loading=load_s > 0, load_s=load_s, pace=pace)
    finished_at = load_s + DURATION_S / pace
    half_way_at, half_way = next((t, job) for t, job in seen if job.audio_done_s and job.audio_done_s >= DURATION_S / 2)
    eta_s = half_way.expected_done_at - (start + half_way_at)
    truth_s = finished_at - half_way_at
    assert abs(eta_s - truth_s) <= 0.5 * truth_s, (eta_s, truth_s)
    assert eta_s == pytest.approx(truth_s, rel=0.05), "a steady pace predicts the end exactly"


def test_model_loading_is_named_as_a_stage_until_the_first_words(running) -> None:
    store, job_id = running
    _, seen = _run(store, job_id, loading=True, load_s=30.0, pace=4.0)
    assert seen[0][1].stage == LOAD_MODEL_STAGE and seen[0][1].expected_done_at is None
    assert [job.stage for _, job in seen[1:]] == ["speech"] * 4
    _, warm = _run(store, job_id, loading=False, load_s=0.0, pace=4.0)
    assert warm[0][1].stage == "speech"


def test_diarization_after_the_speech_adds_its_share(running) -> None:
    store, job_id = running
    start, seen = _run(store, job_id, loading=False, load_s=0.0, pace=4.0, diarize=True)
    at, half_way = seen[2]
    speech_left_s = (DURATION_S - half_way.audio_done_s) / 4.0
    assert half_way.expected_done_at - (start + at) > speech_left_s, "diarizing takes time after the text"


def test_languages_and_segments_are_kept_as_they_arrive(running) -> None:
    store, job_id = running
    _run(store, job_id, loading=False, load_s=0.0, pace=4.0)
    job = store.get(job_id)
    assert job.languages == ["en", "de"] and job.status == "running"
    kept = store.partial_segments(job_id)
    assert [s["text"] for s in kept] == ["words until 10", "words until 30", "words until 40", "words until 60"]
    assert store.partial_segments(job_id, 3) == kept[3:]
    store.add_partial_segment(job_id, 0, {"text": "a retried stage's first segment"})
    assert store.partial_segments(job_id) == kept, "a segment sent again keeps the first one"


def test_the_pace_starts_when_the_pool_reports_the_model_loaded(running) -> None:
    """No event comes from a worker that is loading: a watcher sees its pool come up, and the speech starts
    then (what JobPaces measures from); the pace counts between the file's words."""
    store, job_id = running
    clock, loaded = Clock(), threading.Event()
    start = clock.now
    progress = JobProgress(store, job_id, {}, ProgressTracker(False, False), Workers(lambda: not loaded.is_set()),
                           clock=clock, poll_s=0.01)
    progress(Probed(DURATION_S))
    progress(StageStarted("speech"))
    assert store.get(job_id).stage == LOAD_MODEL_STAGE
    clock.now = start + 30.0
    loaded.set()
    deadline = time.monotonic() + 10
    while store.get(job_id).stage != "speech":
        assert time.monotonic() < deadline, "the stage never left load_model"
        time.sleep(0.01)
    clock.now = start + 30.0 + 12.5 / 4.0 - 0.01  # the first words, at 4 audio seconds per second
    progress(Progress("speech", 10.0, DURATION_S))
    clock.now += 0.01
    progress(Progress("speech", 12.5, DURATION_S))  # a window's segments come at once
    assert store.get(job_id).expected_done_at is None, "one window is no pace"
    clock.now = start + 30.0 + 30.0 / 4.0
    progress(Progress("speech", 30.0, DURATION_S))
    clock.now += SETTLED_S  # the second window's words are all in
    progress.refresh()
    assert store.get(job_id).expected_done_at - clock.now == pytest.approx(7.5 - SETTLED_S, rel=0.01)
    clock.now = start + 30.0 + 60.0 / 4.0
    progress(Progress("speech", 60.0, DURATION_S))
    progress(StageFinished("speech", 45.0))
    progress(FileDone(DURATION_S))
    learned = progress.paces.cost("text")
    assert learned.wall_s * DURATION_S == pytest.approx(15.0), "timed from the load's end"
    assert learned.cpu_s is None, "no CPU was read"


def _meeting_run(store: JobStore, job_id: str, paces: PhasePaces) -> list[tuple[float, float | None]]:
    """A diarized minute as base runs it warm: decoding, VAD and language detection make the first window
    slow (22 s of audio after 10 s), the rest goes fast, diarization takes 5 s after the text.
    Returns (seconds since start, the ETA then) at each event."""
    clock = Clock()
    start = clock.now
    progress = JobProgress(store, job_id, {}, ProgressTracker(True, False), clock=clock, paces=paces, text_key="text d")
    timeline = [(0.0, StageStarted("speech")), (10.0, Progress("speech", 22.0, 60.0)),
                (12.0, Progress("speech", 53.0, 60.0)), (12.5, Progress("speech", 60.0, 60.0)),
                (12.5, Progress("diarize", 0.0, 60.0)), (17.5, Progress("diarize", 60.0, 60.0)),
                (17.5, StageFinished("speech", 17.5)), (18.0, FileDone(60.0))]
    progress(Probed(60.0))
    seen = []
    for at, event in timeline:
        clock.now = start + at
        progress(event)
        expected = store.get(job_id).expected_done_at
        seen.append((at, None if expected is None else expected - clock.now))
    return seen


def test_a_job_of_a_kind_seen_before_gets_the_time_that_kind_took(tmp_path: Path) -> None:
    store, paces = JobStore(tmp_path / "jobs.sqlite3"), PhasePaces()
    first, second = (store.create(tmp_path / f"{n}.wav", JobOptions()) for n in "ab")
    store.claim_next()
    first_seen = _meeting_run(store, first.id, paces)
    store.claim_next()
    second_seen = _meeting_run(store, second.id, paces)
    assert first_seen[0][1] is None and dict(first_seen)[10.0] is None, "a first job waits for its own pace"
    middle_eta = dict(second_seen)[10.0]
    # the text's 12.5 s and the speakers' 5 s (the last 0.5 s, outputs, is in no phase)
    assert second_seen[0][1] == pytest.approx(17.5), "known from the speech's start"
    assert abs(middle_eta - 8.0) <= 0.5 * 8.0 and middle_eta == pytest.approx(7.5)
    # At the speakers' start a first job has only the tracker's share of its text's time for them
    assert dict(first_seen)[12.5] < 0.5 * 5.5, "its own pace cannot see the diarization: the case for PhasePaces"
    store.close()
