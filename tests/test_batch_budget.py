"""Memory budget gate: stages start only when their peaks fit beside what already holds memory."""

from __future__ import annotations

import threading
import time

import pytest

from isoscribe.budget import DEFAULT_PEAKS_MB, GateClosed, MemoryGate, default_budget_mb, stage_peaks_mb
from isoscribe.config import load_settings


def _started_within(gate: MemoryGate, stage: str, seconds: float) -> bool:
    started = threading.Event()

    def start() -> None:
        gate.acquire(stage)
        started.set()

    threading.Thread(target=start, daemon=True).start()
    return started.wait(seconds)


def test_second_stage_waits_until_the_first_releases_when_both_do_not_fit() -> None:
    gate = MemoryGate(1000, {"speech": 700, "summary": 600})
    gate.acquire("speech")
    waiter = threading.Event()

    def summary() -> None:
        gate.acquire("summary")
        waiter.set()

    threading.Thread(target=summary, daemon=True).start()
    assert not waiter.wait(0.3)
    gate.release("speech")
    assert waiter.wait(5)
    assert gate.held_mb() == 600


def test_stages_that_fit_together_run_together() -> None:
    gate = MemoryGate(2000, {"speech": 700, "summary": 600})
    gate.acquire("speech")
    assert _started_within(gate, "summary", 2)
    assert _started_within(gate, "summary", 2)  # 700 + 600 + 600 <= 2000
    assert not _started_within(gate, "speech", 0.3)  # 1400 + 1300 > 2000


def test_a_stage_larger_than_the_budget_runs_alone_rather_than_never() -> None:
    gate = MemoryGate(500, {"speech": 700, "summary": 100})
    assert _started_within(gate, "speech", 2)
    assert gate.overcommitted == {"speech": 1}
    assert not _started_within(gate, "summary", 0.3)


def test_idle_warm_workers_of_the_other_stage_are_retired_to_make_room() -> None:
    retired: list[str] = []
    gate = MemoryGate(1000, {"speech": 700, "summary": 600}, keep_warm=True, release_warm=retired.append)
    gate.acquire("speech")
    gate.release("speech")
    assert gate.held_mb() == 700  # the warm speech worker keeps its model loaded
    assert _started_within(gate, "summary", 2)
    assert retired == ["speech"]


def test_warm_workers_that_fit_are_kept() -> None:
    retired: list[str] = []
    gate = MemoryGate(5000, {"speech": 700, "summary": 600}, keep_warm=True, release_warm=retired.append)
    with gate.reserve("speech"):
        pass
    with gate.reserve("summary"):
        pass
    assert retired == []
    assert gate.coexist(workers=1) and not gate.coexist(workers=4)


def test_gpu_budget_is_checked_too() -> None:
    gate = MemoryGate(10_000, {"speech": 100, "summary": 100}, gpu_budget_mb=1000, gpu_peaks_mb={"speech": 800, "summary": 800})
    gate.acquire("speech")
    assert not _started_within(gate, "summary", 0.3)


def test_peaks_are_declared_else_learned_else_defaults() -> None:
    declared = load_settings(overrides={"batch": {"asr_peak_mb": 1234}})
    learned = {"speech": 999.0, "summary": 555.0}.get
    assert stage_peaks_mb(declared, learned) == {"speech": 1234, "summary": 555.0}
    assert stage_peaks_mb(load_settings(), lambda stage: None) == DEFAULT_PEAKS_MB
    assert 0 < default_budget_mb()


def test_waiting_releases_in_order_without_losing_capacity() -> None:
    gate = MemoryGate(1000, {"speech": 400, "summary": 400})
    gate.acquire("speech")
    gate.acquire("speech")  # the budget is full: every task below waits its turn
    admitted: list[int] = []

    def task(number: int) -> None:
        with gate.reserve("speech"):
            assert gate.held_mb() <= 1000
            admitted.append(number)

    threads = []
    for number in range(6):
        threads.append(threading.Thread(target=task, args=(number,)))
        threads[-1].start()
        _wait_until(lambda: gate.waiting("speech") == number + 1)
    gate.release("speech")
    gate.release("speech")
    for thread in threads:
        thread.join(10)
    assert admitted == list(range(6)), "tasks of a stage start in the order they asked"
    assert gate.held_mb() == 0


def test_closing_the_gate_turns_waiting_and_later_tasks_away() -> None:
    gate = MemoryGate(1000, {"speech": 700, "summary": 600})
    gate.acquire("speech")
    outcome: list[str] = []

    def summary() -> None:
        try:
            gate.acquire("summary")
            outcome.append("started")
        except GateClosed:
            outcome.append("turned away")

    waiter = threading.Thread(target=summary)
    waiter.start()
    _wait_until(lambda: gate.waiting("summary") == 1)
    gate.close()
    waiter.join(10)
    assert outcome == ["turned away"]
    with pytest.raises(GateClosed):
        gate.acquire("speech")


def _wait_until(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def test_celery_stages_do_not_count_against_this_machines_budget(tmp_path) -> None:
    from isoscribe.batch.runner import Batch as _Batch

    settings = load_settings(overrides={"batch": {"executor": "celery", "memory_budget_mb": 1, "workers": 8}})
    batch = _Batch(settings, tmp_path, retry_failed=False, executor=None)
    gate = batch.planner.gate(batch.settings, batch.summarize)
    assert gate.coexist(8), "remote stages are limited by the workers, not by the submitting machine's RAM"
    local = load_settings(overrides={"batch": {"memory_budget_mb": 1, "workers": 8}})
    batch = _Batch(local, tmp_path / "local", retry_failed=False, executor=None)
    assert not batch.planner.gate(batch.settings, batch.summarize).coexist(8)


def test_the_report_keeps_a_bounded_memory_curve_with_its_peak() -> None:
    from isoscribe.report import MAX_MEMORY_POINTS, summarised

    hours_at_5_hz = [(i * 0.2, 100.0 + (i % 7), 50.0) for i in range(5 * 3600 * 5)]
    hours_at_5_hz[12345] = (12345 * 0.2, 4321.0, 60.0)
    kept = summarised(hours_at_5_hz)
    assert len(kept) <= MAX_MEMORY_POINTS
    assert max(tree for _, tree, _ in kept) == 4321.0
    assert [t for t, _, _ in kept] == sorted(t for t, _, _ in kept)
    assert summarised(hours_at_5_hz[:3]) == [(0.0, 100.0, 50.0), (0.2, 101.0, 50.0), (0.4, 102.0, 50.0)]
