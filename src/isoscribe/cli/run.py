"""``isoscribe run``: the batch."""

from __future__ import annotations

import argparse
import sys

from isoscribe.batch import OutDirBusy, run_batch
from isoscribe.cli.signals import install_stop_signals
from isoscribe.config import Settings
from isoscribe.inputs import InputError

__all__ = ["run_command"]


def run_command(settings: Settings, args: argparse.Namespace) -> int:
    """``isoscribe run``: exit 0 when every file is done, 1 when any failed, 2 on bad inputs."""
    install_stop_signals()
    progress = False if args.no_progress else None
    try:
        report = run_batch(settings, args.inputs, args.out, retry_failed=args.retry_failed, progress=progress)
    except (InputError, OutDirBusy) as exc:
        print(f"isoscribe: {exc}", file=sys.stderr)
        return 2
    counts = report.counts
    print(
        f"{counts['done']} done, {counts['failed']} failed, {counts['skipped']} skipped; "
        f"outputs and report in {args.out}"
    )
    return 0 if report.ok else 1
