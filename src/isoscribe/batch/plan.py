"""What a batch run does before anything runs: which inputs are jobs, how many workers and threads
(calibrated), which memory peaks the gate uses."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace
from pathlib import Path

from isoscribe.budget import BUDGET_FRACTION, MemoryGate, default_budget_mb, gpu_total_mb, stage_peaks_mb
from isoscribe.config import Settings
from isoscribe.files import cut_utf8
from isoscribe.ledger import LEDGER_NAME, FileStatus, Ledger, LedgerRow, StageRecord, content_hash
from isoscribe.logs import log_event
from isoscribe.report import REPORT_FILES, FileReport

__all__ = ["Job", "Planner", "file_report", "output_names", "outputs_present", "stage_dict"]

log = logging.getLogger("isoscribe.batch")


@dataclass
class Job:
    row: LedgerRow
    input_path: Path


class Planner:
    """Decisions made from the ledger and the settings of one output directory."""

    def __init__(self, ledger: Ledger, fingerprint: str, out_dir: Path, retry_failed: bool) -> None:
        self.ledger = ledger
        self.fingerprint = fingerprint
        self.out_dir = out_dir
        self.retry_failed = retry_failed

    def plan(self, inputs: list[Path]) -> tuple[dict[str, FileReport], list[Job]]:
        """Per input: a report already (unreadable, a duplicate, done, failed before) or a job to run."""
        names = output_names(inputs)
        reports: dict[str, FileReport] = {}
        jobs = []
        first_of: dict[str, tuple[Path, str]] = {}
        """Content hash → the first input with it, and the name its outputs have."""
        for path in inputs:
            try:
                digest = content_hash(path)
            except OSError as exc:  # vanished or unreadable since it was found: this file fails, the batch goes on
                reports[str(path)] = FileReport(str(path), names[path], "failed", error=f"cannot read input: {exc}")
                log_event(log, "input_unreadable", logging.WARNING, file=path, error=exc)
                continue
            if digest in first_of:  # same bytes under another name: one row, processed once
                first_path, first_name = first_of[digest]
                duplicate = FileReport(str(path), first_name, "skipped")
                duplicate.warning = f"same content as {first_path}; outputs are under {first_name}"
                reports[str(path)] = duplicate
                continue
            name = names[path]
            if self.ledger.done_under(name, other_than=digest):  # another recording's finished outputs: kept
                name = f"{name}-{digest[:8]}"
            row = self.ledger.enqueue(path, digest, self.fingerprint, name)
            first_of[digest] = (path, row.output_name)
            if row.status == FileStatus.DONE and outputs_present(self.out_dir, row):  # done under its first name
                reports[str(path)] = replace(file_report(row, "skipped"), input_path=str(path))
                continue
            if row.status == FileStatus.FAILED and not self.retry_failed:
                reports[str(path)] = file_report(row, "failed")
                continue
            if row.status == FileStatus.FAILED:
                self.ledger.requeue(row.key)
            jobs.append(Job(self.ledger.get(row.key), path))
        return reports, jobs

    def resolved(self, settings: Settings) -> Settings:
        """``auto`` workers and threads from the calibration, as many workers as the budget holds."""
        from isoscribe.tuning import memory_cap_workers, resolve_batch

        speech_peak_mb = stage_peaks_mb(settings, lambda stage: self.ledger.learned_peak_mb(stage, self.fingerprint))
        budget_mb = settings.batch.memory_budget_mb or default_budget_mb()
        return resolve_batch(settings, memory_cap_workers(budget_mb, speech_peak_mb["speech"]))

    def gate(self, settings: Settings, summarize: bool) -> MemoryGate:
        """The memory gate for this run's stages, with their declared, learned or default peaks."""
        batch = settings.batch
        peaks = stage_peaks_mb(settings, lambda stage: self.ledger.learned_peak_mb(stage, self.fingerprint))
        if not summarize:
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


def stage_dict(record: StageRecord) -> dict[str, float | None]:
    return {"wall_s": record.wall_s, "peak_rss_mb": record.peak_rss_mb, "peak_gpu_mb": record.peak_gpu_mb}


def file_report(row: LedgerRow, status: str) -> FileReport:
    return FileReport(
        input_path=row.input_path,
        output_name=row.output_name,
        status=status,
        attempts=row.attempts,
        error=row.error if status == "failed" else None,
        warning=row.warning,
        stages={stage: stage_dict(record) for stage, record in row.stages.items()},
        outputs=row.outputs,
    )


_BATCH_FILES = frozenset({*REPORT_FILES.values(), LEDGER_NAME, f"{LEDGER_NAME}-wal", f"{LEDGER_NAME}-shm"})
"""What the batch itself writes in the output folder: no input's outputs may take these names."""
_MAX_NAME_BYTES = 160
"""A stem longer than this is cut (with its hash added): an output's name and its temporary file's must stay
under the file system's 255 bytes."""


def output_names(inputs: list[Path]) -> dict[Path, str]:
    """The file's stem (without leading dots: never hidden, never ``..``); inputs that share a stem get a
    short hash of their path appended (``talk.wav`` and ``talk.flac`` in one folder too), as do a stem that
    is one of the batch's own files (``report.json.wav``) and one too long to be a file name."""
    by_stem: dict[str, list[Path]] = {}
    for path in inputs:
        by_stem.setdefault(path.stem.lstrip(".") or "audio", []).append(path)
    names = {}
    for stem, paths in by_stem.items():
        for path in paths:
            suffix = hashlib.sha1(str(path).encode()).hexdigest()[:8]
            unique = len(paths) == 1 and stem not in _BATCH_FILES and len(stem.encode()) <= _MAX_NAME_BYTES
            names[path] = stem if unique else f"{cut_utf8(stem, _MAX_NAME_BYTES)}-{suffix}"
    return names


def outputs_present(out_dir: Path, row: LedgerRow) -> bool:
    return bool(row.outputs) and all((out_dir / output).is_file() for output in row.outputs)

