"""Diarizing 60 minutes stays under 2 GB RSS (issue 3), measured by the isolation runtime."""

from __future__ import annotations

from pathlib import Path

import pytest

from isoscribe.benchmarks.asr import RSS_TARGET_MB, make_long_audio
from isoscribe.config import load_settings
from isoscribe.isolation import Limits, StageSpec, run_isolated
from isoscribe.pipeline import speech_request

pytestmark = pytest.mark.slow


def test_sixty_minutes_of_diarization_fit_in_two_gigabytes(shared_data: Path, tmp_path: Path) -> None:
    hour = make_long_audio(shared_data, tmp_path / "hour.wav", 3600.0)
    settings = load_settings(overrides={"diarization": {"enabled": True, "device": "cpu"}})
    stage = StageSpec("isoscribe.stages.diarize", settings, "diarize")
    result = run_isolated(stage, speech_request(settings, hour), Limits(timeout_s=1800, hard_rss_mb=RSS_TARGET_MB))
    print(f"60 min diarization: peak RSS {result.stats.peak_rss_mb:.0f} MB, wall {result.stats.wall_s:.0f} s")
    assert result.stats.peak_rss_mb < RSS_TARGET_MB
    assert result.value.duration_s == pytest.approx(3600.0, abs=0.1)
    assert len(result.value.speakers) >= 2
    assert result.value.speaker_turns[-1].end > 3500
