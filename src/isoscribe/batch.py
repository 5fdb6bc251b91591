"""Batch workflow: many audio files through the per-file pipeline, resumable, memory-bounded.

Each file runs through ``isoscribe.pipeline.FilePipeline`` (probe, speech, speakers, summary, outputs
written atomically); the ledger row is marked done after the outputs are in place. The pipeline's
events feed the ledger, the progress bar (in seconds of audio) and ``NAME.partial.txt``. A memory gate (budget.py) decides when a stage may
start; in pooled mode it retires the other stage's idle warm workers when both do not fit, and the
batch then runs in two phases (speech for every file, then every summary) so that each pool loads
its model once rather than once per file.

Failure rules (design notes): a speech failure fails that file with its cause and the batch goes
on; worker crashes and out-of-memory kills are retried up to ``max_attempts`` with exponential
backoff, deterministic failures (bad audio, timeouts) are not; a summary failure leaves an empty
summary with a warning and the file is still done. Notifications never fail the batch.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from isoscribe.budget import BUDGET_FRACTION, GateClosed, MemoryGate, default_budget_mb, gpu_total_mb, stage_peaks_mb
from isoscribe.config import Settings
from isoscribe.executors import EventListener, StageExecutor, build_executor
from isoscribe.inputs import InputError, discover_inputs
from isoscribe.files import write_atomic
from isoscribe.isolation import TaskCancelled, TaskResult
from isoscribe.ledger import FileStatus, Ledger, LedgerRow, StageRecord, content_hash, settings_fingerprint
from isoscribe.logs import log_event
from isoscribe.notify import notify_completion
from isoscribe.pipeline import (
    Cancellation,
    Event,
    FailureKind,
    FilePipeline,
    PipelineError,
    Probed,
    Progress,
    SegmentReady,
    StageFinished,
    StageStarted,
    batch_policy,
)
from isoscribe.report import BatchReport, FileReport, MemorySampler, summarised, write_report
from isoscribe.transcript import Segment, Summary, Transcript

__all__ = ["run_batch", "run_command", "OutDirBusy", "PARTIAL_PREFIX", "SPEECH_DONE_DIR"]

log = logging.getLogger("isoscribe.batch")

PARTIAL_PREFIX = ".partial-"
"""Folders where a file's outputs are written before they are renamed into place."""

SPEECH_DONE_DIR = ".speech-done"
"""Transcripts whose speech stage finished but whose file did not: a stopped run's next run goes on from them."""

LOCK_NAME = ".isoscribe-run.lock"


class OutDirBusy(RuntimeError):
    """Another ``isoscribe run`` holds the output directory."""


def run_command(settings: Settings, args: argparse.Namespace) -> int:
    """``isoscribe run``: exit 0 when every file is done, 1 when any failed, 2 on bad inputs."""
    _install_stop_signals()
    progress = False if args.no_progress else None
    try:
        report = run_batch(settings, args.inputs, args.out, retry_failed=args.retry_failed, progress=progress)
    except (InputError, OutDirBusy) as exc:
        print(f"isoscribe: {exc}", file=sys.stderr)
        return 2
    counts = report.counts
    print(
        f"{counts['done']} done, {counts['failed']} failed, {counts['skipped']} skipped; "
        f"outputs and report in {args.out}"
    )
    return 0 if report.ok else 1


def _install_stop_signals() -> None:
    """SIGTERM and SIGHUP unwind like Ctrl-C: the batch stops, pools shut down, rows stay resumable.
    A second one during the grace period stops the running stages at once."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on_signal)


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def run_batch(
    settings: Settings,
    inputs: list[str | Path],
    out_dir: Path,
    *,
    retry_failed: bool = False,
    progress: bool | None = None,
    log_file: Path | None = None,
    executor: StageExecutor | None = None,
    notify: bool = True,
) -> BatchReport:
    """Run the batch and return its report (also written to ``out_dir``).

    ``progress``: a tqdm bar when True, log lines when False, None = bar only when stderr is a
    terminal. ``executor``: where stages run; None builds one from ``settings.batch``.
    """
    files = discover_inputs(inputs)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with _locked(out_dir):
        handler = _attach_log_file(log_file)
        try:
            return _run_locked(settings, files, out_dir, retry_failed, executor, progress, notify)
        finally:
            _detach_log_file(handler)


def _run_locked(
    settings: Settings, files: list[Path], out_dir: Path, retry_failed: bool, executor: StageExecutor | None,
    progress: bool | None, notify: bool,
) -> BatchReport:
    batch = _Batch(settings, out_dir, retry_failed, executor)
    try:
        return batch.run(files, progress, notify)
    finally:
        batch.ledger.close()


class _locked:
    """The output directory for one run at a time: a second run would remove the first one's
    unfinished outputs and queue its running files again."""

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / LOCK_NAME

    def __enter__(self) -> None:
        self._handle = self.path.open("a")
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._handle.close()
            raise OutDirBusy(f"{self.path.parent} is in use by another isoscribe run; wait for it or use another --out") from None

    def __exit__(self, *exc: object) -> None:
        self._handle.close()  # closing drops the lock; the file stays (removing it would race a waiting run)


def _detach_log_file(handler: logging.Handler | None) -> None:
    if handler is None:
        return
    logger = logging.getLogger("isoscribe")
    logger.removeHandler(handler)
    if hasattr(handler, "previous_level"):
        logger.setLevel(handler.previous_level)
    handler.close()


@dataclass
class _Job:
    row: LedgerRow
    input_path: Path


class _Batch:
    def __init__(self, settings: Settings, out_dir: Path, retry_failed: bool, executor: StageExecutor | None) -> None:
        self.out_dir = out_dir
        self.retry_failed = retry_failed
        self.ledger = Ledger.in_dir(out_dir)
        self.fingerprint = settings_fingerprint(settings)
        self.settings = self._resolved(settings)
        self.policy = batch_policy(self.settings)
        self.summarize = self.policy.summarize
        self.cancellation = Cancellation()
        self._given_executor = executor

    def run(self, inputs: list[Path], progress: bool | None, notify: bool) -> BatchReport:
        started = time.monotonic()
        started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        _remove_partials(self.out_dir)
        recovered = self.ledger.recover_interrupted(self.settings.batch.max_attempts)
        if recovered:
            log_event(log, "batch_recovered", files=len(recovered))
        reports, jobs = self._plan(inputs)
        gate = self.gate = self._gate()
        executor = self._given_executor or build_executor(self.settings, lazy=True)
        if hasattr(executor, "release"):
            gate.release_warm = executor.release
        gated = _GatedExecutor(executor, gate)
        log_event(
            log, "batch_start", files=len(inputs), todo=len(jobs), isolation=self.settings.batch.isolation,
            workers=self.settings.batch.workers, budget_mb=gate.budget_mb,
            speech_peak_mb=gate.peaks_mb["speech"], summary_peak_mb=gate.peaks_mb["summary"],
        )
        bar = _Progress(len(jobs), progress)
        stopped: BaseException | None = None
        try:
            with MemorySampler() as sampler:
                try:
                    self._run_jobs(jobs, reports, gated, gate, bar)
                except (KeyboardInterrupt, SystemExit) as stop:
                    stopped = stop
        finally:
            bar.close()
            if self._given_executor is None:
                executor.shutdown()
        for job in jobs:  # files a stop left unfinished: resumable, never failed
            reports.setdefault(str(job.input_path), _file_report(self.ledger.get(job.row.key), "interrupted"))
        report = BatchReport(
            out_dir=str(self.out_dir),
            files=[reports[str(path)] for path in inputs if str(path) in reports],
            started_at=started_at,
            wall_s=time.monotonic() - started,
            isolation=self.settings.batch.isolation,
            executor=self.settings.batch.executor if self._given_executor is None else type(executor).__name__,
            workers=self.settings.batch.workers,
            budget_mb=gate.budget_mb,
            stage_peaks_mb=gate.peaks_mb,
            peak_tree_mb=sampler.peak_tree_mb,
            peak_parent_mb=sampler.peak_parent_mb,
            memory_samples=summarised(sampler.samples),
            overcommitted=dict(gate.overcommitted),
            recovered=len(recovered),
        )
        paths = write_report(report, self.out_dir)
        counts = report.counts
        if stopped is not None:
            log_event(log, "batch_stopped", logging.WARNING, **counts, wall_s=report.wall_s)
            raise stopped
        log_event(log, "batch_done", **counts, wall_s=report.wall_s, peak_tree_mb=report.peak_tree_mb)
        if notify:
            notify_completion(self.settings.notify, report, paths)
        return report

    def _plan(self, inputs: list[Path]) -> tuple[dict[str, FileReport], list[_Job]]:
        names = _output_names(inputs)
        reports: dict[str, FileReport] = {}
        jobs = []
        first_path_of: dict[str, Path] = {}
        for path in inputs:
            try:
                digest = content_hash(path)
            except OSError as exc:  # vanished or unreadable since it was found: this file fails, the batch goes on
                reports[str(path)] = FileReport(str(path), names[path], "failed", error=f"cannot read input: {exc}")
                log_event(log, "input_unreadable", logging.WARNING, file=path, error=exc)
                continue
            if digest in first_path_of:  # same bytes under another name: one row, processed once
                duplicate = FileReport(str(path), names[first_path_of[digest]], "skipped")
                duplicate.warning = f"same content as {first_path_of[digest]}; outputs are under its name"
                reports[str(path)] = duplicate
                continue
            first_path_of[digest] = path
            row = self.ledger.enqueue(path, digest, self.fingerprint, names[path])
            if row.status == FileStatus.DONE and _outputs_present(self.out_dir, row):
                reports[str(path)] = _file_report(row, "skipped")
                continue
            if row.status == FileStatus.FAILED and not self.retry_failed:
                reports[str(path)] = _file_report(row, "failed")
                continue
            if row.status == FileStatus.FAILED:
                self.ledger.requeue(row.key)
            jobs.append(_Job(self.ledger.get(row.key), path))
        return reports, jobs

    def _resolved(self, settings: Settings) -> Settings:
        """``auto`` workers and threads from the calibration, as many workers as the budget holds."""
        from isoscribe.tuning import memory_cap_workers, resolve_batch

        speech_peak_mb = stage_peaks_mb(settings, lambda stage: self.ledger.learned_peak_mb(stage, self.fingerprint))
        budget_mb = settings.batch.memory_budget_mb or default_budget_mb()
        return resolve_batch(settings, memory_cap_workers(budget_mb, speech_peak_mb["speech"]))

    def _gate(self) -> MemoryGate:
        batch = self.settings.batch
        peaks = stage_peaks_mb(self.settings, lambda stage: self.ledger.learned_peak_mb(stage, self.fingerprint))
        if not self.summarize:
            peaks["summary"] = 0.0
        gpu_mb = gpu_total_mb()
        if batch.executor == "celery":
            # The stages run on the Celery workers' machines, each bounded by its own worker settings:
            # nothing they hold counts against this machine's budget.
            peaks = dict.fromkeys(peaks, 0.0)
            gpu_mb = None
        gpu_peaks = None
        if gpu_mb is not None:
            learned = self.ledger.learned_peak_mb
            gpu_peaks = {stage: learned(stage, self.fingerprint, gpu=True) or 0.0 for stage in peaks}
        return MemoryGate(
            batch.memory_budget_mb or default_budget_mb(),
            peaks,
            keep_warm=batch.isolation == "pooled",
            warm_limit=batch.workers,
            gpu_budget_mb=None if gpu_mb is None else BUDGET_FRACTION * gpu_mb,
            gpu_peaks_mb=gpu_peaks,
        )

    def _run_jobs(
        self,
        jobs: list[_Job],
        reports: dict[str, FileReport],
        executor: StageExecutor,
        gate: MemoryGate,
        bar: _Progress,
    ) -> None:
        runs = [_FileRun(self, job, executor, bar, reports) for job in jobs]
        phased = self._phased(executor.inner, gate)
        if phased:
            log_event(log, "batch_phased", reason="speech and summary workers do not fit the budget together")
        in_flight = self._files_in_flight(phased)
        log_event(log, "batch_files_in_flight", files=in_flight, speech_workers=self.settings.batch.workers)
        threads = ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="batch-file")
        try:
            if phased:
                transcripts = list(threads.map(_FileRun.transcribe, runs))
                list(threads.map(_FileRun.finish, runs, transcripts))
            else:
                list(threads.map(lambda run: run.finish(run.transcribe()), runs))
        except BaseException:
            self._stop(threads)
            raise
        threads.shutdown()

    def _stop(self, threads: ThreadPoolExecutor) -> None:
        """Ctrl-C or SIGTERM: no new file or stage starts; running stages get ``batch.stop_grace_s`` to
        finish, then their workers are killed. Files left unfinished stay pending for the next run."""
        grace_s = self.settings.batch.stop_grace_s
        log_event(log, "batch_stopping", logging.WARNING, grace_s=grace_s)
        try:
            try:
                self.cancellation.stop_starting()
            finally:
                self.gate.close()
                threads.shutdown(wait=False, cancel_futures=True)
            idle = self.cancellation.wait_idle(grace_s)
        except (KeyboardInterrupt, SystemExit):  # a second stop, wherever it lands: no grace
            log_event(log, "batch_stop_now", logging.WARNING)
            idle = False
        if not idle:
            self.cancellation.cancel()
        threads.shutdown(wait=True)

    def _files_in_flight(self, phased: bool) -> int:
        """One file more than speech workers when warm speech and summary workers fit together: while
        a file is summarized, the next file's speech runs. The speech pool still runs at most
        ``workers`` tasks, and the memory gate still decides what may run side by side."""
        workers = self.settings.batch.workers
        overlap = self.summarize and not phased and self.settings.batch.isolation == "pooled"
        return workers + 1 if overlap else workers

    def _phased(self, executor: StageExecutor, gate: MemoryGate) -> bool:
        """Speech for every file first, then every summary, when warm pools of both stages do not fit.

        Each warm pool then loads its model once for the whole batch instead of once per file, and
        the gate retires the speech workers before the LLM workers start.
        """
        return (
            self.settings.batch.isolation == "pooled"
            and self.summarize
            and hasattr(executor, "release")
            and not gate.coexist(self.settings.batch.workers)
        )


class _GatedExecutor:
    """The batch's executor behind its memory gate: a stage task holds its share of the budget until it ends."""

    def __init__(self, inner: StageExecutor, gate: MemoryGate) -> None:
        self.inner = inner
        self.gate = gate

    def submit(self, stage: str, request: Any, on_event: EventListener | None = None) -> Future[TaskResult]:
        if stage not in self.gate.peaks_mb:
            return self.inner.submit(stage, request, on_event)
        try:
            self.gate.acquire(stage)
        except GateClosed:
            raise TaskCancelled(stage, detail="the batch is stopping") from None
        try:
            future = self.inner.submit(stage, request, on_event)
        except BaseException:
            self.gate.release(stage)
            raise
        future.add_done_callback(lambda _: self.gate.release(stage))
        return future

    def cancel(self, future: Future) -> bool:
        return self.inner.cancel(future)

    def shutdown(self) -> None:
        self.inner.shutdown()


class _FileRun:
    """One input through the pipeline: its events feed the ledger, the progress bar and the partial
    transcript; ``transcribe`` and ``finish`` are the pipeline's two halves (phased mode runs them apart)."""

    def __init__(
        self, batch: _Batch, job: _Job, executor: StageExecutor, bar: _Progress, reports: dict[str, FileReport]
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
        self.partial = _PartialTranscript(batch.out_dir / self.name / f"{self.name}.partial.txt")
        self.speech_done = _SpeechDone(batch.out_dir / SPEECH_DONE_DIR / f"{self.key.replace(':', '-')}.json")
        self.pipeline = FilePipeline(executor, batch.policy, self._on_event, batch.cancellation)

    def transcribe(self) -> Transcript | None:
        """Probe, speech and speakers; None when the file failed or the batch is stopping. A transcript a
        stopped run kept is taken as it is: the speech stage does not run again."""
        from isoscribe.pipeline import speech_request

        kept = self.speech_done.load()
        if kept is not None:
            self.ledger.mark_running(self.key, new_attempt=False)
            log_event(log, "file_resumed", file=self.input_path, after="speech")
            self.bar.probed(self.name, kept.duration_s)
            return kept
        try:
            transcript = self.pipeline.transcribe(speech_request(self.settings, self.input_path), self.attempts_done)
        except PipelineError as error:
            self._failed(error)
            return None
        except Exception as exc:  # a bug in post-processing fails this file, not the batch
            self._error(exc)
            return None
        transcript.source = transcript.source or str(self.input_path)
        self.speech_done.save(transcript)
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
        if isinstance(event, StageStarted):
            self.bar.stage(self.name, event.stage)
            self._count_attempt(event)
        elif isinstance(event, StageFinished) and event.stage in ("speech", "summary", "finish", "outputs"):
            self._record(event)
        elif isinstance(event, Probed):
            self.bar.probed(self.name, event.duration_s)
        elif isinstance(event, Progress) and event.stage == "speech":
            self.bar.audio_done(self.name, event.done_s)
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
        """Write into a private folder, then rename each file into place; returns paths relative to out_dir."""
        from isoscribe.outputs import write_outputs

        final_dir = self.batch.out_dir / self.name
        partial = self.batch.out_dir / f"{PARTIAL_PREFIX}{self.name}-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        try:
            written = write_outputs(
                transcript, summary, partial, self.name, self.settings.batch.formats, self.settings.subtitles.layout()
            )
            final_dir.mkdir(parents=True, exist_ok=True)
            outputs = []
            for path in written.values():
                os.replace(path, final_dir / path.name)
                outputs.append(str((final_dir / path.name).relative_to(self.batch.out_dir)))
            _fsync_dir(final_dir)
            return outputs
        finally:
            shutil.rmtree(partial, ignore_errors=True)

    def _record(self, event: StageFinished) -> None:
        stage = "post" if event.stage == "finish" else "write" if event.stage == "outputs" else event.stage
        record = StageRecord(event.wall_s, event.peak_rss_mb, event.peak_gpu_mb)
        ok = event.error is None
        self.ledger.record_stage(self.key, stage, self.attempt, record, ok=ok)
        if ok:
            self.stages[stage] = _stage_dict(record)

    def _finish(self, status: FileStatus) -> FileReport:
        row = self.ledger.get(self.key)
        interrupted = status not in (FileStatus.DONE, FileStatus.FAILED)
        report = _file_report(row, "interrupted" if interrupted else status.value)
        report.stages = self.stages
        self.bar.file_done(self.name, status, row.error)
        self.reports[str(self.input_path)] = report
        return report


class _PartialTranscript:
    """``NAME.partial.txt``: the transcript so far, one line per segment as the speech stage produces it.

    Removed once the file's outputs are final; a crash or a kill leaves it for a person to read, and the
    next run replaces it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._started = False

    def append(self, segment: Segment) -> None:
        if not self._started:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("", encoding="utf-8")
            self._started = True
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(f"[{_clock(segment.start)} → {_clock(segment.end)}] {segment.text.strip()}\n")

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


class _SpeechDone:
    """A file's transcript once its speech stage is done, kept until its outputs are: a stop between the
    two loses no decoding (the next run goes on from here)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def save(self, transcript: Transcript) -> None:
        write_atomic(self.path, json.dumps(transcript.to_dict()))

    def load(self) -> Transcript | None:
        try:
            return Transcript.from_dict(json.loads(self.path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:  # half-written by an older version or damaged
            log_event(log, "speech_done_unreadable", logging.WARNING, path=self.path, error=exc)
            return None

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(seconds, 60)
    return f"{int(minutes):02d}:{seconds:05.2f}"


def _stage_dict(record: StageRecord) -> dict[str, float | None]:
    return {"wall_s": record.wall_s, "peak_rss_mb": record.peak_rss_mb, "peak_gpu_mb": record.peak_gpu_mb}


def _file_report(row: LedgerRow, status: str) -> FileReport:
    return FileReport(
        input_path=row.input_path,
        output_name=row.output_name,
        status=status,
        attempts=row.attempts,
        error=row.error if status == "failed" else None,
        warning=row.warning,
        stages={stage: _stage_dict(record) for stage, record in row.stages.items()},
        outputs=row.outputs,
    )


def _output_names(inputs: list[Path]) -> dict[Path, str]:
    """The file's stem; inputs that share a stem get a short hash of their folder appended."""
    import hashlib

    by_stem: dict[str, list[Path]] = {}
    for path in inputs:
        by_stem.setdefault(path.stem, []).append(path)
    names = {}
    for stem, paths in by_stem.items():
        for path in paths:
            suffix = hashlib.sha1(str(path.parent).encode()).hexdigest()[:8]
            names[path] = stem if len(paths) == 1 else f"{stem}-{suffix}"
    return names


def _outputs_present(out_dir: Path, row: LedgerRow) -> bool:
    return bool(row.outputs) and all((out_dir / output).is_file() for output in row.outputs)


def _remove_partials(out_dir: Path) -> None:
    """Folders a killed run was writing into; the outputs in them were never renamed into place."""
    for partial in out_dir.glob(f"{PARTIAL_PREFIX}*"):
        shutil.rmtree(partial, ignore_errors=True)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _attach_log_file(log_file: Path | None) -> logging.Handler | None:
    if log_file is None:
        return None
    log_file = Path(log_file)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logger = logging.getLogger("isoscribe")
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        # The file gets the batch's events even when the console shows only warnings.
        handler.previous_level = logger.level
        logger.setLevel(logging.INFO)
    return handler


class _Progress:
    """A tqdm bar in seconds of audio (files done/failed, current stages, ETA) on a terminal; log lines otherwise.

    The total is the probed length of the files seen so far plus, for files not yet probed, their
    mean; the bar moves with every transcribed segment, so the ETA reflects the audio, not the file count.
    """

    def __init__(self, total: int, enabled: bool | None) -> None:
        if enabled is None:
            enabled = sys.stderr.isatty()
        self._lock = threading.Lock()
        self._files = total
        self._done = 0
        self._failed = 0
        self._stages: dict[str, str] = {}
        self._duration_s: dict[str, float] = {}
        self._audio_done_s: dict[str, float] = {}
        self._bar: Any = None
        self._redirect: Any = None
        if enabled and total:
            from tqdm import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            bar_format = "{l_bar}{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}] {postfix}"
            self._bar = tqdm(total=total, dynamic_ncols=True, file=sys.stderr, bar_format=bar_format)
            self._redirect = logging_redirect_tqdm()  # log lines print above the bar, not through it
            self._redirect.__enter__()

    def stage(self, name: str, stage: str) -> None:
        with self._lock:
            self._stages[name] = stage
            if self._bar is not None:
                self._refresh()
            else:
                log_event(log, "file_stage", file=name, stage=stage)

    def probed(self, name: str, duration_s: float) -> None:
        with self._lock:
            self._duration_s[name] = duration_s
            self._refresh()

    def audio_done(self, name: str, done_s: float) -> None:
        with self._lock:
            self._audio_done_s[name] = done_s
            self._refresh()

    def file_done(self, name: str, status: FileStatus, error: str | None) -> None:
        with self._lock:
            self._stages.pop(name, None)
            if status == FileStatus.DONE:
                self._done += 1
            elif status == FileStatus.FAILED:
                self._failed += 1
            self._audio_done_s[name] = self._duration_s.setdefault(name, self._audio_done_s.get(name, 0.0))
            self._refresh()
            state = status.value if status in (FileStatus.DONE, FileStatus.FAILED) else "interrupted"
            fields = {"file": name, "status": state, "done": self._done, "failed": self._failed}
            if error:
                fields["cause"] = error.splitlines()[0]
            log_event(log, "file_finished", logging.INFO if status == FileStatus.DONE else logging.WARNING, **fields)

    def _refresh(self) -> None:
        if self._bar is None:
            return
        known_s = sum(self._duration_s.values())
        unprobed = self._files - len(self._duration_s)
        mean_s = known_s / len(self._duration_s) if self._duration_s else 1.0
        self._bar.total = max(known_s + unprobed * mean_s, 1.0)
        self._bar.n = min(sum(self._audio_done_s.values()), self._bar.total)
        current = ", ".join(f"{name}:{stage}" for name, stage in self._stages.items())
        files = f"{self._done + self._failed}/{self._files} files"
        self._bar.set_postfix_str(f"{files} done={self._done} failed={self._failed} {current}")

    def close(self) -> None:
        if self._bar is not None:
            self._redirect.__exit__(None, None, None)
            self._bar.close()
