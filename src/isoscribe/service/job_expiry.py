"""Finished jobs expire: ``service.job_ttl_s`` after a job finished, it is deleted with its audio and result."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

from isoscribe.logs import log_event
from isoscribe.service.admission import delete_files
from isoscribe.service.job_store import Job, JobStore

__all__ = ["expire_jobs_forever", "job_files"]

logger = logging.getLogger("isoscribe.service.jobs")

_MAX_SWEEP_INTERVAL_S = 600.0


def job_files(job: Job) -> list[Path]:
    return [Path(job.audio_path), *(Path(path) for path in job.options.known_speakers.values())]


async def expire_jobs_forever(store: JobStore, ttl_s: float, clock: Callable[[], float] = time.time) -> None:
    """Sweep now and then (a tenth of the TTL, at most every 10 min); a failed sweep waits for the next."""
    interval_s = min(ttl_s / 10, _MAX_SWEEP_INTERVAL_S)
    while True:
        try:
            await asyncio.to_thread(_sweep, store, clock() - ttl_s)
        except Exception as exc:  # an unreachable store: the next sweep tries again
            log_event(logger, "job_expiry_failed", logging.WARNING, error=exc)
        await asyncio.sleep(interval_s)


def _sweep(store: JobStore, finished_before: float) -> None:
    for job in store.expired(finished_before):
        store.delete(job.id)
        delete_files(job_files(job))
        log_event(logger, "job_expired", id=job.id)
