"""A Celery worker process on the stage queues (``isoscribe worker``; cli/worker.py parses its flags)."""

from __future__ import annotations

import logging
import os

from celery import signals as celery_signals

from isoscribe.config import Settings
from isoscribe.distributed.app import create_app, redacted_url, visibility_timeout_s
from isoscribe.distributed.worker import start_heartbeat, use_settings
from isoscribe.logs import log_event

__all__ = ["run_worker"]

logger = logging.getLogger("isoscribe.distributed")


def run_worker(settings: Settings, queues: list[str], concurrency: int) -> None:
    """Run a Celery worker consuming ``queues`` (names of ``STAGE_QUEUES``) until it is stopped."""
    use_settings(settings)
    app = create_app(settings)
    hostname = f"isoscribe-{os.getpid()}@%h"
    log_event(
        logger, "celery_worker_start", queues=",".join(queues), concurrency=concurrency,
        broker=redacted_url(settings.celery.broker_url), shared_dir=settings.celery.shared_dir,
        visibility_timeout_s=visibility_timeout_s(settings),
    )
    # worker_init comes in the main process with the node name that tasks see as request.hostname.
    celery_signals.worker_init.connect(lambda sender, **_: start_heartbeat(settings, sender.hostname), weak=False)
    app.worker_main([
        "worker",
        f"--queues={','.join(queues)}",
        f"--concurrency={concurrency}",
        f"--hostname={hostname}",
        "--pool=prefork",
        f"--loglevel={settings.log_level.upper()}",
        # Gossip and mingle broadcast over Redis pub/sub and only matter for clusters of dozens.
        "--without-gossip",
        "--without-mingle",
    ])
