"""The per-file stage graph: speech stage (isolated), post-processing (parent), summary stage (isolated)."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from isoscribe.config import Settings
from isoscribe.isolation import Limits, StageSpec
from isoscribe.logs import log_event
from isoscribe.speakers import assign_speakers
from isoscribe.transcript import SpeechRequest, Transcript

_logger = logging.getLogger("isoscribe.pipeline")


def speech_stage(settings: Settings) -> StageSpec:
    return StageSpec(settings.isolation.speech_stage, settings, "speech")


def speech_limits(settings: Settings) -> Limits:
    return Limits(timeout_s=settings.isolation.asr_timeout_s, hard_rss_mb=settings.isolation.hard_rss_mb)


def speech_request(settings: Settings, audio_path: str | Path, **overrides: Any) -> SpeechRequest:
    """The speech stage's request for one file from the settings; ``overrides`` replace single fields."""
    diarization = settings.diarization
    request = SpeechRequest(
        audio_path=str(audio_path),
        language=settings.asr.language,
        initial_prompt=settings.asr.initial_prompt,
        diarize=diarization.enabled,
        num_speakers=diarization.num_speakers,
        min_speakers=diarization.min_speakers,
        max_speakers=diarization.max_speakers,
    )
    return replace(request, **overrides) if overrides else request


def finish_transcript(transcript: Transcript) -> Transcript:
    """Parent-side post-processing: speakers onto words and segments, segments split at speaker changes."""
    return assign_speakers(transcript)


def transcribe_command(settings: Settings, args: argparse.Namespace) -> int:
    from isoscribe.audio import AudioError, validate_audio
    from isoscribe.isolation import IsolationError, run_isolated
    from isoscribe.models import ModelNotFound, resolve_model
    from isoscribe.outputs import format_transcript, write_text_atomic

    try:
        validate_audio(args.file)
        resolve_model(settings.asr.model, settings.asr.model_cache_dir)
    except (AudioError, ModelNotFound) as exc:
        print(f"isoscribe: {exc}", file=sys.stderr)
        return 2
    request = speech_request(settings, args.file.resolve())
    try:
        result = run_isolated(speech_stage(settings), request, speech_limits(settings))
    except IsolationError as exc:
        print(f"isoscribe: {exc}", file=sys.stderr)
        return 1
    transcript = finish_transcript(result.value)
    log_event(
        _logger, "transcribe_done", file=args.file, duration_s=transcript.duration_s,
        wall_s=result.stats.wall_s, peak_rss_mb=result.stats.peak_rss_mb, speakers=len(transcript.speakers),
    )
    text = format_transcript(transcript, args.format)
    if args.out is not None:
        write_text_atomic(args.out, text)
    else:
        sys.stdout.write(text)
    return 0


def summarize_command(settings: Settings, args: argparse.Namespace) -> int:
    raise NotImplementedError("owned by the LLM work (issue 4)")
