"""Retry and recovery rules of the batch loop, with a test double of the executor (no processes)."""

from __future__ import annotations

import errno
import sqlite3
from concurrent.futures import Future
from pathlib import Path

import pytest
from batch_support import write_inputs

from isoscribe import outputs
from isoscribe.batch import OutDirFull, run_batch
from isoscribe.config import load_settings
from isoscribe.isolation import StageTimeout, TaskResult, TaskStats, WorkerCrashed
from isoscribe.ledger import Ledger
from isoscribe.transcript import ProbeResult, Segment, Summary, Transcript


class ScriptedExecutor:
    """Answers speech tasks from a per-file script of outcomes ("ok" or an exception), summaries with text,
    probes with one second of audio."""

    def __init__(self, script: dict[str, list]) -> None:
        self.script = script
        self.calls: list[tuple[str, str]] = []

    def submit(self, stage: str, request, on_event=None) -> Future:
        future: Future = Future()
        stats = TaskStats(wall_s=0.1, peak_rss_mb=321.0, peak_gpu_mb=None, worker_pid=1, worker_task_number=1)
        if stage == "probe":
            future.set_result(TaskResult(ProbeResult(duration_s=1.0), stats))
            return future
        if stage == "summary":
            self.calls.append((stage, ""))
            future.set_result(TaskResult(Summary(overview="Hello there."), stats))
            return future
        name = Path(request.audio_path).name
        self.calls.append((stage, name))
        outcome = self.script[name].pop(0)
        if outcome == "ok":
            transcript = Transcript([Segment(0, 0.0, 1.0, " hello there")], "en", 1.0, 1.0, "scripted")
            future.set_result(TaskResult(transcript, stats))
        else:
            future.set_exception(outcome)
        return future

    def cancel(self, future: Future) -> bool:
        return False

    def release(self, stage: str) -> None:
        pass

    def shutdown(self) -> None:
        pass


def _settings(max_attempts: int = 3):
    return load_settings(overrides={"batch": {"workers": 1, "max_attempts": max_attempts, "retry_backoff_s": 0.01,
                                              "formats": ["json", "txt", "summary"]}})


def test_a_crash_is_retried_and_the_file_done_on_a_later_attempt(tmp_path: Path) -> None:
    [audio] = write_inputs(tmp_path, "a.wav")
    crash = WorkerCrashed("speech", 500.0, signal=11)
    executor = ScriptedExecutor({"a.wav": [crash, "ok"]})
    report = run_batch(_settings(), [audio], tmp_path / "out", executor=executor, progress=False)
    [item] = report.files
    assert item.status == "done" and item.attempts == 2
    assert item.stages["speech"]["peak_rss_mb"] == 321.0
    assert (tmp_path / "out" / "a" / "a.summary.md").read_text().count("Hello there.") == 1, "the summary is written once"


def test_timeouts_are_not_retried(tmp_path: Path) -> None:
    [audio] = write_inputs(tmp_path, "slow.wav")
    executor = ScriptedExecutor({"slow.wav": [StageTimeout("speech", timeout_s=5.0)]})
    [item] = run_batch(_settings(), [audio], tmp_path / "out", executor=executor, progress=False).files
    assert item.status == "failed" and item.attempts == 1 and "StageTimeout" in item.error


def test_attempts_of_a_killed_run_count_towards_max_attempts(tmp_path: Path) -> None:
    [audio] = write_inputs(tmp_path, "b.wav")
    out_dir = tmp_path / "out"
    settings = _settings(max_attempts=3)
    crash = WorkerCrashed("speech", 500.0, signal=9)
    first = run_batch(settings, [audio], out_dir, executor=ScriptedExecutor({"b.wav": ["ok"]}), progress=False)
    with Ledger.in_dir(out_dir) as ledger:  # as if a runner died twice while this file was running
        [row] = ledger.rows()
        key = row.key
        ledger.requeue(key)
        ledger.mark_running(key)
        ledger.mark_running(key)
    executor = ScriptedExecutor({"b.wav": [crash, crash, crash]})
    [item] = run_batch(settings, [audio], out_dir, executor=executor, progress=False).files
    assert first.counts["done"] == 1
    assert item.status == "failed" and item.attempts == 3
    assert executor.calls == [("speech", "b.wav")]
    assert "gave up after 3 attempts" in item.error


def test_the_same_content_under_two_names_is_processed_once(tmp_path: Path) -> None:
    [first] = write_inputs(tmp_path, "a.wav")
    copy = tmp_path / "in" / "copy-of-a.wav"
    copy.write_bytes(first.read_bytes())
    executor = ScriptedExecutor({"a.wav": ["ok"]})
    report = run_batch(_settings(), [first, copy], tmp_path / "out", executor=executor, progress=False)
    assert [item.status for item in report.files] == ["done", "skipped"]
    assert "same content as" in report.files[1].warning and report.files[1].output_name == "a"
    assert executor.calls.count(("speech", "a.wav")) == 1


def test_a_full_disk_stops_the_batch_and_fails_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk failed the file being written ('OSError: [Errno 28] No space left on device', skipped by the
    next run unless --retry-failed) or, writing its kept speech result, ended the batch in a traceback."""
    first, second, third = write_inputs(tmp_path, "a.wav", "b.wav", "c.wav")
    out_dir = tmp_path / "out"
    write_atomic = outputs.write_atomic

    def full_after_a(path, data) -> None:
        if not Path(path).name.startswith("a."):
            raise OSError(errno.ENOSPC, "No space left on device")
        write_atomic(path, data)

    monkeypatch.setattr(outputs, "write_atomic", full_after_a)
    executor = ScriptedExecutor({"a.wav": ["ok"], "b.wav": ["ok", "ok"], "c.wav": ["ok", "ok"]})
    settings = load_settings(overrides={"batch": {"workers": 1, "summarize": False, "formats": ["json", "txt"]}})
    with pytest.raises(OutDirFull, match="no space left in"):
        run_batch(settings, [first, second, third], out_dir, executor=executor, progress=False)
    with Ledger.in_dir(out_dir) as ledger:
        assert [(row.output_name, row.status.value) for row in ledger.rows() if row.status.value != "queued"] == [("a", "done")]
    monkeypatch.setattr(outputs, "write_atomic", write_atomic)
    report = run_batch(settings, [first, second, third], out_dir, executor=executor, progress=False)
    assert [item.status for item in report.files] == ["skipped", "done", "done"]


def test_a_ledger_write_on_a_full_disk_stops_the_batch_as_a_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite's 'database or disk is full' marking a file done was a traceback; the file is done on the next run."""
    [audio] = write_inputs(tmp_path, "a.wav")

    def full(*args, **kwargs) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Ledger, "mark_done", full)
    settings = load_settings(overrides={"batch": {"workers": 1, "summarize": False, "formats": ["txt"]}})
    with pytest.raises(OutDirFull, match="database or disk is full"):
        run_batch(settings, [audio], tmp_path / "out", executor=ScriptedExecutor({"a.wav": ["ok"]}), progress=False)
    monkeypatch.undo()
    report = run_batch(settings, [audio], tmp_path / "out", executor=ScriptedExecutor({"a.wav": ["ok"]}), progress=False)
    assert [item.status for item in report.files] == ["done"]
