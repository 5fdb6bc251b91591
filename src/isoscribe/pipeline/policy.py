"""What differs between entry points: which stages run, how failures are retried, what limits apply.

Every entry point (CLI, batch, synchronous endpoint, async job, Celery) runs the same ``FilePipeline``
with one of these. Failures leave the pipeline as a ``PipelineError`` whose ``kind`` says what went
wrong in terms a caller can act on (an HTTP status, a ledger row, an exit code).
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum

from isoscribe.config import Settings
from isoscribe.isolation import (
    IsolationError,
    StageError,
    StageOutOfMemory,
    StageTimeout,
    TaskCancelled,
    WorkerCrashed,
)

__all__ = ["FailureKind", "PipelineError", "RetryPolicy", "Policy", "batch_policy", "likely_oom_kill"]


class FailureKind(StrEnum):
    BAD_AUDIO = "bad_audio"
    """Not decodable audio, no audio stream, no samples, or a file that crashes or hangs the decoder."""
    TOO_LONG = "too_long"
    TOO_SHORT = "too_short"
    CRASHED = "crashed"
    TIMEOUT = "timeout"
    OUT_OF_MEMORY = "out_of_memory"
    STAGE_ERROR = "stage_error"
    CANCELLED = "cancelled"


class PipelineError(Exception):
    """One file failed; ``message`` keeps the cause (signal, peak memory, the stage's own error)."""

    def __init__(self, kind: FailureKind, stage: str, message: str, cause: IsolationError | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.stage = stage
        self.message = message
        self.cause = cause

    @property
    def detail(self) -> str:
        """The full cause for logs and the ledger: the stage's error type and text, signal, peak memory."""
        cause = "" if self.cause is None else str(self.cause)
        return self.message if cause in self.message else cause

    @classmethod
    def from_isolation(cls, stage: str, error: IsolationError) -> PipelineError:
        if isinstance(error, StageError) and error.exc_type == "AudioTooLong":
            return cls(FailureKind.TOO_LONG, stage, error.message, error)
        if isinstance(error, StageError) and error.exc_type == "AudioError":
            return cls(FailureKind.BAD_AUDIO, stage, error.message, error)
        if stage == "probe" and likely_oom_kill(error):
            # A SIGKILL the runtime did not send: the kernel's OOM killer. Memory was short, not the file
            # bad, so it is worth another try.
            return cls(FailureKind.OUT_OF_MEMORY, stage, f"killed, most likely by the kernel's OOM killer: {error}", error)
        if stage == "probe" and isinstance(error, (WorkerCrashed, StageTimeout, StageOutOfMemory)):
            # Nothing but the file's own bytes ran there: a decoder that crashes or hangs on it means bad input.
            return cls(FailureKind.BAD_AUDIO, stage, f"the audio decoder failed on this file: {error}", error)
        kinds = (
            (TaskCancelled, FailureKind.CANCELLED),
            (WorkerCrashed, FailureKind.CRASHED),
            (StageTimeout, FailureKind.TIMEOUT),
            (StageOutOfMemory, FailureKind.OUT_OF_MEMORY),
        )
        kind = next((kind for error_type, kind in kinds if isinstance(error, error_type)), FailureKind.STAGE_ERROR)
        return cls(kind, stage, str(error), error)


def likely_oom_kill(error: IsolationError) -> bool:
    """A worker SIGKILLed by someone other than the runtime (its own kills are timeouts, caps and cancels)."""
    return isinstance(error, WorkerCrashed) and error.signal == signal.SIGKILL


@dataclass(frozen=True)
class RetryPolicy:
    """How often a stage is tried; only failures of ``retry_on`` kinds are tried again, after a doubling backoff."""

    max_attempts: int = 1
    backoff_s: float = 1.0
    retry_on: tuple[type[IsolationError], ...] = (WorkerCrashed, StageOutOfMemory)
    only_if: Callable[[IsolationError], bool] | None = None
    """A further condition on the error (the probe retries only what the OOM killer did)."""

    def covers(self, error: IsolationError) -> bool:
        return isinstance(error, self.retry_on) and (self.only_if is None or self.only_if(error))

    def should_retry(self, error: IsolationError, attempt: int) -> bool:
        return attempt < self.max_attempts and self.covers(error)

    def for_probe(self) -> RetryPolicy:
        """A probe is tried again only after an OOM kill; any other failure there is the file's."""
        return replace(self, retry_on=(WorkerCrashed,), only_if=likely_oom_kill)

    def delay_s(self, attempt: int) -> float:
        return self.backoff_s * 2 ** (attempt - 1)


@dataclass(frozen=True)
class Policy:
    """Which stages run for a file and under which rules."""

    summarize: bool = False
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    """For the speech stage; the probe is never retried (its failures are the file's), the summary is optional."""
    max_duration_s: float | None = None
    """Enforced while decoding (probe and speech), never from metadata."""
    min_duration_s: float = 0.0
    speech_stage: str = "speech"
    """The executor's name for the speech stage (the service keeps one per model)."""
    piece_workers: int = 1
    """Above 1: a file longer than one piece goes to the speech workers piece by piece, all at once."""


def batch_policy(settings: Settings) -> Policy:
    """The batch's and the CLI's rules: crashes and memory-cap kills retried ``batch.max_attempts`` times."""
    from isoscribe.pipeline.pieces import piece_workers

    retry = RetryPolicy(max_attempts=settings.batch.max_attempts, backoff_s=settings.batch.retry_backoff_s)
    return Policy(
        summarize=settings.batch.summarize and settings.llm.enabled,
        retry=retry,
        piece_workers=piece_workers(settings, settings.batch.workers),
    )
