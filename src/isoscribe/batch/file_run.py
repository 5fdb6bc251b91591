"""One input file of a batch through the pipeline, and its ledger bookkeeping: attempts, stage records,
interruptions (a stop is never a failure), the partial transcript and the kept speech result."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from typing import TYPE_CHECKING

from isoscribe.batch.outdir import OutDirFull, disk_full
from isoscribe.batch.partial import PartialTranscript, SpeechDone, speech_done_path
from isoscribe.batch.plan import Job, file_report, stage_dict
from isoscribe.batch.progress import BatchProgress
from isoscribe.executors import StageExecutor
from isoscribe.ledger import FileStatus, StageRecord
from isoscribe.logs import log_event
from isoscribe.pipeline import (
    Event,
    FailureKind,
    FilePipeline,
    PipelineError,
    SegmentReady,
    StageFinished,
    StageStarted,
)
from isoscribe.report import FileReport
from isoscribe.transcript import Summary, Transcript

if TYPE_CHECKING:
    from isoscribe.batch.runner import Batch

__all__ = ["FileRun"]

log = logging.getLogger("isoscribe.batch")


class FileRun:
    """One input through the pipeline: its events feed the ledger, the progress bar and the partial
    transcript; ``transcribe`` and ``finish`` are the pipeline's two halves (phased mode runs them apart)."""

    def __init__(
        self, batch: Batch, job: Job, executor: StageExecutor, bar: BatchProgress, reports: dict[str, FileReport]
    ) -> None:
        self.batch = batch
        self.reports = reports
        self.settings = batch.settings
        self.ledger = batch.ledger
        self.key = job.row.key
        self.attempts_done = job.row.attempts
        self.name = job.row.output_name
        self.input_path = job.input_path
        self.bar = bar
        self.attempt = job.row.attempts
        self._attempt_lock = threading.Lock()
        self.stages: dict[str, dict[str, float | None]] = {}
        self.partial = PartialTranscript(batch.out_dir / self.name / f"{self.name}.partial.txt")
        self.speech_done = SpeechDone(speech_done_path(batch.out_dir, self.key))
        self.pipeline = FilePipeline(executor, batch.policy, self._on_event, batch.cancellation)

    def transcribe(self) -> Transcript | None:
        """Probe, speech and speakers; None when the file failed or the batch is stopping. A transcript a
        stopped run kept is taken as it is: the speech stage does not run again."""
        from isoscribe.pipeline import speech_request

        kept = self.speech_done.load()
        if kept is not None:
            self.attempt = self.ledger.mark_running(self.key)  # the attempt that finishes it
            log_event(log, "file_resumed", file=self.input_path, after="speech")
            self.bar.probed(self.name, kept.duration_s)
            return kept
        try:
            transcript = self.pipeline.transcribe(speech_request(self.settings, self.input_path), self.attempts_done)
            transcript.source = transcript.source or str(self.input_path)
            self.speech_done.save(transcript)
        except PipelineError as error:
            self._failed(error)
            return None
        except Exception as exc:  # a bug in post-processing fails this file, not the batch
            self._error(exc)
            return None
        return transcript

    def finish(self, transcript: Transcript | None) -> FileReport:
        """Summary, outputs and the ledger row for a transcribed file."""
        if transcript is None:
            return self._finish(self._status_after_failure())
        try:
            result = self.pipeline.complete(transcript, self._write)
        except PipelineError as error:
            self._failed(error)
            return self._finish(self._status_after_failure())
        except Exception as exc:  # a bug in writing fails this file, not the batch
            self._error(exc)
            return self._finish(self._status_after_failure())
        warning = result.summary.warning if result.summary else None
        self.ledger.mark_done(self.key, result.outputs, warning)
        self.partial.remove()
        self.speech_done.remove()
        return self._finish(FileStatus.DONE)

    def _on_event(self, event: Event) -> None:
        self.bar.follow(self.name, event)
        if isinstance(event, StageStarted):
            self._count_attempt(event)
        elif isinstance(event, StageFinished) and event.stage in ("speech", "summary", "finish", "outputs"):
            self._record(event)
        elif isinstance(event, SegmentReady):
            self.partial.append(event.segment)

    def _count_attempt(self, event: StageStarted) -> None:
        """An attempt starts with the probe; a retried speech stage starts the next one. Pieces run on
        several threads and number their attempts each from the file's first: only a higher number
        than any seen starts an attempt."""
        with self._attempt_lock:
            if (event.stage == "probe" and event.attempt == 1) or (event.stage == "speech" and event.attempt > self.attempt):
                self.attempt = self.ledger.mark_running(self.key)

    def _failed(self, error: PipelineError) -> None:
        if error.kind == FailureKind.CANCELLED or (self.batch.cancellation.cancelled and error.kind == FailureKind.CRASHED):
            self._interrupted(stage=error.stage)
            return
        self.ledger.mark_failed(self.key, error.detail)

    def _error(self, exc: Exception) -> None:
        if disk_full(exc):  # every file would fail alike: the batch stops, this one is queued again
            self.batch.cancellation.stop_starting()
            with contextlib.suppress(sqlite3.Error):  # the ledger may be on that disk: a killed run's rows are requeued too
                self._interrupted(error=f"{type(exc).__name__}: {exc}")
            raise OutDirFull(f"no space left in {self.batch.out_dir} ({exc})") from exc
        if self.batch.cancellation.cancelled:  # e.g. a pool shut down under a stopping batch
            self._interrupted(error=f"{type(exc).__name__}: {exc}")
            return
        log.exception("event=file_error file=%s", self.input_path)
        self.ledger.mark_failed(self.key, f"{type(exc).__name__}: {exc}")

    def _interrupted(self, **cause: str) -> None:
        """Stopped, not failed: the row is queued again and the next run picks the file up."""
        log_event(log, "file_interrupted", file=self.input_path, **cause)
        self.ledger.mark_interrupted(self.key)

    def _status_after_failure(self) -> FileStatus:
        return FileStatus(self.ledger.get(self.key).status)

    def _write(self, transcript: Transcript, summary: Summary | None) -> list[str]:
        """Each output written atomically into ``out_dir/NAME``; returns paths relative to out_dir."""
        from isoscribe.outputs import write_outputs

        out_dir, settings = self.batch.out_dir, self.settings
        layout = settings.subtitles.layout()
        written = write_outputs(transcript, summary, out_dir / self.name, self.name, settings.batch.formats, layout)
        return [str(path.relative_to(out_dir)) for path in written.values()]

    def _record(self, event: StageFinished) -> None:
        stage = "post" if event.stage == "finish" else "write" if event.stage == "outputs" else event.stage
        record = StageRecord(event.wall_s, event.peak_rss_mb, event.peak_gpu_mb)
        ok = event.error is None
        self.ledger.record_stage(self.key, stage, self.attempt, record, ok=ok)
        if ok:
            self.stages[stage] = stage_dict(record)

    def _finish(self, status: FileStatus) -> FileReport:
        row = self.ledger.get(self.key)
        interrupted = status not in (FileStatus.DONE, FileStatus.FAILED)
        report = file_report(row, "interrupted" if interrupted else status.value)
        report.stages = self.stages
        self.bar.file_done(self.name, status, row.error)
        self.reports[str(self.input_path)] = report
        return report

