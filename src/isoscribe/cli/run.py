"""``isoscribe run``: the batch."""

from __future__ import annotations

import argparse
import logging
import sys

from isoscribe.batch import OutDirBusy, OutDirFull, run_batch
from isoscribe.cli.signals import install_stop_signals
from isoscribe.config import Settings
from isoscribe.executors import ExecutorUnavailable
from isoscribe.inputs import InputError
from isoscribe.logs import log_event
from isoscribe.models import ModelNotFound, resolve_model
from isoscribe.pipeline import Cancellation

__all__ = ["run_command"]


def run_command(settings: Settings, args: argparse.Namespace) -> int:
    """``isoscribe run``: exit 0 when every file is done, 1 when any failed, 2 on bad inputs, a model that is
    not installed, a busy ``--out`` or a Celery broker that does not answer. A second stop signal kills the running stages instead of
    waiting out the grace period."""
    if settings.batch.executor == "local":  # Celery workers load their own models, on their own machines
        try:
            resolve_model(settings.asr.model, settings.asr.model_cache_dir)
        except ModelNotFound as exc:
            print(f"isoscribe: {exc}", file=sys.stderr)
            return 2
    cancellation = Cancellation()

    def stop_now() -> None:
        log_event(logging.getLogger("isoscribe.batch"), "batch_stop_now", logging.WARNING)
        cancellation.cancel()

    install_stop_signals(on_second_stop=stop_now)
    progress = False if args.no_progress else None
    try:
        report = run_batch(
            settings, args.inputs, args.out, retry_failed=args.retry_failed, progress=progress, cancellation=cancellation
        )
    except (InputError, OutDirBusy, ExecutorUnavailable) as exc:
        print(f"isoscribe: {exc}", file=sys.stderr)
        return 2
    except OutDirFull as exc:
        print(f"isoscribe: {exc}; free some space and run again: finished files are kept, the rest go on", file=sys.stderr)
        return 1
    counts = report.counts
    print(
        f"{counts['done']} done, {counts['failed']} failed, {counts['skipped']} skipped; "
        f"outputs and report in {args.out}"
    )
    return 0 if report.ok else 1
