"""``isoscribe worker``: start a Celery worker on the stage queues (its flags are parsed in the CLI)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from celery import signals as celery_signals

from isoscribe.config import Settings
from isoscribe.distributed.app import STAGE_QUEUES, create_app, visibility_timeout_s
from isoscribe.distributed.worker import start_heartbeat, use_settings
from isoscribe.logs import log_event

__all__ = ["worker_command"]

logger = logging.getLogger("isoscribe.distributed")


def worker_command(settings: Settings, args: argparse.Namespace) -> int:
    """``isoscribe worker``: a Celery worker consuming the given stage queues."""
    queues = [name.strip() for name in str(args.queues).split(",") if name.strip()]
    unknown = sorted(set(queues) - set(STAGE_QUEUES.values()))
    if not queues or unknown:
        print(f"isoscribe worker: unknown queues {unknown}; choose from asr, llm", file=sys.stderr)
        return 2
    use_settings(settings)
    app = create_app(settings)
    hostname = f"isoscribe-{os.getpid()}@%h"
    log_event(
        logger, "celery_worker_start", queues=",".join(queues), concurrency=args.concurrency,
        broker=_redact(settings.celery.broker_url), shared_dir=settings.celery.shared_dir,
        visibility_timeout_s=visibility_timeout_s(settings),
    )
    # worker_init comes in the main process with the node name that tasks see as request.hostname.
    celery_signals.worker_init.connect(lambda sender, **_: start_heartbeat(settings, sender.hostname), weak=False)
    app.worker_main([
        "worker",
        f"--queues={','.join(queues)}",
        f"--concurrency={args.concurrency}",
        f"--hostname={hostname}",
        "--pool=prefork",
        f"--loglevel={settings.log_level.upper()}",
        # Gossip and mingle broadcast over Redis pub/sub and only matter for clusters of dozens.
        "--without-gossip",
        "--without-mingle",
    ])
    return 0


def _redact(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if "@" in rest else url
