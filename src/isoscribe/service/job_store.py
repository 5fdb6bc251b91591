"""Durable record of async transcription jobs in SQLite; jobs survive a server restart.

A job is queued, running, then succeeded, failed or cancelled. On start the server calls
``requeue_running``: a job that was running when the server stopped runs again.

A succeeded job's transcript can be edited: each edit (and each speaker rename) is a new revision. The job
row holds the latest; revision 0, the model's output, is copied into ``revisions`` on the first edit, and
the newest ``KEPT_REVISIONS`` after it are kept. While a job runs, its segments are kept as they arrive
(``partial_segments``) for the events feed.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from isoscribe.service.job_types import (
    KEPT_REVISIONS,
    TERMINAL_STATUSES,
    Job,
    JobOptions,
    Revision,
    transcript_facts,
)

__all__ = ["Job", "JobOptions", "JobStore", "Revision", "TERMINAL_STATUSES", "KEPT_REVISIONS", "transcript_facts"]

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
    api_key_id TEXT NOT NULL DEFAULT '',
    revision INTEGER NOT NULL DEFAULT 0,
    languages TEXT NOT NULL DEFAULT '[]',
    speakers INTEGER,
    expected_done_at REAL
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, created_at);
CREATE TABLE IF NOT EXISTS revisions (
    job_id TEXT NOT NULL,
    revision INTEGER NOT NULL,
    created_at REAL NOT NULL,
    segments INTEGER NOT NULL,
    transcript TEXT NOT NULL,
    PRIMARY KEY (job_id, revision)
);
CREATE TABLE IF NOT EXISTS partial_segments (
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    segment TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
);
"""
_COLUMNS = (
    "id", "status", "created_at", "started_at", "finished_at", "progress", "stage", "attempts", "audio_path",
    "options", "webhook_url", "error_type", "error", "timings", "transcript", "summary", "audio_duration_s",
    "audio_done_s", "api_key_id", "revision", "languages", "speakers", "expected_done_at",
)
_ADDED_COLUMNS = {
    "audio_duration_s": "REAL", "audio_done_s": "REAL", "api_key_id": "TEXT NOT NULL DEFAULT ''",
    "revision": "INTEGER NOT NULL DEFAULT 0", "languages": "TEXT NOT NULL DEFAULT '[]'", "speakers": "INTEGER",
    "expected_done_at": "REAL",
}
"""Columns a jobs database of an older version lacks, added in place."""


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

    def owner_of(self, job_id: str) -> str | None:
        """The job's ``api_key_id`` without reading its transcript; None when there is no such job."""
        with self._lock:
            row = self._db.execute("SELECT api_key_id FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return row[0] if row else None

    def count(self, status: str) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM jobs WHERE status = ?", (status,)).fetchone()[0]

    def count_all(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]

    def recent(self, limit: int, after: str | None = None, api_key_id: str | None = None) -> list[Job]:
        """The newest ``limit`` jobs older than job ``after``, newest first, without transcript and
        summary; only those of ``api_key_id`` unless it is None."""
        where, args = ["1"], []
        if after is not None:
            where.append("(created_at, id) < (SELECT created_at, id FROM jobs WHERE id = ?)")  # none: no row
            args.append(after)
        if api_key_id is not None:
            where.append("api_key_id = ?")
            args.append(api_key_id)
        columns = ", ".join(c for c in _COLUMNS if c not in ("transcript", "summary"))
        query = f"SELECT {columns} FROM jobs WHERE {' AND '.join(where)} ORDER BY created_at DESC, id DESC LIMIT ?"
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
            self._db.execute("DELETE FROM revisions WHERE job_id = ?", (job_id,))
            self._db.execute("DELETE FROM partial_segments WHERE job_id = ?", (job_id,))
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
        expected_done_at: float | None = None,
        languages: list[str] | None = None,
    ) -> None:
        self._update(
            job_id, "status = 'running'", progress=progress, stage=stage, audio_done_s=audio_done_s,
            audio_duration_s=audio_duration_s, expected_done_at=expected_done_at, languages=json.dumps(languages or []),
        )

    def succeed(
        self, job_id: str, transcript: dict[str, Any], summary: dict[str, Any] | None, timings: dict[str, float]
    ) -> bool:
        languages, speakers = transcript_facts(transcript)
        return self._update(
            job_id,
            "status = 'running'",
            status="succeeded",
            progress=1.0,
            stage="",
            finished_at=time.time(),
            expected_done_at=None,
            timings=json.dumps(timings),
            transcript=json.dumps(transcript),
            summary=json.dumps(summary) if summary is not None else None,
            languages=languages,
            speakers=speakers,
        )

    def add_revision(
        self, job_id: str, base_revision: int, transcript: dict[str, Any], summary: dict[str, Any] | None = None
    ) -> int | None:
        """``transcript`` as the succeeded job's next revision (``summary`` too, unless None); the new number, or
        None when ``base_revision`` is not the latest (or the job has no result)."""
        languages, speakers = transcript_facts(transcript)
        with self._lock:
            row = self._db.execute(
                "SELECT revision, transcript, finished_at FROM jobs WHERE id = ? AND status = 'succeeded'", (job_id,)
            ).fetchone()
            if row is None or row["revision"] != base_revision:
                return None
            new = base_revision + 1
            self._db.execute("BEGIN")
            try:
                if base_revision == 0:
                    original = row["transcript"]
                    self._db.execute(
                        "INSERT OR IGNORE INTO revisions VALUES (?,0,?,?,?)",
                        (job_id, row["finished_at"] or time.time(), len(json.loads(original).get("segments", [])), original),
                    )
                text = json.dumps(transcript)
                self._db.execute(
                    "INSERT INTO revisions VALUES (?,?,?,?,?)",
                    (job_id, new, time.time(), len(transcript.get("segments", [])), text),
                )
                self._db.execute(
                    "UPDATE jobs SET transcript = ?, revision = ?, languages = ?, speakers = ?, "
                    "summary = COALESCE(?, summary) WHERE id = ?",
                    (text, new, languages, speakers, json.dumps(summary) if summary is not None else None, job_id),
                )
                self._db.execute(
                    "DELETE FROM revisions WHERE job_id = ? AND revision > 0 AND revision <= ?",
                    (job_id, new - KEPT_REVISIONS),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return new

    def revisions(self, job_id: str) -> list[Revision]:
        """The revisions kept of an edited job, oldest first; empty before the first edit."""
        with self._lock:
            rows = self._db.execute(
                "SELECT revision, created_at, segments FROM revisions WHERE job_id = ? ORDER BY revision", (job_id,)
            ).fetchall()
        return [Revision(*row) for row in rows]

    def transcript_at(self, job_id: str, revision: int) -> dict[str, Any] | None:
        """A kept revision's transcript; None when it is not kept (before the first edit: see ``Job.transcript``)."""
        with self._lock:
            row = self._db.execute(
                "SELECT transcript FROM revisions WHERE job_id = ? AND revision = ?", (job_id, revision)
            ).fetchone()
        return json.loads(row[0]) if row else None

    def add_partial_segment(self, job_id: str, index: int, segment: dict[str, Any]) -> None:
        """Segment ``index`` of a running job; one that is there already (a retried stage) is kept as it was."""
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO partial_segments VALUES (?,?,?)", (job_id, index, json.dumps(segment))
            )

    def partial_segments(self, job_id: str, start: int = 0) -> list[dict[str, Any]]:
        """The segments of the job from number ``start`` on, as they arrived while it ran."""
        with self._lock:
            rows = self._db.execute(
                "SELECT segment FROM partial_segments WHERE job_id = ? AND seq >= ? ORDER BY seq", (job_id, start)
            ).fetchall()
        return [json.loads(row[0]) for row in rows]

    def fail(self, job_id: str, error_type: str, error: str, timings: dict[str, float]) -> bool:
        return self._update(
            job_id,
            "status = 'running'",
            status="failed",
            finished_at=time.time(),
            expected_done_at=None,
            error_type=error_type,
            error=error,
            timings=json.dumps(timings),
        )

    def cancel(self, job_id: str) -> str | None:
        """Cancel a job that has not finished; the status it had ("queued" or "running"), None when it had finished."""
        for status in ("queued", "running"):  # a job claimed between the two is cancelled as running
            if self._update(
                job_id, f"status = '{status}'", status="cancelled", finished_at=time.time(), stage="", expected_done_at=None
            ):
                return status
        return None

    def requeue(self, job_id: str) -> bool:
        return self._update(job_id, "status = 'running'", status="queued", progress=0.0, stage="")

    def requeue_running(self) -> list[str]:
        """Put jobs left running by a stopped server back in the queue; returns their ids."""
        with self._lock:
            rows = self._db.execute(
                "UPDATE jobs SET status = 'queued', progress = 0, stage = '' WHERE status = 'running' RETURNING id"
            ).fetchall()
        return [row[0] for row in rows]

    def requeue_orphans(self) -> list[str]:
        """Running jobs of another server that stopped: none, as one server owns the database file."""
        return []

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
        revision=row["revision"],
        languages=json.loads(row["languages"] or "[]"),
        speakers=row["speakers"],
        expected_done_at=row["expected_done_at"],
    )


def _add_missing_columns(db: sqlite3.Connection) -> None:
    present = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
    for column, kind in _ADDED_COLUMNS.items():
        if column not in present:
            db.execute(f"ALTER TABLE jobs ADD COLUMN {column} {kind}")
