"""``isoscribe summarize``: a transcript (isoscribe JSON or plain text) through the summary stage;
prints the digest as markdown (``--format md``) or the summary object (``--format json``)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

from isoscribe.config import Settings
from isoscribe.executors import PerTaskExecutor
from isoscribe.files import read_text
from isoscribe.outputs import to_summary_md
from isoscribe.pipeline.policy import Policy
from isoscribe.pipeline.sequence import FilePipeline
from isoscribe.pipeline.stages import stage_specs
from isoscribe.summary.digest import EMPTY_WARNING
from isoscribe.summary.text import has_words, transcript_from_text
from isoscribe.transcript import Transcript
from isoscribe.transcript_files import is_subtitles, transcript_from_subtitles, transcript_from_tsv

__all__ = ["summarize_command", "read_transcript"]


def read_transcript(path: Path) -> Transcript:
    """An isoscribe JSON transcript, SRT, WebVTT or TSV cues, or a plain text file (a ``Name: text`` line keeps
    its speaker)."""
    raw = read_text(path)
    if is_subtitles(path.suffix, raw):
        return _cues(path, transcript_from_subtitles, raw, path.suffix.lower().lstrip(".") or "vtt")
    if path.suffix.lower() == ".tsv":
        return _cues(path, lambda text, _: transcript_from_tsv(text), raw, "tsv")
    if path.suffix.lower() != ".json" and not raw.lstrip().startswith("{"):
        return transcript_from_text(raw)
    try:
        return _checked(Transcript.from_dict(json.loads(raw)))
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path} is not an isoscribe JSON transcript: {exc}") from None


def _cues(path: Path, read: Callable[[str, str], Transcript], raw: str, kind: str) -> Transcript:
    try:
        return read(raw, kind.upper())
    except ValueError as exc:
        raise ValueError(f"{path} is not a {kind.upper()} transcript: {exc}") from None


def _checked(transcript: Transcript) -> Transcript:
    for segment in transcript.segments:
        times_are_numbers = all(
            isinstance(t, int | float) and not isinstance(t, bool) and math.isfinite(t) for t in (segment.start, segment.end)
        )
        if not isinstance(segment.text, str) or not times_are_numbers:
            raise TypeError(f"segment {segment.id}: text must be a string, start and end finite numbers")
        if segment.speaker is not None and not isinstance(segment.speaker, str):
            raise TypeError(f"segment {segment.id}: speaker must be a string or null")
    return transcript


def summarize_command(settings: Settings, args: argparse.Namespace) -> int:
    try:
        transcript = read_transcript(args.transcript)
    except (OSError, ValueError) as exc:
        print(f"isoscribe: {exc}", file=sys.stderr)
        return 2
    if not any(has_words(segment.text) for segment in transcript.segments):
        print(f"isoscribe: {args.transcript}: {EMPTY_WARNING}", file=sys.stderr)
        return 2
    executor = PerTaskExecutor(stage_specs(settings), start_method=settings.isolation.start_method)
    try:
        summary = FilePipeline(executor, Policy(summarize=True)).summarize(transcript)
    finally:
        executor.shutdown()
    for warning in summary.warnings:
        print(f"isoscribe: {warning}", file=sys.stderr)
    if not summary.overview:
        return 1
    if args.format == "json":
        print(json.dumps(summary.to_dict(), indent=2, ensure_ascii=False))
    else:
        print(to_summary_md(summary), end="")
    return 0
