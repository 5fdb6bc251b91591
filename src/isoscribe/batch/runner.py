"""Scheduling and stopping a batch: files in flight, two phases when both models do not fit, the stop.

Each file runs through ``isoscribe.pipeline.FilePipeline`` (file_run.py); a memory gate (budget.py)
decides when a stage may start. In pooled mode it retires the other stage's idle warm workers when
both do not fit, and the batch then runs in two phases (speech for every file, then every summary) so
that each pool loads its model once rather than once per file; when they fit, one file more than the
speech workers is in flight.

Failure rules (design notes): a speech failure fails that file with its cause and the batch goes
on; worker crashes and out-of-memory kills are retried up to ``max_attempts`` with exponential
backoff, deterministic failures (bad audio, timeouts) are not; a summary failure leaves an empty
summary with a warning and the file is still done. A stop fails nothing. Notifications never fail
the batch.
"""

from __future__ import annotations

import datetime as dt
import errno
import logging
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path

from isoscribe.batch.file_run import FileRun
from isoscribe.batch.gate import GatedExecutor
from isoscribe.batch.outdir import OutDirFull, disk_full, locked, log_file_attached, remove_partials
from isoscribe.batch.partial import speech_done_path, tidy_speech_done
from isoscribe.batch.plan import Job, Planner, file_report
from isoscribe.batch.progress import BatchProgress
from isoscribe.budget import MemoryGate
from isoscribe.config import Settings
from isoscribe.executors import StageExecutor, build_executor
from isoscribe.inputs import InputError, discover_inputs
from isoscribe.ledger import Ledger, settings_fingerprint
from isoscribe.logs import log_event
from isoscribe.notify import notify_completion
from isoscribe.pipeline import Cancellation, batch_policy
from isoscribe.report import BatchReport, FileReport, MemorySampler, summarised, write_report

__all__ = ["Batch", "run_batch"]

log = logging.getLogger("isoscribe.batch")
_STOP_CHECK_S = 0.2
"""How often the waiting main thread returns to Python code, where a pending stop signal's handler runs."""


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
    cancellation: Cancellation | None = None,
) -> BatchReport:
    """Run the batch and return its report (also written to ``out_dir``).

    ``progress``: a tqdm bar when True, log lines when False, None = bar only when stderr is a
    terminal. ``executor``: where stages run; None builds one from ``settings.batch``. ``cancellation``:
    the caller's handle to stop the run at once (``cancel``); the batch uses it for its own stop too.
    """
    files = discover_inputs(inputs)
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        if not os.access(out_dir, os.W_OK | os.X_OK):  # an existing folder on a read-only mount, or not ours
            read_only = os.statvfs(out_dir).f_flag & os.ST_RDONLY
            raise OSError(errno.EROFS if read_only else errno.EACCES, "read-only file system" if read_only else "not writable")
    except OSError as exc:  # a file of that name, no permission, read-only: said plainly, not as a traceback
        raise InputError(f"cannot use {out_dir} as the output folder: {exc.strerror or exc}") from None
    with locked(out_dir), log_file_attached(log_file):
        batch = Batch(settings, out_dir, retry_failed, executor, cancellation)
        try:
            return batch.run(files, progress, notify)
        except Exception as exc:  # the ledger's own writes, the report: wherever the disk filled up
            if disk_full(exc) and not isinstance(exc, OutDirFull):
                raise OutDirFull(f"no space left in {out_dir} ({exc})") from exc
            raise
        finally:
            batch.ledger.close()


class Batch:
    """One run over one output directory: plan, run the files (in two phases when the memory needs it),
    stop on a signal, report."""

    def __init__(
        self, settings: Settings, out_dir: Path, retry_failed: bool, executor: StageExecutor | None,
        cancellation: Cancellation | None = None,
    ) -> None:
        self.out_dir = out_dir
        self.retry_failed = retry_failed
        self.ledger = Ledger.in_dir(out_dir)
        self.planner = Planner(self.ledger, settings_fingerprint(settings), out_dir, retry_failed)
        self.settings = self.planner.resolved(settings)
        self.policy = batch_policy(self.settings)
        self.summarize = self.policy.summarize
        self.cancellation = cancellation or Cancellation()
        self._given_executor = executor

    def run(self, inputs: list[Path], progress: bool | None, notify: bool) -> BatchReport:
        """Every job to its end, or to a stop (Ctrl-C, SIGTERM, SIGHUP): then the report is written
        with the unfinished files ``interrupted`` and the stop raised again."""
        started = time.monotonic()
        started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        remove_partials(self.out_dir)
        recovered = self.ledger.recover_interrupted(
            self.settings.batch.max_attempts, lambda key: speech_done_path(self.out_dir, key).is_file()
        )
        if recovered:
            log_event(log, "batch_recovered", files=len(recovered))
        reports, jobs = self.planner.plan(inputs)
        self.gate = self.planner.gate(self.settings, self.summarize)
        executor = self._given_executor or build_executor(self.settings, lazy=True)
        if hasattr(executor, "release"):
            self.gate.release_warm = executor.release
        self._log_start(len(inputs), len(jobs))
        bar = BatchProgress(len(jobs), progress)
        stopped: BaseException | None = None
        try:
            with MemorySampler() as sampler:
                try:
                    self._run_jobs(jobs, reports, GatedExecutor(executor, self.gate), self.gate, bar)
                except (KeyboardInterrupt, SystemExit) as stop:
                    stopped = stop
        finally:
            bar.close()
            if self._given_executor is None:
                executor.shutdown()
        self._account_unfinished(jobs, reports, stopped is not None)
        tidy_speech_done(self.out_dir)
        files = [reports[str(path)] for path in inputs if str(path) in reports]
        report = self._report(files, started_at, time.monotonic() - started, executor, sampler, len(recovered))
        paths = write_report(report, self.out_dir)
        if stopped is not None:
            log_event(log, "batch_stopped", logging.WARNING, **report.counts, wall_s=report.wall_s)
            raise stopped
        log_event(log, "batch_done", **report.counts, wall_s=report.wall_s, peak_tree_mb=report.peak_tree_mb)
        if notify:
            notify_completion(self.settings.notify, report, paths)
        return report

    def _log_start(self, files: int, todo: int) -> None:
        batch, gate = self.settings.batch, self.gate
        log_event(
            log, "batch_start", files=files, todo=todo, isolation=batch.isolation, workers=batch.workers,
            budget_mb=gate.budget_mb, speech_peak_mb=gate.peaks_mb["speech"], summary_peak_mb=gate.peaks_mb["summary"],
        )

    def _account_unfinished(self, jobs: list[Job], reports: dict[str, FileReport], stopped: bool) -> None:
        """Files a stop left unfinished (in phased mode, between their halves too): queued again without
        spending an attempt, reported ``interrupted``, never failed."""
        for job in jobs:
            if stopped:
                self.ledger.mark_interrupted(job.row.key)
            reports.setdefault(str(job.input_path), file_report(self.ledger.get(job.row.key), "interrupted"))

    def _report(
        self, files: list[FileReport], started_at: str, wall_s: float, executor: StageExecutor,
        sampler: MemorySampler, recovered: int,
    ) -> BatchReport:
        batch, gate = self.settings.batch, self.gate
        return BatchReport(
            out_dir=str(self.out_dir),
            files=files,
            started_at=started_at,
            wall_s=wall_s,
            isolation=batch.isolation,
            executor=batch.executor if self._given_executor is None else type(executor).__name__,
            workers=batch.workers,
            budget_mb=gate.budget_mb,
            stage_peaks_mb=gate.peaks_mb,
            peak_tree_mb=sampler.peak_tree_mb,
            peak_parent_mb=sampler.peak_parent_mb,
            memory_samples=summarised(sampler.samples),
            overcommitted=dict(gate.overcommitted),
            recovered=recovered,
        )

    def _run_jobs(
        self,
        jobs: list[Job],
        reports: dict[str, FileReport],
        executor: StageExecutor,
        gate: MemoryGate,
        bar: BatchProgress,
    ) -> None:
        runs = [FileRun(self, job, executor, bar, reports) for job in jobs]
        phased = self._phased(executor.inner, gate)
        if phased:
            log_event(log, "batch_phased", reason="speech and summary workers do not fit the budget together")
        in_flight = self._files_in_flight(phased)
        log_event(log, "batch_files_in_flight", files=in_flight, speech_workers=self.settings.batch.workers)
        threads = ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="batch-file")
        try:
            if phased:
                transcripts = _in_order([threads.submit(FileRun.transcribe, run) for run in runs])
                _in_order([threads.submit(FileRun.finish, run, text) for run, text in zip(runs, transcripts)])
            else:
                _in_order([threads.submit(lambda run: run.finish(run.transcribe()), run) for run in runs])
        except BaseException:
            self._stop(threads)
            raise
        threads.shutdown()

    def _stop(self, threads: ThreadPoolExecutor) -> None:
        """Ctrl-C, SIGTERM or SIGHUP: no new file or stage starts, queued stage tasks are dropped; running
        ones get ``batch.stop_grace_s`` to finish (or less: ``cancellation.cancel()``, a second signal),
        then their workers are killed. Files left unfinished stay pending for the next run."""
        grace_s = self.settings.batch.stop_grace_s
        log_event(log, "batch_stopping", logging.WARNING, grace_s=grace_s)
        self.cancellation.stop_starting()
        self.gate.close()
        threads.shutdown(wait=False, cancel_futures=True)
        if not self.cancellation.wait_idle(grace_s):
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


def _in_order(futures: list[Future]) -> list:
    """The futures' results in order, the first failure raised as it is reached.

    The main thread waits in short slices: a stop signal the kernel hands to another thread only sets a
    flag, and the main thread runs the handler (which unwinds the batch) when it next runs Python code.
    An untimed wait would never return to it, and the stop would be lost.
    """
    results = []
    for future in futures:
        while not future.done():
            wait([future], timeout=_STOP_CHECK_S)
        results.append(future.result())
    return results
