"""Durable record of batch work: one row per (input content, result-changing settings), in SQLite.

The ledger lives in the output directory. It is what makes a batch resumable: finished files are
skipped, failed ones are kept with their cause, and rows left ``running`` by a killed runner are
recovered on the next start. Every stage attempt is kept too (wall time, peak memory), which is
where the batch learns each stage's memory peak for its budget.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from isoscribe.config import AsrSettings, Settings, SubtitleSettings
from isoscribe.pipeline.stages import known_speakers_in

__all__ = [
    "LEDGER_NAME",
    "FileStatus",
    "StageRecord",
    "LedgerRow",
    "Ledger",
    "content_hash",
    "settings_fingerprint",
    "fingerprinted_settings",
]

LEDGER_NAME = "ledger.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    key TEXT PRIMARY KEY,
    input_path TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    output_name TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    warning TEXT,
    outputs TEXT NOT NULL DEFAULT '[]',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS stage_runs (
    key TEXT NOT NULL,
    stage TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    wall_s REAL NOT NULL,
    peak_rss_mb REAL,
    peak_gpu_mb REAL,
    ok INTEGER NOT NULL,
    finished_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS stage_runs_key ON stage_runs (key);
"""


class FileStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class StageRecord:
    wall_s: float
    peak_rss_mb: float | None = None
    peak_gpu_mb: float | None = None


@dataclass
class LedgerRow:
    key: str
    input_path: str
    content_hash: str
    fingerprint: str
    output_name: str
    status: FileStatus
    attempts: int
    error: str | None
    warning: str | None
    outputs: list[str]
    stages: dict[str, StageRecord] = field(default_factory=dict)
    """Latest successful record of each stage."""


def content_hash(path: Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as audio:
        while chunk := audio.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


_ASR_ADDED = (
    "language_per_segment", "loop_detection", "recover_skipped_speech", "hallucination_silence_threshold_s",
    "hotwords", "condition_on_previous_text", "word_timestamps", "no_speech_threshold",
)
"""Settings added after the first ledgers (checks on the decoded text, decoding options): in the fingerprint
only when changed, so older ledgers keep theirs."""


def settings_fingerprint(settings: Settings) -> str:
    """Hash of the settings that change a file's results (``fingerprinted_settings``)."""
    text = json.dumps(fingerprinted_settings(settings), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fingerprinted_settings(settings: Settings) -> dict[str, Any]:
    """The settings that change a file's results; runtime knobs (workers, isolation…) are left out."""
    asr = settings.asr.model_dump(
        mode="json",
        include={"model", "compute_type", "language", "beam_size", "temperatures", "initial_prompt", "vad_filter"},
    )
    diarization = settings.diarization
    diarizes = diarization.enabled or diarization.speakers_dir is not None
    relevant: dict[str, Any] = {
        "asr": asr,
        # speakers_dir is left out so that ledgers from before it existed keep their fingerprint.
        "diarization": diarization.model_dump(mode="json", exclude={"speakers_dir"}) if diarizes else None,
        "summarize": settings.batch.summarize and settings.llm.enabled,
        "formats": sorted(settings.batch.formats),
    }
    if settings.asr.task != "transcribe":
        asr["task"] = settings.asr.task
    for name in _ASR_ADDED:
        if getattr(settings.asr, name) != AsrSettings.model_fields[name].default:
            asr[name] = getattr(settings.asr, name)
    if diarization.speakers_dir is not None:
        samples = known_speakers_in(diarization.speakers_dir)
        relevant["speakers"] = {sample.name: content_hash(Path(sample.audio_path)) for sample in samples}
    if {"srt", "vtt"} & set(settings.batch.formats) and settings.subtitles != SubtitleSettings():
        relevant["subtitles"] = settings.subtitles.model_dump(mode="json")  # only when changed: older ledgers hold
    if relevant["summarize"]:
        relevant["llm"] = settings.llm.model_dump(
            mode="json",
            include={"backend", "model_path", "model", "base_url", "n_ctx", "max_tokens", "temperature",
                     "summary_prompt", "reduce_prompt", "context_tokens", "overview"},
        )
    return relevant


class Ledger:
    """SQLite ledger; safe to share between the batch's threads (one connection behind a lock)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    @classmethod
    def in_dir(cls, out_dir: Path) -> Ledger:
        return cls(Path(out_dir) / LEDGER_NAME)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def recover_interrupted(self, max_attempts: int, resumable: Callable[[str], bool] = lambda key: False) -> list[LedgerRow]:
        """Rows left ``running`` by a runner that died: queue them again, or fail those out of attempts.

        A file whose every attempt ended with the runner dead is failed rather than retried forever, unless
        ``resumable(key)``: its speech is kept, so the next attempt only writes its summary and outputs (in
        phased mode a file waits for those with its row ``running``, and a kill then is none of its doing).
        """
        with self._lock:
            rows = self._db.execute(
                "SELECT key, attempts FROM files WHERE status = ?", (FileStatus.RUNNING,)
            ).fetchall()
            now = time.time()
            for row in rows:
                if row["attempts"] >= max_attempts and not resumable(row["key"]):
                    cause = f"runner stopped during each of {row['attempts']} attempts"
                    self._db.execute(
                        "UPDATE files SET status = ?, error = ?, updated_at = ? WHERE key = ?",
                        (FileStatus.FAILED, cause, now, row["key"]),
                    )
                else:
                    self._db.execute(
                        "UPDATE files SET status = ?, updated_at = ? WHERE key = ?",
                        (FileStatus.QUEUED, now, row["key"]),
                    )
        return [self.get(row["key"]) for row in rows]

    def enqueue(self, input_path: Path, content_hash: str, fingerprint: str, output_name: str) -> LedgerRow:
        """The row for this content and settings, created ``queued`` when new."""
        key = f"{content_hash}:{fingerprint}"
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO files (key, input_path, content_hash, fingerprint, output_name, status,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (key, str(input_path), content_hash, fingerprint, output_name, FileStatus.QUEUED, now, now),
            )
            self._db.execute(
                "UPDATE files SET input_path = ?, output_name = ? WHERE key = ? AND status != ?",
                (str(input_path), output_name, key, FileStatus.DONE),
            )
        return self.get(key)

    def get(self, key: str) -> LedgerRow:
        with self._lock:
            row = self._db.execute("SELECT * FROM files WHERE key = ?", (key,)).fetchone()
            if row is None:
                raise KeyError(key)
            stage_rows = self._db.execute(
                "SELECT stage, wall_s, peak_rss_mb, peak_gpu_mb FROM stage_runs WHERE key = ? AND ok = 1"
                " ORDER BY finished_at",
                (key,),
            ).fetchall()
        stages = {s["stage"]: StageRecord(s["wall_s"], s["peak_rss_mb"], s["peak_gpu_mb"]) for s in stage_rows}
        return LedgerRow(
            key=row["key"],
            input_path=row["input_path"],
            content_hash=row["content_hash"],
            fingerprint=row["fingerprint"],
            output_name=row["output_name"],
            status=FileStatus(row["status"]),
            attempts=row["attempts"],
            error=row["error"],
            warning=row["warning"],
            outputs=json.loads(row["outputs"]),
            stages=stages,
        )

    def rows(self) -> list[LedgerRow]:
        with self._lock:
            keys = [r["key"] for r in self._db.execute("SELECT key FROM files ORDER BY created_at, key")]
        return [self.get(key) for key in keys]

    def mark_running(self, key: str) -> int:
        """Start an attempt; returns the attempt number."""
        with self._lock:
            self._db.execute(
                "UPDATE files SET status = ?, attempts = attempts + 1, error = NULL, updated_at = ? WHERE key = ?",
                (FileStatus.RUNNING, time.time(), key),
            )
            return self._db.execute("SELECT attempts FROM files WHERE key = ?", (key,)).fetchone()["attempts"]

    def mark_interrupted(self, key: str) -> None:
        """A stop ended the running attempt: the file is queued again, and the attempt does not count."""
        with self._lock:
            self._db.execute(
                "UPDATE files SET status = ?, attempts = MAX(attempts - 1, 0), updated_at = ? WHERE key = ? AND status = ?",
                (FileStatus.QUEUED, time.time(), key, FileStatus.RUNNING),
            )

    def record_stage(self, key: str, stage: str, attempt: int, record: StageRecord, ok: bool = True) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO stage_runs (key, stage, attempt, wall_s, peak_rss_mb, peak_gpu_mb, ok, finished_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (key, stage, attempt, record.wall_s, record.peak_rss_mb, record.peak_gpu_mb, int(ok), time.time()),
            )

    def mark_done(self, key: str, outputs: list[str], warning: str | None = None) -> None:
        """Done with ``outputs``; a done row of the same recording under other settings wrote the same files,
        now overwritten, so it is queued again (run with those settings, it is redone, not skipped)."""
        with self._lock:
            self._db.execute(
                "UPDATE files SET status = ?, outputs = ?, warning = ?, error = NULL, updated_at = ? WHERE key = ?",
                (FileStatus.DONE, json.dumps(outputs), warning, time.time(), key),
            )
            self._db.execute(
                "UPDATE files SET status = ?, attempts = 0, outputs = '[]', updated_at = ? WHERE status = ? AND key != ?"
                " AND output_name = (SELECT output_name FROM files WHERE key = ?)",
                (FileStatus.QUEUED, time.time(), FileStatus.DONE, key, key),
            )

    def done_under(self, output_name: str, other_than: str) -> bool:
        """Whether a recording other than ``other_than`` (a content hash) has finished outputs named so."""
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM files WHERE output_name = ? AND content_hash != ? AND status = ?",
                (output_name, other_than, FileStatus.DONE),
            ).fetchone()
        return row is not None

    def mark_failed(self, key: str, error: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE files SET status = ?, error = ?, updated_at = ? WHERE key = ?",
                (FileStatus.FAILED, error, time.time(), key),
            )

    def requeue(self, key: str) -> None:
        """Give a failed file a fresh set of attempts (``--retry-failed``)."""
        with self._lock:
            self._db.execute(
                "UPDATE files SET status = ?, attempts = 0, updated_at = ? WHERE key = ?",
                (FileStatus.QUEUED, time.time(), key),
            )

    def learned_peak_mb(self, stage: str, fingerprint: str | None = None, *, gpu: bool = False) -> float | None:
        """Highest peak (RSS, or GPU memory with ``gpu``) a successful run of ``stage`` reached,
        preferring rows with these settings."""
        column = "peak_gpu_mb" if gpu else "peak_rss_mb"
        with self._lock:
            if fingerprint is not None:
                peak = self._db.execute(
                    f"SELECT MAX(r.{column}) FROM stage_runs r JOIN files f ON f.key = r.key"
                    " WHERE r.stage = ? AND r.ok = 1 AND f.fingerprint = ?",
                    (stage, fingerprint),
                ).fetchone()[0]
                if peak is not None:
                    return float(peak)
            peak = self._db.execute(
                f"SELECT MAX({column}) FROM stage_runs WHERE stage = ? AND ok = 1", (stage,)
            ).fetchone()[0]
        return None if peak is None else float(peak)
