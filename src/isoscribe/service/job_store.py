"""Durable record of async transcription jobs in SQLite; jobs survive a server restart.

A job is queued, running, then succeeded, failed or cancelled. On start the server calls
``requeue_running``: a job that was running when the server stopped runs again.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from isoscribe.service.transcription import SpeechOptions

__all__ = ["Job", "JobOptions", "JobStore", "TERMINAL_STATUSES"]

TERMINAL_STATUSES = ("succeeded", "failed", "cancelled")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    progress REAL NOT NULL DEFAULT 0,
    stage TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    audio_path TEXT NOT NULL,
    options TEXT NOT NULL,
    webhook_url TEXT,
    error_type TEXT,
    error TEXT,
    timings TEXT NOT NULL DEFAULT '{}',
    transcript TEXT,
    summary TEXT,
    audio_duration_s REAL,
    audio_done_s REAL,
    api_key_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, created_at);
"""
_COLUMNS = (
    "id", "status", "created_at", "started_at", "finished_at", "progress", "stage", "attempts", "audio_path",
    "options", "webhook_url", "error_type", "error", "timings", "transcript", "summary", "audio_duration_s",
    "audio_done_s", "api_key_id",
)


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

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATUSES


class JobStore:
    """Thread-safe: FastAPI handlers, the job loops and their threads share one connection under a lock."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
            _add_missing_columns(self._db)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def ping(self) -> None:
        with self._lock:
            self._db.execute("SELECT 1").fetchone()

    def create(
        self, audio_path: Path, options: JobOptions, webhook_url: str | None = None, api_key_id: str = ""
    ) -> Job:
        job = Job(
            id=f"job_{uuid.uuid4().hex}",
            status="queued",
            created_at=time.time(),
            audio_path=str(audio_path),
            options=options,
            webhook_url=webhook_url,
            api_key_id=api_key_id,
        )
        with self._lock:
            self._db.execute(
                "INSERT INTO jobs (id, status, created_at, audio_path, options, webhook_url, api_key_id) "
                "VALUES (?,?,?,?,?,?,?)",
                (job.id, job.status, job.created_at, job.audio_path, options.to_json(), webhook_url, api_key_id),
            )
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _to_job(row) if row else None

    def count(self, status: str) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM jobs WHERE status = ?", (status,)).fetchone()[0]

    def recent(self, limit: int, after: str | None = None, api_key_id: str | None = None) -> list[Job]:
        """The newest ``limit`` jobs older than job ``after``, newest first, without transcript and
        summary; only those of ``api_key_id`` unless it is None."""
        where, args = ["1"], []
        if after is not None:
            where.append("created_at < COALESCE((SELECT created_at FROM jobs WHERE id = ?), 0)")
            args.append(after)
        if api_key_id is not None:
            where.append("api_key_id = ?")
            args.append(api_key_id)
        columns = ", ".join(c for c in _COLUMNS if c not in ("transcript", "summary"))
        query = f"SELECT {columns} FROM jobs WHERE {' AND '.join(where)} ORDER BY created_at DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(query, (*args, limit)).fetchall()
        return [_to_job(row) for row in rows]

    def expired(self, finished_before: float) -> list[Job]:
        """Finished jobs whose time is up (``service.job_ttl_s``)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ? AND status IN (?,?,?)",
                (finished_before, *TERMINAL_STATUSES),
            ).fetchall()
        return [_to_job(row) for row in rows]

    def delete(self, job_id: str) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,)).rowcount == 1

    def claim_next(self, claim_id: str | None = None) -> Job | None:
        """The oldest queued job, now marked running; None when nothing is queued.

        ``claim_id`` makes a retried claim safe in a remote store; a local SQLite commit cannot
        lose its answer, so it is not needed here.
        """
        with self._lock:
            row = self._db.execute(
                "UPDATE jobs SET status = 'running', started_at = ?, attempts = attempts + 1 "
                "WHERE id = (SELECT id FROM jobs WHERE status = 'queued' ORDER BY created_at LIMIT 1) "
                "RETURNING *",
                (time.time(),),
            ).fetchone()
        return _to_job(row) if row else None

    def set_progress(
        self,
        job_id: str,
        progress: float,
        stage: str,
        audio_done_s: float | None = None,
        audio_duration_s: float | None = None,
    ) -> None:
        self._update(
            job_id, "status = 'running'", progress=progress, stage=stage,
            audio_done_s=audio_done_s, audio_duration_s=audio_duration_s,
        )

    def succeed(
        self, job_id: str, transcript: dict[str, Any], summary: dict[str, Any] | None, timings: dict[str, float]
    ) -> bool:
        return self._update(
            job_id,
            "status = 'running'",
            status="succeeded",
            progress=1.0,
            stage="",
            finished_at=time.time(),
            timings=json.dumps(timings),
            transcript=json.dumps(transcript),
            summary=json.dumps(summary) if summary is not None else None,
        )

    def replace_result(self, job_id: str, transcript: dict[str, Any], summary: dict[str, Any] | None) -> bool:
        """A corrected result (renamed speakers) of a job that succeeded."""
        return self._update(
            job_id,
            "status = 'succeeded'",
            transcript=json.dumps(transcript),
            summary=json.dumps(summary) if summary is not None else None,
        )

    def fail(self, job_id: str, error_type: str, error: str, timings: dict[str, float]) -> bool:
        return self._update(
            job_id,
            "status = 'running'",
            status="failed",
            finished_at=time.time(),
            error_type=error_type,
            error=error,
            timings=json.dumps(timings),
        )

    def cancel(self, job_id: str) -> bool:
        """Cancel a job that has not finished; False when it already had."""
        return self._update(
            job_id, "status IN ('queued', 'running')", status="cancelled", finished_at=time.time(), stage=""
        )

    def requeue(self, job_id: str) -> bool:
        return self._update(job_id, "status = 'running'", status="queued", progress=0.0, stage="")

    def requeue_running(self) -> list[str]:
        """Put jobs left running by a stopped server back in the queue; returns their ids."""
        with self._lock:
            rows = self._db.execute(
                "UPDATE jobs SET status = 'queued', progress = 0, stage = '' WHERE status = 'running' RETURNING id"
            ).fetchall()
        return [row[0] for row in rows]

    def _update(self, job_id: str, condition: str, **values: Any) -> bool:
        assignments = ", ".join(f"{name} = ?" for name in values)
        with self._lock:
            cursor = self._db.execute(
                f"UPDATE jobs SET {assignments} WHERE id = ? AND {condition}", (*values.values(), job_id)
            )
        return cursor.rowcount == 1


def _to_job(row: sqlite3.Row) -> Job:
    present = row.keys()
    return Job(
        id=row["id"],
        status=row["status"],
        created_at=row["created_at"],
        audio_path=row["audio_path"],
        options=JobOptions.from_json(row["options"]),
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        progress=row["progress"],
        stage=row["stage"],
        attempts=row["attempts"],
        webhook_url=row["webhook_url"],
        error_type=row["error_type"],
        error=row["error"],
        timings=json.loads(row["timings"] or "{}"),
        transcript=json.loads(row["transcript"]) if "transcript" in present and row["transcript"] else None,
        summary=json.loads(row["summary"]) if "summary" in present and row["summary"] else None,
        audio_duration_s=row["audio_duration_s"],
        audio_done_s=row["audio_done_s"],
        api_key_id=row["api_key_id"],
    )


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """A jobs database from an older version lacks the progress and key columns; add them in place."""
    present = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
    for column in ("audio_duration_s", "audio_done_s"):
        if column not in present:
            db.execute(f"ALTER TABLE jobs ADD COLUMN {column} REAL")
    if "api_key_id" not in present:
        db.execute("ALTER TABLE jobs ADD COLUMN api_key_id TEXT NOT NULL DEFAULT ''")
