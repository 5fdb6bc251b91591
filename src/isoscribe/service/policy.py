"""The service's limits over the per-file pipeline: durations, piece workers, and the retry policy
(a crashed worker is tried once more only with ``retry_crashed``)."""

from __future__ import annotations

from isoscribe.config import Settings
from isoscribe.isolation import WorkerCrashed
from isoscribe.pipeline import Policy, RetryPolicy
from isoscribe.pipeline.pieces import piece_workers

__all__ = ["MIN_DURATION_S", "service_policy", "retry_policy"]

MIN_DURATION_S = 0.1
"""Shorter audio is refused with 400, as OpenAI's endpoint does."""


def retry_policy(settings: Settings) -> RetryPolicy:
    attempts = 2 if settings.service.retry_crashed else 1
    return RetryPolicy(max_attempts=attempts, backoff_s=0.0, retry_on=(WorkerCrashed,))


def service_policy(settings: Settings, speech_stage: str = "speech", summarize: bool = False) -> Policy:
    """Limits from ``[service]``; a long file's pieces go to all ``asr_workers`` at once, as in a batch."""
    service = settings.service
    return Policy(
        summarize=summarize,
        retry=retry_policy(settings),
        max_duration_s=service.max_duration_s,
        min_duration_s=MIN_DURATION_S,
        speech_stage=speech_stage,
        piece_workers=piece_workers(settings, service.asr_workers),
    )
