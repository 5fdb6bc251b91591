"""The stages the pipeline runs, as the isolation runtime hosts them, and the requests they take."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from isoscribe.config import IsolationSettings, Settings
from isoscribe.inputs import voice_samples
from isoscribe.isolation import Limits, StageSpec
from isoscribe.summary.text import turns_of
from isoscribe.transcript import KnownSpeaker, SpeechRequest, SummaryRequest, Transcript

__all__ = [
    "PROBE_STAGE",
    "stage_specs",
    "speech_stage",
    "speech_limits",
    "stage_limits",
    "speech_request",
    "known_speakers_in",
    "summary_request",
]

PROBE_STAGE = "isoscribe.stages.probe"


def stage_specs(settings: Settings) -> dict[str, tuple[StageSpec, Limits]]:
    """Every stage the pipeline submits, by the name it submits it under, with its limits."""
    isolation = settings.isolation
    return {
        "probe": (
            StageSpec(PROBE_STAGE, None, "probe"),
            stage_limits(isolation, isolation.probe_timeout_s),
        ),
        "speech": (speech_stage(settings), speech_limits(settings)),
        "summary": (
            StageSpec(isolation.summary_stage, settings, "summary"),
            stage_limits(isolation, isolation.llm_timeout_s),
        ),
    }


def speech_stage(settings: Settings) -> StageSpec:
    return StageSpec(settings.isolation.speech_stage, settings, "speech")


def speech_limits(settings: Settings) -> Limits:
    return stage_limits(settings.isolation, settings.isolation.asr_timeout_s)


def stage_limits(isolation: IsolationSettings, timeout_s: float) -> Limits:
    return Limits(timeout_s=timeout_s, hard_rss_mb=isolation.hard_rss_mb, load_timeout_s=isolation.load_timeout_s)


def speech_request(settings: Settings, audio_path: str | Path, **overrides: Any) -> SpeechRequest:
    """The speech stage's request for one file from the settings; ``overrides`` replace single fields."""
    diarization = settings.diarization
    request = SpeechRequest(
        audio_path=str(audio_path),
        language=settings.asr.language,
        task=settings.asr.task,
        initial_prompt=settings.asr.initial_prompt,
        diarize=diarization.enabled or diarization.speakers_dir is not None,
        num_speakers=diarization.num_speakers,
        min_speakers=diarization.min_speakers,
        max_speakers=diarization.max_speakers,
        known_speakers=known_speakers_in(diarization.speakers_dir),
    )
    return replace(request, **overrides) if overrides else request


def known_speakers_in(folder: Path | None) -> tuple[KnownSpeaker, ...]:
    """One known speaker per audio file of ``folder`` (by extension, as inputs are found), named by its stem."""
    if folder is None:
        return ()
    return tuple(KnownSpeaker(path.stem, str(path.resolve())) for path in voice_samples(Path(folder)))


def summary_request(transcript: Transcript) -> SummaryRequest:
    """The summary stage's request: the transcript's speaker turns (segments when not diarized)."""
    return SummaryRequest(tuple(turns_of(transcript)))
