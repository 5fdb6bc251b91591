"""Stages overlap: the next file's speech runs while a file is summarized, when both fit in memory."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from isoscribe.batch import run_batch
from isoscribe.config import load_settings

CLIPS = ["librispeech/1089-134686-0001.wav", "librivox/sense_and_sensibility_01_austen_64kb-0880.wav",
         "librispeech/61-70968-0000.flac"]


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
    report = run_batch(settings, [shared_data / clip for clip in CLIPS], tmp_path / "out", progress=False)
    assert report.counts["done"] == len(CLIPS), report.failures
    assert "event=batch_files_in_flight files=2 speech_workers=1" in caplog.text
    stages = re.findall(r"event=file_stage file=(\S+) stage=(\S+)", caplog.text)
    first, second = sorted((Path(clip).stem for clip in CLIPS), key=lambda name: stages.index((name, "finish")))[:2]
    # One speech worker: the second file's speech starts after the first file's ends, so its
    # speakers step ("finish") before the first file's outputs means it ran during that summary.
    assert stages.index((first, "summary")) < stages.index((second, "finish")) < stages.index((first, "outputs"))


def test_speech_workers_bound_the_files_in_flight_without_summaries(tmp_path: Path) -> None:
    from isoscribe.batch import _Batch

    settings = load_settings(overrides={"batch": {"workers": 2, "summarize": False}})
    assert _Batch(settings, tmp_path, retry_failed=False, executor=None)._files_in_flight(phased=False) == 2
    summarizing = load_settings(overrides={"batch": {"workers": 2}})
    batch = _Batch(summarizing, tmp_path / "s", retry_failed=False, executor=None)
    assert batch._files_in_flight(phased=False) == 3 and batch._files_in_flight(phased=True) == 2
