"""What the job stores (SQLite ``job_store``, Redis ``job_store_redis``) hold: a job, its options, its revisions."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from isoscribe.service.transcription import SpeechOptions

__all__ = ["Job", "JobOptions", "JobStoreUnavailable", "Revision", "TERMINAL_STATUSES", "KEPT_REVISIONS", "transcript_facts"]

TERMINAL_STATUSES = ("succeeded", "failed", "cancelled")
KEPT_REVISIONS = 50
"""Edits kept besides revision 0: the page autosaves after every edit, and each revision is a whole transcript."""


class JobStoreUnavailable(RuntimeError):
    """The job store cannot be opened (its Redis does not answer at start)."""


@dataclass(frozen=True)
class JobOptions(SpeechOptions):
    """What the client asked for (its speech options and more); stored as JSON with the job."""

    model: str = ""
    summarize: bool = False
    filename: str = ""
    """The uploaded file's name as the client gave it (shown in the web page's job list)."""
    known_speakers: dict[str, str] = field(default_factory=dict)
    """Known speaker name → the server's path of its voice sample (deleted with the job's audio)."""

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str) -> JobOptions:
        return cls(**json.loads(text))


@dataclass
class Job:
    id: str
    status: str
    created_at: float
    audio_path: str
    options: JobOptions
    started_at: float | None = None
    finished_at: float | None = None
    progress: float = 0.0
    stage: str = ""
    attempts: int = 0
    webhook_url: str | None = None
    error_type: str | None = None
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    transcript: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None
    audio_duration_s: float | None = None
    """Counted by the probe stage once the job runs."""
    audio_done_s: float | None = None
    """Seconds of audio transcribed so far."""
    api_key_id: str = ""
    """The id of the API key that made the job (``service.auth``); only that key and admin keys see it."""
    revision: int = 0
    """The revision ``transcript`` is: 0 is the model's output, each edit or rename adds one."""
    languages: list[str] = field(default_factory=list)
    """Languages detected so far, in order of first appearance."""
    speakers: int | None = None
    """How many speakers the transcript has; None when it was not diarized."""
    expected_done_at: float | None = None
    """When the job should be done (epoch seconds), from its audio seconds per second so far."""

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True)
class Revision:
    revision: int
    created_at: float
    segments: int
    """How many segments the revision has."""


def transcript_facts(transcript: dict[str, Any]) -> tuple[str, int | None]:
    """The job columns a transcript fills: its languages (JSON) and its speaker count (None: not diarized)."""
    languages = transcript.get("languages") or ([transcript["language"]] if transcript.get("language") else [])
    speakers = len(transcript.get("speakers") or []) or None
    return json.dumps(languages), speakers
