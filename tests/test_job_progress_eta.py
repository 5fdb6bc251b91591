"""The running job's time left (service.job_eta) on synthetic jobs: phases of known CPU work run at a
CPU share that the test sets (the machine's load), sampled as the job's watcher samples them. The
estimate at half-way is checked against the time the simulated job really had left; the CPU meter is
checked on a real process."""

from __future__ import annotations

import os
import time
from pathlib import Path
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from isoscribe.executors import PooledExecutor
from isoscribe.isolation.types import WorkerInfo
from isoscribe.pipeline import Probed, ProgressTracker, StageStarted
from isoscribe.service.job_eta import JobEta, PhasePaces
from isoscribe.service.job_progress import CpuMeter, JobProgress
from isoscribe.service.job_store import JobOptions, JobStore

AUDIO_S = 60.0
WINDOWS_S = (22.0, 43.0, 52.0, 60.0)
"""Audio seconds done after each decoding window, as base transcribes the test minute."""
LEAD = 0.45
"""Share of the text's work before its first words (decoding, VAD, language detection, first window)."""
TICK_S = 0.25
TRACKER = ProgressTracker(diarize=True, summarize=False)
SHARES = {"text": TRACKER.speech_end, "diarize": TRACKER.diarize_share, "summary": TRACKER.summary_share}
KEYS = {"text": "text base", "diarize": "diarize"}


@dataclass
class Run:
    seen: list[tuple[float, float | None]]
    """(seconds since the text began, the estimated seconds left then)."""
    ended_at: float

    def at_half_way(self) -> tuple[float, float]:
        """(estimated, true) seconds left at the middle of the run."""
        at, estimate = min(self.seen, key=lambda seen: abs(seen[0] - self.ended_at / 2))
        assert estimate is not None, "no estimate at half-way"
        return estimate, self.ended_at - at


def simulate(
    paces: PhasePaces,
    text_cpu_s: float,
    diarize_cpu_s: float,
    share: Callable[[float], float],
    by_cpu: bool = True,
) -> Run:
    """One job: ``text_cpu_s`` then ``diarize_cpu_s`` CPU seconds per audio second, at ``share(t)`` CPU
    seconds per second; the text's words arrive window by window. Learns into ``paces`` as it ends."""
    eta = JobEta(paces, KEYS, SHARES)
    now, seen, done_s = 0.0, [], 0.0
    for phase, cpu_per_audio_s in (("text", text_cpu_s), ("diarize", diarize_cpu_s)):
        work_s, used_s = cpu_per_audio_s * AUDIO_S, 0.0
        first_s = WINDOWS_S[0]
        thresholds = [work_s * (LEAD + (1 - LEAD) * (done - first_s) / (AUDIO_S - first_s)) for done in WINDOWS_S]
        eta.begin(phase, now, by_cpu)
        eta.sample(now, 0.0 if by_cpu else None)
        while used_s < work_s - 1e-9:
            step_s = min(TICK_S, (work_s - used_s) / share(now))
            used_s, now = used_s + share(now) * step_s, now + step_s
            reading = used_s if by_cpu else None
            eta.sample(now, reading)
            while phase == "text" and thresholds and used_s >= thresholds[0] - 1e-9:
                thresholds.pop(0)
                done_s = WINDOWS_S[len(WINDOWS_S) - len(thresholds) - 1]
                eta.words(now, reading, done_s)
            seen.append((now, eta.remaining_s(now, AUDIO_S, done_s)))
        eta.end(now, used_s if by_cpu else None, AUDIO_S)
    return Run(seen, now)


def steady(share: float) -> Callable[[float], float]:
    return lambda _: share


def test_a_busier_machine_than_before_shows_in_the_estimate_at_once() -> None:
    """Learned on a quiet machine, run at half the CPU: the wall pace learned would say half the time."""
    paces = PhasePaces()
    quiet = simulate(paces, 0.16, 0.03, steady(1.0))
    wall_paced_s = sum(paces.cost(key).wall_s for key in KEYS.values()) * AUDIO_S
    busy = simulate(paces, 0.16, 0.03, steady(0.5))
    estimate, truth = busy.at_half_way()
    assert busy.ended_at == pytest.approx(2 * quiet.ended_at) and wall_paced_s == pytest.approx(quiet.ended_at)
    assert estimate == pytest.approx(truth, rel=0.1), (estimate, truth)


def test_the_estimate_follows_a_load_that_comes_in_the_middle() -> None:
    paces = PhasePaces()
    simulate(paces, 0.16, 0.03, steady(1.0))
    loaded = simulate(paces, 0.16, 0.03, lambda t: 1.0 if t < 5.0 else 0.4)
    late = [(at, estimate) for at, estimate in loaded.seen if at >= 5.0 + 10.0]
    assert late, "the run should last past ten seconds of load"
    for at, estimate in late:
        assert estimate == pytest.approx(loaded.ended_at - at, rel=0.15, abs=0.3), (at, estimate)
    before = next(estimate for at, estimate in loaded.seen if at >= 4.5)
    assert before == pytest.approx(11.4 - 4.5, rel=0.15), "before the load came the quiet machine's time was right"


def test_a_harder_file_than_the_learned_ones_moves_the_estimate_by_its_own_pace() -> None:
    paces = PhasePaces()
    simulate(paces, 0.16, 0.03, steady(1.0))
    harder = simulate(paces, 0.24, 0.03, steady(1.0))
    prior_only_s = 0.16 * AUDIO_S  # what the learned cost alone says the text takes
    late = next((at, estimate) for at, estimate in harder.seen if at >= 0.24 * AUDIO_S * 0.8)
    truth = harder.ended_at - late[0]
    assert late[1] == pytest.approx(truth, rel=0.25), (late, truth)
    assert late[1] > prior_only_s - late[0] + 0.03 * AUDIO_S, "its own pace says there is more than the prior"


def test_without_cpu_readings_the_learned_wall_pace_stands_in() -> None:
    paces = PhasePaces()
    simulate(paces, 0.16, 0.03, steady(1.0), by_cpu=False)
    assert paces.cost(KEYS["text"]).cpu_s is None
    again = simulate(paces, 0.16, 0.03, steady(1.0), by_cpu=False)
    estimate, truth = again.at_half_way()
    assert estimate == pytest.approx(truth, rel=0.05)
    assert again.seen[0][1] == pytest.approx(again.ended_at, rel=0.05), "known from the start"


def test_a_first_job_waits_for_its_own_pace_and_gives_later_phases_the_tracker_share() -> None:
    first = simulate(PhasePaces(), 0.16, 0.03, steady(1.0))
    text_s = 0.16 * AUDIO_S
    second_window_s = text_s * (LEAD + (1 - LEAD) * (WINDOWS_S[1] - WINDOWS_S[0]) / (AUDIO_S - WINDOWS_S[0]))
    before_two_windows = [estimate for at, estimate in first.seen if at < second_window_s - TICK_S]
    assert set(before_two_windows) == {None}, "one window is no pace, and nothing was learned"
    at, estimate = next((at, e) for at, e in first.seen if e is not None)
    text_left = text_s - at
    assert estimate == pytest.approx(text_left + text_s * SHARES["diarize"] / SHARES["text"], rel=0.1)


def test_paces_average_with_the_newest_counting_half() -> None:
    paces = PhasePaces()
    paces.record("text", wall_s=6.0, cpu_s=None, audio_s=60.0)
    paces.record("text", wall_s=18.0, cpu_s=6.0, audio_s=60.0)
    assert paces.cost("text").cpu_s * 60 == pytest.approx(6.0), "the first CPU reading is taken whole"
    paces = PhasePaces()
    paces.record("text", wall_s=12.0, cpu_s=6.0, audio_s=60.0)
    paces.record("text", wall_s=24.0, cpu_s=9.0, audio_s=60.0)
    assert paces.cost("text").wall_s * 60 == pytest.approx(18.0)
    assert paces.cost("text").cpu_s * 60 == pytest.approx(7.5)
    paces.record("text", wall_s=18.0, cpu_s=None, audio_s=60.0)
    assert paces.cost("text").cpu_s * 60 == pytest.approx(7.5), "a job without readings keeps the CPU learned"
    paces.record("text", wall_s=0.0, cpu_s=None, audio_s=60.0)
    assert paces.cost("text").wall_s * 60 == pytest.approx(18.0), "nothing is learned from no time"


def test_a_workers_first_task_teaches_only_until_a_warmed_one_has_run() -> None:
    """A fresh worker's first task pays one-time costs (measured: a minute's diarization 2.5 CPU s there,
    0.9 s on the next tasks); its figures stand in until a warmed worker's come, and never replace them."""
    paces = PhasePaces()
    paces.record("diarize", wall_s=5.4, cpu_s=2.5, audio_s=60.0, warmed=False)
    assert paces.cost("diarize").cpu_s * 60 == pytest.approx(2.5), "better than nothing"
    paces.record("diarize", wall_s=1.9, cpu_s=0.9, audio_s=60.0)
    assert paces.cost("diarize").cpu_s * 60 == pytest.approx(0.9), "replaced, not averaged"
    paces.record("diarize", wall_s=6.0, cpu_s=3.0, audio_s=60.0, warmed=False)  # a recycled worker's first
    assert paces.cost("diarize").cpu_s * 60 == pytest.approx(0.9)


def test_words_spread_over_a_busy_second_barely_move_a_learned_estimate() -> None:
    """On a busy machine one window's segments can come more than a second apart: the own pace measured
    over that audio second (0.6 CPU s for it: 38 CPU s a minute) counts as little as the audio it spans."""
    paces = PhasePaces()
    simulate(paces, 0.16, 0.03, steady(1.0))
    eta = JobEta(paces, KEYS, SHARES)
    eta.begin("text", 0.0, by_cpu=True)
    for tick in range(1, 18):
        eta.sample(tick * 0.25, tick * 0.25 * 0.5)
    before = eta.remaining_s(4.25, AUDIO_S, 0.0)
    eta.words(4.25, 2.125, 3.0)
    eta.words(5.5, 2.75, 4.0)  # 1.25 s later, one audio second on
    after = eta.remaining_s(5.5, AUDIO_S, 4.0)
    assert after == pytest.approx(before - 1.25, rel=0.1), (before, after)


class OnePool:
    """A pool whose one worker is this test process, busy or idle as the test says."""

    def __init__(self) -> None:
        self.state = "busy"
        self.tasks_done = 3

    def stats(self):
        return type("Stats", (), {"workers": [WorkerInfo(os.getpid(), self.state, 0.0, self.tasks_done, 0.0)]})()


def _burn(seconds: float) -> None:
    until = time.process_time() + seconds
    while time.process_time() < until:
        pass


def test_the_cpu_meter_counts_what_the_busy_worker_used_since_it_was_made() -> None:
    pool, exclusive = OnePool(), [True]
    meter = CpuMeter(PooledExecutor(pools={"speech": pool}), "speech", lambda: exclusive[0])
    assert meter.read() == 0.0, "counted from the first reading"
    _burn(0.3)
    used = meter.read()
    assert used is not None and 0.28 <= used <= 1.0, used
    exclusive[0] = False
    assert meter.read() is None, "a pool that runs another job's task too says nothing"
    exclusive[0], pool.state = True, "idle"
    assert meter.read() is None, "no busy worker: nothing to read"
    assert not meter.first_task
    pool.state, pool.tasks_done = "busy", 0
    meter.read()
    assert meter.first_task, "a worker that has not finished a task yet is on its first"


class SteppedMachine:
    """A fake clock and a worker whose CPU seconds follow it: a full core until ``busy_from``, a quarter after."""

    def __init__(self, busy_from: float) -> None:
        self.now = 1_000.0
        self.start = self.now
        self.busy_from = busy_from

    def __call__(self) -> float:
        return self.now

    def cpu_s(self) -> float:
        elapsed = self.now - self.start
        return min(elapsed, self.busy_from) + 0.25 * max(0.0, elapsed - self.busy_from)


class MeteredWorkers:
    def __init__(self, machine: SteppedMachine) -> None:
        self.machine = machine

    def loading(self, stage: str) -> bool:
        return False

    def meter(self, stage: str):
        machine = self.machine
        return type("Meter", (), {"first_task": False, "read": lambda _: machine.cpu_s()})()


def test_the_watcher_moves_the_eta_with_the_cpu_share_between_events(tmp_path: Path) -> None:
    """No event comes while the first window is decoded; the job's watcher reads its worker's CPU and the
    time left grows as the machine gets busy (learned: 9.6 CPU s for the minute's text)."""
    store = JobStore(tmp_path / "jobs.sqlite3")
    job = store.create(tmp_path / "a.wav", JobOptions(filename="a.wav"))
    store.claim_next()
    paces = PhasePaces()
    paces.record("text", wall_s=9.6, cpu_s=9.6, audio_s=AUDIO_S)
    machine = SteppedMachine(busy_from=4.0)
    progress = JobProgress(store, job.id, {}, ProgressTracker(False, False), MeteredWorkers(machine), clock=machine,
                           poll_s=0.005, paces=paces)
    progress(Probed(AUDIO_S))
    progress(StageStarted("speech"))
    left = {}
    for step in range(1, 33):  # half a second of the fake clock at a time, up to 16 s
        machine.now = machine.start + step * 0.5
        time.sleep(0.05)  # some rounds of the watcher (every 5 ms)
        expected = store.get(job.id).expected_done_at
        left[step * 0.5] = None if expected is None else expected - machine.now
    progress.close()
    store.close()
    # (the end time is written again when it moves by half a second or more)
    assert left[4.0] == pytest.approx(9.6 - 4.0, abs=0.6), "a full core: the learned work left, in as many seconds"
    at_16 = (9.6 - 4.0 - 0.25 * 12) / 0.25
    assert left[16.0] == pytest.approx(at_16, rel=0.1), (left[16.0], at_16)

