"""``isoscribe transcribe``: one file through the pipeline, a fresh worker per stage."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from isoscribe.batch.progress import BatchProgress
from isoscribe.cli.signals import install_stop_signals
from isoscribe.config import Settings
from isoscribe.executors import PerTaskExecutor
from isoscribe.files import write_atomic
from isoscribe.formats import find
from isoscribe.logs import log_event
from isoscribe.models import ModelNotFound, resolve_model
from isoscribe.outputs import format_transcript
from isoscribe.pipeline.policy import FailureKind, PipelineError, Policy, batch_policy
from isoscribe.pipeline.sequence import FilePipeline
from isoscribe.pipeline.stages import speech_request, stage_specs
from isoscribe.transcript import Summary, Transcript
from isoscribe.tuning import resolve_one_worker

__all__ = ["transcribe_command"]

_logger = logging.getLogger("isoscribe.pipeline")

_INPUT_FAULTS = (FailureKind.BAD_AUDIO, FailureKind.TOO_LONG, FailureKind.TOO_SHORT)


def _out_path(out: str | None, audio: Path, fmt: str) -> Path | None:
    """Where the transcript goes: None (or ``-``) for stdout; into a folder (one that exists, or any ``DIR/``)
    as ``STEM.EXT``; else that path. ValueError when it cannot be written there."""
    if out is None or out == "-":
        return None
    path = Path(out).expanduser()
    if path.is_dir() or out.endswith(os.sep):
        path = path / f"{audio.stem}.{find(fmt, 'cli').extension}"
    blocking = next((parent for parent in path.parents if parent.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise ValueError(f"--out {out}: {blocking} is a file, not a folder")
    return path


def transcribe_command(settings: Settings, args: argparse.Namespace) -> int:
    """Exit 0 with the transcript written, 2 for a bad file or model name, 1 when a stage failed."""
    try:
        resolve_model(settings.asr.model, settings.asr.model_cache_dir)
    except ModelNotFound as exc:
        print(f"isoscribe: {exc}", file=sys.stderr)
        return 2
    try:
        out = _out_path(args.out, args.file, args.format)
    except ValueError as exc:
        print(f"isoscribe: {exc}", file=sys.stderr)
        return 2
    install_stop_signals()
    settings = resolve_one_worker(settings)
    policy = batch_policy(settings)
    policy = Policy(retry=policy.retry)  # one file, no summary: `isoscribe summarize` does that

    bar = BatchProgress(1, False if args.no_progress else None)

    def write(transcript: Transcript, summary: Summary | None) -> list[str]:
        bar.close()  # before the transcript, which may go to the same terminal
        text = format_transcript(transcript, args.format, subtitles=settings.subtitles.layout())
        if out is None:
            sys.stdout.write(text)
            return ["-"]
        write_atomic(out, text)
        return [str(out)]

    executor = PerTaskExecutor(stage_specs(settings), start_method=settings.isolation.start_method)
    try:
        pipeline = FilePipeline(executor, policy, lambda event: bar.follow(args.file.name, event))
        result = pipeline.run(speech_request(settings, args.file.resolve()), write)
    except PipelineError as error:
        message = error.message if error.kind not in _INPUT_FAULTS else _input_fault(args.file, error)
        print(f"isoscribe: {message}", file=sys.stderr)
        return 2 if error.kind in _INPUT_FAULTS else 1
    finally:
        bar.close()
        executor.shutdown()
    transcript = result.transcript
    log_event(
        _logger, "transcribe_done", file=args.file, duration_s=transcript.duration_s,
        speakers=len(transcript.speakers), timings_s=transcript.timings_s.get("total"),
    )
    return 0


def _input_fault(path: Path, error: PipelineError) -> str:
    reason = error.message.replace(f"{path.resolve()}: ", "")
    return f"{path}: {reason}"
