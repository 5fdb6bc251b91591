"""Live transcription sessions of the service: admission, limits, and the realtime stage's worker pool.

The realtime stage gets a pool of its own (``service.realtime_workers`` recycled workers, made when
the first session opens): a live utterance must not wait behind an hour-long file on the speech
pool. Its workers load the configured Whisper model and Silero VAD; they are recycled by the same
isolation policy as every other stage.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from isoscribe.config import Settings
from isoscribe.executors import PooledExecutor
from isoscribe.isolation import StageSpec, WorkerPool
from isoscribe.logs import log_event
from isoscribe.pipeline.stages import stage_limits
from isoscribe.service.realtime_protocol import TRANSCRIPTION_MODEL_ALIASES
from isoscribe.service.realtime_session import SessionLimits
from isoscribe.stages.realtime import VoiceActivityRequest

__all__ = ["REALTIME_STAGE", "SessionRefused", "RealtimeSessions"]

REALTIME_STAGE = "realtime"
logger = logging.getLogger("isoscribe.service")


@dataclass
class SessionRefused(Exception):
    message: str
    code: str
    close_code: int


class RealtimeSessions:
    """Counts open sessions against ``service.max_realtime_sessions`` and runs their stage tasks."""

    def __init__(self, service: Any) -> None:
        self.service = service
        self.open = 0

    @property
    def settings(self) -> Settings:
        return self.service.settings

    def limits(self) -> SessionLimits:
        service = self.settings.service
        return SessionLimits(
            max_session_s=service.max_realtime_session_s,
            partial_after_s=service.realtime_partial_after_s,
            served_models=(*TRANSCRIPTION_MODEL_ALIASES, self.settings.asr.model),
            languages=self.service.models.languages(self.settings.asr.model),
        )

    def admit(self) -> None:
        """Take a session slot (pair with ``release``) or raise SessionRefused."""
        service = self.service
        if not service.accepting:
            raise SessionRefused("the server is shutting down", "server_shutting_down", 1012)
        if not isinstance(service.executor, PooledExecutor):
            raise SessionRefused(
                "live transcription needs the local worker pools (service.executor = 'local')",
                "realtime_unavailable", 1011,
            )
        limit = self.settings.service.max_realtime_sessions
        if self.open >= limit:
            raise SessionRefused(
                f"too many live sessions: this server holds at most {limit} at once "
                "(service.max_realtime_sessions); try again when one has ended",
                "session_limit_reached", 1013,
            )
        self._ensure_pool(service.executor)  # before the slot is taken: a failure here must not keep one
        self.open += 1
        log_event(logger, "realtime_session_opened", open=self.open)

    def release(self) -> None:
        self.open -= 1
        log_event(logger, "realtime_session_closed", open=self.open)

    async def run_task(self, request: Any) -> Any:
        future = self.service.executor.submit(REALTIME_STAGE, request)
        return (await asyncio.wrap_future(future)).value

    def _ensure_pool(self, executor: PooledExecutor) -> None:
        """Make the pool on the first session and start its workers loading at once (an empty VAD task)."""
        if REALTIME_STAGE in executor.factories:
            return
        settings = self.settings
        isolation = settings.isolation
        spec = StageSpec(isolation.realtime_stage, settings, REALTIME_STAGE)
        limits = stage_limits(isolation, isolation.asr_timeout_s)
        executor.factories[REALTIME_STAGE] = lambda: WorkerPool(
            spec,
            size=settings.service.realtime_workers,
            max_tasks_per_worker=None,  # a task is a VAD window or one utterance: recycling goes by RSS and idleness
            max_rss_mb=isolation.max_rss_mb,
            idle_ttl_s=isolation.idle_ttl_s,
            prespawn=True,
            limits=limits,
            start_method=isolation.start_method,
        )
        try:
            executor.submit(REALTIME_STAGE, VoiceActivityRequest(b"", 16000))
        except BaseException:
            executor.factories.pop(REALTIME_STAGE, None)  # the next session tries again
            raise
