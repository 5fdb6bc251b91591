"""Stages overlap: the next file's speech runs while a file is summarized, when both fit in memory."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from isoscribe.batch import run_batch
from isoscribe.config import load_settings
from isoscribe.executors import build_executor

CLIPS = ["librispeech/1089-134686-0001.wav", "librivox/sense_and_sensibility_01_austen_64kb-0880.wav",
         "librispeech/61-70968-0000.flac"]


class _HoldsTheFirstSummary:
    """The batch's executor, except that the first summary starts only once the next file's speech has
    finished: that happens only if the next file's speech runs while the first file waits for its summary."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.speech_done = 0
        self.summaries = 0
        self._changed = threading.Condition()

    def submit(self, stage: str, request, on_event=None):
        if stage == "summary":
            with self._changed:
                self.summaries += 1
                if self.summaries == 1:
                    assert self._changed.wait_for(lambda: self.speech_done >= 2, 600), "no speech ran during a summary"
        future = self.inner.submit(stage, request, on_event)
        if stage == "speech":
            future.add_done_callback(self._speech_finished)
        return future

    def _speech_finished(self, future) -> None:
        with self._changed:
            self.speech_done += 1
            self._changed.notify_all()

    def cancel(self, future) -> bool:
        return self.inner.cancel(future)

    def release(self, stage: str) -> None:
        self.inner.release(stage)

    def shutdown(self) -> None:
        self.inner.shutdown()


@pytest.mark.slow
def test_the_next_files_speech_runs_while_a_file_is_summarized(
    shared_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings(overrides={
        "asr": {"model": "tiny.en", "device": "cpu", "cpu_threads": 1},
        "llm": {"max_tokens": 32, "threads": 1},
        "batch": {"workers": 1, "formats": ["json", "summary"]},
    })
    caplog.set_level(logging.INFO, logger="isoscribe")
    executor = _HoldsTheFirstSummary(build_executor(settings, lazy=True))
    try:
        report = run_batch(settings, [shared_data / clip for clip in CLIPS], tmp_path / "out", progress=False,
                           executor=executor)
    finally:
        executor.shutdown()
    assert report.counts["done"] == len(CLIPS), report.failures
    assert "event=batch_files_in_flight files=2 speech_workers=1" in caplog.text
    assert executor.summaries == len(CLIPS) and executor.speech_done >= len(CLIPS)


def test_speech_workers_bound_the_files_in_flight_without_summaries(tmp_path: Path) -> None:
    from isoscribe.batch.runner import Batch as _Batch

    settings = load_settings(overrides={"batch": {"workers": 2, "summarize": False}})
    assert _Batch(settings, tmp_path, retry_failed=False, executor=None)._files_in_flight(phased=False) == 2
    summarizing = load_settings(overrides={"batch": {"workers": 2}})
    batch = _Batch(summarizing, tmp_path / "s", retry_failed=False, executor=None)
    assert batch._files_in_flight(phased=False) == 3 and batch._files_in_flight(phased=True) == 2
