"""What the per-file pipeline tells its listeners while it runs: small typed events.

Stages emit some of them from inside their worker (``SegmentReady``, ``Progress``); the pipeline adds
the rest in the parent. Every consumer (progress bar, job status, partial transcript file, Celery task
state, an HTTP stream) reads the same objects. They are picklable, so they cross process boundaries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from isoscribe.transcript import Segment

__all__ = [
    "StageStarted",
    "StageFinished",
    "Probed",
    "Progress",
    "SegmentReady",
    "StageWarning",
    "FileDone",
    "FileFailed",
    "Event",
    "Listener",
]


@dataclass(frozen=True)
class StageStarted:
    stage: str
    """probe, speech, finish, summary, outputs."""
    attempt: int = 1


@dataclass(frozen=True)
class StageFinished:
    stage: str
    wall_s: float
    peak_rss_mb: float | None = None
    peak_gpu_mb: float | None = None
    attempt: int = 1
    error: str | None = None
    """Set when this attempt failed; the stage may be tried again."""


@dataclass(frozen=True)
class Probed:
    duration_s: float
    """Counted from decoded samples by the probe stage."""


@dataclass(frozen=True)
class Progress:
    stage: str
    """speech (transcription) or diarize."""
    done_s: float
    """Seconds of audio processed."""
    total_s: float


@dataclass(frozen=True)
class SegmentReady:
    segment: Segment
    """Text, start, end and words as transcribed; ``speaker`` is set only once speakers are known."""


@dataclass(frozen=True)
class StageWarning:
    stage: str
    message: str


@dataclass(frozen=True)
class FileDone:
    duration_s: float
    outputs: tuple[str, ...] = ()


@dataclass(frozen=True)
class FileFailed:
    kind: str
    """One of ``pipeline.FailureKind``."""
    message: str


Event = StageStarted | StageFinished | Probed | Progress | SegmentReady | StageWarning | FileDone | FileFailed
Listener = Callable[[Event], None]
