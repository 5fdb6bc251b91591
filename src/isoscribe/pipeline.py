"""The per-file stage graph: speech stage (isolated), post-processing (parent), summary stage (isolated)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any

from isoscribe.config import Settings
from isoscribe.isolation import Limits, StageSpec, TaskResult, TaskStats, run_isolated
from isoscribe.logs import log_event
from isoscribe.outputs import to_summary_md
from isoscribe.speakers import assign_speakers
from isoscribe.transcript import SpeechRequest, Summary, SummaryRequest, Transcript

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
    from isoscribe.files import write_atomic
    from isoscribe.outputs import format_transcript

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
        write_atomic(args.out, text)
    else:
        sys.stdout.write(text)
    return 0


SummarySubmit = Callable[[SummaryRequest], "Future[TaskResult[Summary]] | TaskResult[Summary]"]
"""Runs one summary task in isolation: ``executor.submit("summary", …)`` or ``run_isolated(spec, …)``."""


def summary_stage(settings: Settings) -> StageSpec:
    return StageSpec(settings.isolation.summary_stage, settings, "summary")


def summary_limits(settings: Settings) -> Limits:
    return Limits(timeout_s=settings.isolation.llm_timeout_s, hard_rss_mb=settings.isolation.hard_rss_mb)


def summary_text(transcript: Transcript) -> str:
    """The text the summary stage reads: one "SPEAKER: …" line per speaker turn when diarized,
    one line per segment otherwise."""
    lines: list[str] = []
    previous_speaker: str | None = None
    for segment in transcript.segments:
        text = segment.text.strip()
        if not text:
            continue
        if segment.speaker is not None and segment.speaker == previous_speaker:
            lines[-1] = f"{lines[-1]} {text}"
        else:
            lines.append(f"{segment.speaker}: {text}" if segment.speaker is not None else text)
        previous_speaker = segment.speaker
    return "\n".join(lines)


def summarize_safely(submit: SummarySubmit, transcript: Transcript | str) -> Summary:
    """Summarize, or return ``Summary.empty(warning)`` if the stage fails in any way.

    The summary is optional (design notes: LLM errors never fail a file), so a crash, timeout,
    memory-cap kill or exception in the stage becomes an empty summary and a logged warning
    with the cause.
    """
    return summarize_with_stats(submit, transcript)[0]


def summarize_with_stats(submit: SummarySubmit, transcript: Transcript | str) -> tuple[Summary, TaskStats | None]:
    """``summarize_safely`` that also returns the task's stats (None when it failed or did not run)."""
    text = transcript if isinstance(transcript, str) else summary_text(transcript)
    if not text.strip():
        return Summary.empty("empty transcript: nothing to summarize"), None
    try:
        outcome = submit(SummaryRequest(transcript_text=text))
        result = outcome.result() if isinstance(outcome, Future) else outcome
    except Exception as exc:  # noqa: BLE001 - any failure of the optional stage yields the empty summary
        cause = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        log_event(
            _logger,
            "summary_failed",
            logging.WARNING,
            error=type(exc).__name__,
            cause=str(exc),
            traceback=getattr(exc, "traceback_text", ""),
        )
        return Summary.empty(f"summary stage failed: {cause}"), None
    summary, stats = result.value, result.stats
    log_event(
        _logger,
        "summary_done",
        wall_s=stats.wall_s,
        peak_rss_mb=stats.peak_rss_mb,
        chunks=summary.chunks,
        prompt_tokens=summary.prompt_tokens,
        completion_tokens=summary.completion_tokens,
        completion_tokens_per_s=summary.completion_tokens / stats.wall_s if stats.wall_s else 0.0,
        action_items=len(summary.action_items),
    )
    return summary, stats


def read_transcript_text(path: Path) -> str:
    """An isoscribe JSON transcript as ``summary_text``, or a plain text file as it is."""
    raw = path.read_text(encoding="utf-8")
    if path.suffix.lower() != ".json" and not raw.lstrip().startswith("{"):
        return raw
    try:
        return summary_text(Transcript.from_dict(json.loads(raw)))
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not an isoscribe JSON transcript: {exc}") from None


def summarize_command(settings: Settings, args: argparse.Namespace) -> int:
    try:
        text = read_transcript_text(args.transcript)
    except (OSError, ValueError) as exc:
        print(f"isoscribe: {exc}", file=sys.stderr)
        return 2
    stage, limits = summary_stage(settings), summary_limits(settings)
    summary = summarize_safely(lambda request: run_isolated(stage, request, limits), text)
    if summary.warning and not summary.summary:
        print(f"isoscribe: {summary.warning}", file=sys.stderr)
        return 1
    print(to_summary_md(summary), end="")
    return 0
