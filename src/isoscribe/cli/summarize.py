"""``isoscribe summarize``: a transcript (isoscribe JSON or plain text) through the summary stage."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from isoscribe.config import Settings
from isoscribe.executors import PerTaskExecutor
from isoscribe.grounding import transcript_from_text
from isoscribe.outputs import to_summary_md
from isoscribe.pipeline.policy import Policy
from isoscribe.pipeline.sequence import FilePipeline
from isoscribe.pipeline.stages import stage_specs
from isoscribe.transcript import Transcript

__all__ = ["summarize_command", "read_transcript"]


def read_transcript(path: Path) -> Transcript:
    """An isoscribe JSON transcript, or a plain text file (a ``Name: text`` line keeps its speaker)."""
    raw = path.read_text(encoding="utf-8")
    if path.suffix.lower() != ".json" and not raw.lstrip().startswith("{"):
        return transcript_from_text(raw)
    try:
        return Transcript.from_dict(json.loads(raw))
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not an isoscribe JSON transcript: {exc}") from None


def summarize_command(settings: Settings, args: argparse.Namespace) -> int:
    try:
        transcript = read_transcript(args.transcript)
    except (OSError, ValueError) as exc:
        print(f"isoscribe: {exc}", file=sys.stderr)
        return 2
    executor = PerTaskExecutor(stage_specs(settings), start_method=settings.isolation.start_method)
    try:
        summary = FilePipeline(executor, Policy(summarize=True)).summarize(transcript)
    finally:
        executor.shutdown()
    if summary.warning and not summary.summary:
        print(f"isoscribe: {summary.warning}", file=sys.stderr)
        return 1
    print(to_summary_md(summary), end="")
    return 0
