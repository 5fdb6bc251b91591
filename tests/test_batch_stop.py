"""Stops, cancels and failures that must not be recorded as the file's failure, with a test double of
the executor (no processes); the real stop with a signal is in test_batch_stop_signal.py."""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import pytest

from batch_support import write_inputs

from isoscribe.batch import SPEECH_DONE_DIR, OutDirBusy, run_batch
from isoscribe.batch.runner import _in_order
from isoscribe.config import load_settings
from isoscribe.isolation import StageError, TaskCancelled, TaskResult, TaskStats, WorkerCrashed
from isoscribe.ledger import FileStatus, Ledger
from isoscribe.pipeline import FailureKind, FilePipeline, PipelineError
from isoscribe.pipeline.policy import Policy, RetryPolicy
from isoscribe.transcript import PIECE_S, PieceResult, ProbeResult, Segment, SpeechRequest, Summary, Transcript

STATS = TaskStats(wall_s=0.1, peak_rss_mb=100.0, peak_gpu_mb=None, worker_pid=1, worker_task_number=1)


def _transcript(start_s: float = 0.0, end_s: float = 1.0) -> Transcript:
    return Transcript([Segment(0, start_s, end_s, " hello there")], "en", 1.0, end_s - start_s, "scripted")


class PieceExecutor:
    """Probes report ``duration_s``; speech tasks answer from ``answer(request, attempt_of_piece)``, which
    returns a value, raises, or returns None for a task that stays running until it is cancelled."""

    def __init__(self, duration_s: float, answer) -> None:
        self.duration_s = duration_s
        self.answer = answer
        self.submitted: list[tuple[int | None, int]] = []
        self._lock = threading.Lock()

    def submit(self, stage: str, request, on_event=None) -> Future:
        future: Future = Future()
        if stage == "probe":
            future.set_result(TaskResult(ProbeResult(self.duration_s), STATS))
            return future
        index = request.piece.index if getattr(request, "piece", None) else None
        with self._lock:
            attempt = 1 + sum(1 for submitted, _ in self.submitted if submitted == index)
            self.submitted.append((index, attempt))
        try:
            value = self.answer(request, attempt)
        except Exception as exc:
            future.set_exception(exc)
            return future
        if value is not None:
            future.set_result(TaskResult(value, STATS))
        return future

    def cancel(self, future: Future) -> bool:
        if future.done():
            return False
        future.set_exception(TaskCancelled("speech"))
        return True

    def release(self, stage: str) -> None:
        pass

    def shutdown(self) -> None:
        pass


def _piece(request: SpeechRequest) -> PieceResult:
    index, count = request.piece.index, request.piece.count
    piece_s = 3.5 * PIECE_S / count
    start_s, end_s = index * piece_s, (index + 1) * piece_s
    return PieceResult(index, start_s, end_s, _transcript(start_s, end_s))


def test_a_failed_piece_stops_its_siblings_and_no_queued_piece_starts() -> None:
    sibling_running = threading.Event()

    def answer(request, attempt):
        if request.piece.index == 0:
            assert sibling_running.wait(30)
            raise StageError("speech", exc_type="RuntimeError", message="piece 0 is broken")
        sibling_running.set()
        return None  # piece 1 runs until cancelled; pieces 2 and 3 must never start

    executor = PieceExecutor(3.5 * PIECE_S, answer)
    policy = Policy(retry=RetryPolicy(max_attempts=3, backoff_s=0.01), piece_workers=2)
    request = SpeechRequest(audio_path="long.wav")
    outcome: list[BaseException] = []
    runner = threading.Thread(target=lambda: _capture(outcome, FilePipeline(executor, policy).transcribe, request))
    runner.start()
    runner.join(30)
    assert not runner.is_alive(), "the running sibling was never stopped"
    [error] = outcome
    assert isinstance(error, PipelineError) and error.kind == FailureKind.STAGE_ERROR and "piece 0" in error.message
    assert sorted(index for index, _ in executor.submitted) == [0, 1]


def _capture(outcome: list[BaseException], call, *args) -> None:
    try:
        call(*args)
    except BaseException as exc:  # noqa: BLE001 (the test inspects whatever came out)
        outcome.append(exc)


def test_a_retried_piece_starts_one_more_ledger_attempt_not_one_per_later_piece(tmp_path: Path) -> None:
    retry_submitted = threading.Event()

    def answer(request, attempt):
        index = request.piece.index
        if index == 0 and attempt == 1:
            raise WorkerCrashed("speech", 500.0, signal=11)
        if index == 0:
            retry_submitted.set()
        if index == 1:  # the later pieces start only after piece 0's retry
            assert retry_submitted.wait(30)
        return _piece(request)

    executor = PieceExecutor(3.5 * PIECE_S, answer)
    settings = load_settings(overrides={
        "asr": {"model": "tiny.en"}, "diarization": {"enabled": False},
        "batch": {"workers": 2, "max_attempts": 3, "retry_backoff_s": 0.01, "summarize": False, "formats": ["json"]},
    })
    [audio] = write_inputs(tmp_path, "long.wav")
    [item] = run_batch(settings, [audio], tmp_path / "out", executor=executor, progress=False, notify=False).files
    assert sorted(executor.submitted) == [(0, 1), (0, 2), (1, 1), (2, 1), (3, 1)]
    assert item.status == "done"
    assert item.attempts == 2, "the file had two attempts: the first, and the one piece 0's retry started"


def test_a_cancelled_queued_task_leaves_the_file_to_resume_not_failed(tmp_path: Path) -> None:
    def answer(request, attempt):
        return None

    class CancelsQueued(PieceExecutor):
        def submit(self, stage, request, on_event=None):
            future = super().submit(stage, request, on_event)
            if stage == "speech":
                future.cancel()  # what pool.cancel does to a task still queued
            return future

    settings = load_settings(overrides={"batch": {"workers": 1, "summarize": False, "formats": ["json"]}})
    [audio] = write_inputs(tmp_path, "a.wav")
    out_dir = tmp_path / "out"
    report = run_batch(settings, [audio], out_dir, executor=CancelsQueued(1.0, answer), progress=False, notify=False)
    [item] = report.files
    assert item.status == "interrupted" and report.counts["failed"] == 0 and report.ok
    with Ledger.in_dir(out_dir) as ledger:
        [row] = ledger.rows()
        assert row.status == FileStatus.QUEUED and row.error is None and row.attempts == 0

    resumed = run_batch(settings, [audio], out_dir, executor=PieceExecutor(1.0, lambda r, a: _transcript()),
                        progress=False, notify=False)
    assert [item.status for item in resumed.files] == ["done"], "the next run picks the file up without --retry-failed"


def test_an_oom_killed_probe_is_out_of_memory_and_tried_again_not_bad_audio(tmp_path: Path) -> None:
    oom_kill = WorkerCrashed("probe", 900.0, signal=9)
    assert PipelineError.from_isolation("probe", oom_kill).kind == FailureKind.OUT_OF_MEMORY
    assert PipelineError.from_isolation("probe", WorkerCrashed("probe", signal=11)).kind == FailureKind.BAD_AUDIO

    class KilledProbeOnce(PieceExecutor):
        probes = 0

        def submit(self, stage, request, on_event=None):
            if stage == "probe" and not self.probes:
                self.probes += 1
                future: Future = Future()
                future.set_exception(oom_kill)
                return future
            return super().submit(stage, request, on_event)

    settings = load_settings(overrides={"batch": {"workers": 1, "summarize": False, "formats": ["json"],
                                                  "retry_backoff_s": 0.01}})
    [audio] = write_inputs(tmp_path, "a.wav")
    executor = KilledProbeOnce(1.0, lambda request, attempt: _transcript())
    [item] = run_batch(settings, [audio], tmp_path / "out", executor=executor, progress=False, notify=False).files
    assert item.status == "done" and item.attempts == 1


def test_a_second_run_on_the_same_out_dir_fails_fast_while_the_first_runs(tmp_path: Path) -> None:
    speech_started, finish = threading.Event(), threading.Event()

    def answer(request, attempt):
        speech_started.set()
        assert finish.wait(60)
        return _transcript()

    settings = load_settings(overrides={"batch": {"workers": 1, "summarize": False, "formats": ["json"]}})
    [audio, other] = write_inputs(tmp_path, "a.wav", "b.wav")
    out_dir = tmp_path / "out"
    first: list = []
    runner = threading.Thread(target=lambda: first.append(
        run_batch(settings, [audio], out_dir, executor=PieceExecutor(1.0, answer), progress=False, notify=False)))
    runner.start()
    try:
        assert speech_started.wait(30)
        with pytest.raises(OutDirBusy, match="in use by another isoscribe run"):
            run_batch(settings, [other], out_dir, executor=PieceExecutor(1.0, answer), progress=False, notify=False)
    finally:
        finish.set()
        runner.join(60)
    assert [item.status for item in first[0].files] == ["done"]
    again = run_batch(settings, [other], out_dir, executor=PieceExecutor(1.0, lambda r, a: _transcript()),
                      progress=False, notify=False)
    assert [item.status for item in again.files] == ["done"], "the directory is free once the first run ended"


def test_a_cancel_while_a_per_task_process_is_being_set_up_is_not_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    import isoscribe.executors
    from isoscribe.executors import PerTaskExecutor
    from isoscribe.isolation import Limits, StageSpec, one_shot_pool
    from isoscribe.stages.faults import FaultRequest

    setting_up, go_on = threading.Event(), threading.Event()

    def slow_setup(*args, **kwargs):
        setting_up.set()
        assert go_on.wait(30)
        return one_shot_pool(*args, **kwargs)

    monkeypatch.setattr(isoscribe.executors, "one_shot_pool", slow_setup)
    executor = PerTaskExecutor({"faults": (StageSpec("isoscribe.stages.faults"), Limits())})
    try:
        future = executor.submit("faults", FaultRequest("sleep", seconds=5.0))
        assert setting_up.wait(30)
        assert executor.cancel(future), "the task is running (its process being set up): the cancel is taken"
        go_on.set()
        with pytest.raises(TaskCancelled):
            future.result(timeout=60)
    finally:
        go_on.set()
        executor.shutdown()


def test_sweeping_stale_segments_skips_files_it_may_not_remove(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from isoscribe.isolation import transport

    dead_pid = 2**22 + 12345  # above pid_max's default: no such process
    stale = Path(transport.segment_dir()) / f"{transport.SEGMENT_PREFIX}{dead_pid}-0123abcd-seg"
    stale.write_bytes(b"x")
    real_unlink = os.unlink

    def unlink(path, *args, **kwargs):
        if str(path) == str(stale):
            raise PermissionError(13, "Operation not permitted", str(path))
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(transport.os, "unlink", unlink)
    try:
        transport.sweep_stale()  # another user's segment: left alone, no PermissionError
        assert stale.exists()
    finally:
        real_unlink(stale)


def test_a_stop_drops_queued_stage_tasks_and_lets_running_ones_finish() -> None:
    from isoscribe.pipeline import Cancellation

    executor = PieceExecutor(1.0, lambda request, attempt: None)
    queued, running = Future(), Future()
    assert running.set_running_or_notify_cancel()
    cancellation = Cancellation()
    with cancellation.track(executor, queued), cancellation.track(executor, running):
        cancellation.stop_starting()
        assert queued.cancelled(), "a task still queued in its executor never starts after a stop"
        assert not running.done(), "a running task gets the grace period"
    late = Future()
    with cancellation.track(executor, late):
        assert late.cancelled(), "nor does one submitted as the stop came"


def test_a_stage_waiting_for_memory_is_turned_away_when_the_batch_stops() -> None:
    from isoscribe.batch.gate import GatedExecutor
    from isoscribe.budget import MemoryGate

    gate = MemoryGate(1000, {"speech": 700, "summary": 600})
    gated = GatedExecutor(PieceExecutor(1.0, lambda request, attempt: _transcript()), gate)
    gate.acquire("speech")  # the budget is held: the next speech task waits
    outcome: list[BaseException] = []
    waiter = threading.Thread(target=lambda: _capture(outcome, gated.submit, "speech", SpeechRequest("a.wav")))
    waiter.start()
    deadline = time.monotonic() + 30
    while gate.waiting("speech") == 0:
        assert time.monotonic() < deadline and waiter.is_alive(), "the task never waited for memory"
        time.sleep(0.005)
    gate.close()
    waiter.join(10)
    assert [type(error) for error in outcome] == [TaskCancelled]


def test_a_stop_between_the_two_phases_leaves_the_file_queued_with_its_speech_kept(tmp_path: Path) -> None:
    import logging
    import os
    import signal

    stopping = threading.Event()

    class Stopping(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "event=batch_stopping" in record.getMessage():
                stopping.set()

    speech_calls: list[str] = []

    def answer(request, attempt):
        speech_calls.append(request.audio_path)
        if len(speech_calls) == 1:
            os.kill(os.getpid(), signal.SIGUSR1)  # the stop comes while the first phase's speech runs
            assert stopping.wait(30)
        return _transcript()

    class Summaries(PieceExecutor):
        def submit(self, stage, request, on_event=None):
            if stage == "summary":
                future: Future = Future()
                future.set_result(TaskResult(Summary(overview="Hello there."), STATS))
                return future
            return super().submit(stage, request, on_event)

    # Both stages fit the budget only apart: speech for every file first, then every summary.
    settings = load_settings(overrides={"batch": {
        "workers": 1, "isolation": "pooled", "memory_budget_mb": 1000, "asr_peak_mb": 900, "llm_peak_mb": 600,
        "formats": ["json", "summary"],
    }})
    [audio] = write_inputs(tmp_path, "a.wav")
    out_dir = tmp_path / "out"
    handler = Stopping()
    logging.getLogger("isoscribe.batch").addHandler(handler)
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: (_ for _ in ()).throw(SystemExit(128 + signum)))
    try:
        with pytest.raises(SystemExit):
            run_batch(settings, [audio], out_dir, executor=Summaries(1.0, answer), progress=False, notify=False)
    finally:
        signal.signal(signal.SIGUSR1, previous)
        logging.getLogger("isoscribe.batch").removeHandler(handler)
    with Ledger.in_dir(out_dir) as ledger:
        [row] = ledger.rows()
        assert row.status == FileStatus.QUEUED and row.attempts == 0, "stopped between its halves: queued, no attempt spent"

    again = run_batch(settings, [audio], out_dir, executor=Summaries(1.0, answer), progress=False, notify=False)
    assert [(item.status, item.attempts) for item in again.files] == [("done", 1)]
    assert not (out_dir / SPEECH_DONE_DIR).exists(), "nothing is kept once every file is done"
    assert len(speech_calls) == 1, "the kept speech result was used, not decoded again"


class _Stop(Exception):
    pass


def test_a_stop_signal_another_thread_receives_still_unwinds_the_waiting_main_thread() -> None:
    """The kernel may hand SIGTERM to any thread; the batch's main thread must still run the handler while it
    waits for its files (an untimed wait ran it only once the files were done: the stop was lost)."""

    def stop(signum: int, frame: object) -> None:
        raise _Stop

    files_done: Future = Future()

    def signal_this_thread_then_finish_late() -> None:
        time.sleep(0.3)
        signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)
        time.sleep(10)
        files_done.set_result("done")

    previous = signal.signal(signal.SIGUSR1, stop)
    try:
        threading.Thread(target=signal_this_thread_then_finish_late, daemon=True).start()
        with pytest.raises(_Stop):
            _in_order([files_done])
        assert not files_done.done()
    finally:
        signal.signal(signal.SIGUSR1, previous)
