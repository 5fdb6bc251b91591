"""Command line: parses flags, builds Settings, and hands off to the feature modules.

``parser`` holds every command's flags; one module per command holds its handler; ``signals`` how a
command stops on SIGTERM, SIGHUP or Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from isoscribe.cli.parser import SPEAKER_COUNT_FLAGS, build_parser, settings_overrides
from isoscribe.config import AsrSettings, Settings, SettingsError, load_settings
from isoscribe.logs import configure_logging
from isoscribe.models import cannot_transcribe, cannot_translate

__all__ = ["main", "build_parser", "settings_overrides"]

_HANDLERS = {
    "run": "isoscribe.cli.run:run_command",
    "transcribe": "isoscribe.cli.transcribe:transcribe_command",
    "summarize": "isoscribe.cli.summarize:summarize_command",
    "serve": "isoscribe.service:serve_command",
    "worker": "isoscribe.cli.worker:worker_command",
    "tune": "isoscribe.cli.tune:tune_command",
    "bench": "isoscribe.benchmarks:bench_command",
    "demo": "isoscribe.demo:demo_command",
    "models": "isoscribe.cli.models:models_command",
}


def _contradicting_speaker_flags(args: argparse.Namespace) -> str | None:
    count, least, most = (getattr(args, name, None) for name in SPEAKER_COUNT_FLAGS)
    if count is not None and ((most is not None and count > most) or (least is not None and count < least)):
        return f"--num-speakers {count} is outside --min-speakers/--max-speakers"
    if getattr(args, "diarize", None) is False and (count, least, most) != (None, None, None):
        return "a speaker count needs diarization: drop --no-diarize"
    return None


def _model_refusal(asr: AsrSettings) -> str | None:
    """Why the configured model cannot do the configured task or language; None when it can."""
    if asr.task == "translate" and (refusal := cannot_translate(asr.model, asr.model_cache_dir)):
        return refusal
    return cannot_transcribe(asr.model, asr.language, asr.model_cache_dir)


def _voice_sample_refusal(settings: Settings) -> str | None:
    from isoscribe.cli.voice_samples import voice_sample_refusal  # starts a worker: only for commands that run files

    return voice_sample_refusal(settings)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings: Settings = load_settings(args.config, settings_overrides(args))
    except SettingsError as exc:
        print(f"isoscribe: {exc}", file=sys.stderr)
        return 2
    if refusal := _contradicting_speaker_flags(args):
        print(f"isoscribe: {refusal}", file=sys.stderr)
        return 2
    if args.command in ("transcribe", "run") and (refusal := _model_refusal(settings.asr)):  # the flag, file or env
        print(f"isoscribe: {refusal}", file=sys.stderr)
        return 2
    if args.command == "run" and set(settings.batch.formats) == {"summary"} and not settings.batch.summarize:
        print("isoscribe: --formats summary with summaries off would write nothing: drop --no-summarize", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, getattr(args, "log_file", None))
    if args.command in ("transcribe", "run") and (refusal := _voice_sample_refusal(settings)):
        print(f"isoscribe: {refusal}", file=sys.stderr)
        return 2
    module_name, function_name = _HANDLERS[args.command].split(":")
    handler = getattr(importlib.import_module(module_name), function_name)
    try:
        return int(handler(settings, args) or 0)
    except KeyboardInterrupt:
        logging.getLogger("isoscribe").warning("event=interrupted")
        return 130
