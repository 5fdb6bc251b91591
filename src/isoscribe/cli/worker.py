"""``isoscribe worker``: a Celery worker for the stage queues."""

from __future__ import annotations

import argparse
import sys

from isoscribe.config import Settings

__all__ = ["worker_command"]


def worker_command(settings: Settings, args: argparse.Namespace) -> int:
    """Exit 2 for unknown queue names; else run the worker until it is stopped, then exit 0."""
    from isoscribe.distributed import STAGE_QUEUES, run_worker

    queues = [name.strip() for name in str(args.queues).split(",") if name.strip()]
    unknown = sorted(set(queues) - set(STAGE_QUEUES.values()))
    if not queues or unknown:
        print(f"isoscribe worker: unknown queues {unknown}; choose from asr, llm", file=sys.stderr)
        return 2
    run_worker(settings, queues, args.concurrency)
    return 0
