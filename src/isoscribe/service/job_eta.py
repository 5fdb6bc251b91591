"""The time left of a running job, from measured paces.

A job's time goes to phases: ``text`` (the speech stage from its model being ready to the file's last
words: decoding, VAD and language detection included), ``diarize`` (speakers, in the same worker) and
``summary`` (its own stage). From one job to the next a phase costs about the same *work* per audio
second: CPU seconds of its worker, which stay the same when the machine gets busy, while the wall
seconds do not (a minute on base: 10.8 and 11.3 CPU seconds in 15.3 and 20.5 s, as the load rose).
So the server learns each phase's CPU seconds per audio second from the phases it finished
(``PhasePaces``), and a running job turns the work left into time at the CPU share its worker gets
now: CPU seconds per second over the last ten seconds, where a shared machine's load shows. In the
text phase the job's own pace (work per audio second between its first and latest words) is blended
in by the share of the audio it was measured over, so a file harder or easier than the ones before
moves its estimate. A worker's first task pays one-time costs (in the service, the first diarized task
also loads the diarizer): its figures stand in only until a warmed worker's come.

Where no CPU can be read (a process per task, Celery, another job in the same pool), wall seconds
stand in for the work and the share is 1: the learned wall seconds per audio second. A phase this
server has not finished yet has no pace: the text's own pace stands in for the text, and a later
phase gets ``ProgressTracker``'s share of the text's work.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

__all__ = ["PhaseCost", "PhasePaces", "JobEta", "PHASES"]

PHASES = ("text", "diarize", "summary")
SHARE_WINDOW_S = 10.0
"""The CPU share is averaged over this much of the latest readings, about as far as a job's time left
looks ahead: on a shared machine the share swings between 0.4 and 1 within seconds (other processes
come and go), and a few seconds' dip says little about the next ten."""
MIN_SHARE_SPAN_S = 1.0
MIN_SHARE = 0.05
"""A worker that got almost no CPU for a while: its time left is long, not infinite."""
BURST_S = 1.0
"""Segments of one decoding window arrive within this of each other: the own pace needs two windows."""


@dataclass(frozen=True)
class PhaseCost:
    """What a phase took per audio second."""

    wall_s: float
    cpu_s: float | None
    """CPU seconds of the phase's worker; None where they could not be read."""
    warmed: bool = True
    """False when measured on a worker's first task, which pays one-time costs (lazy loads, first
    allocations: a minute's diarization took 2.5 CPU s there, 0.9 s on the next tasks)."""


class PhasePaces:
    """Per phase key (``text <stage> …``, ``diarize``, ``summary``), the cost per audio second of the
    phases this server finished; the newest counts half. A first task's figures stand only until a
    warmed worker's come, and never replace those."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._costs: dict[str, PhaseCost] = {}

    def record(self, key: str, wall_s: float, cpu_s: float | None, audio_s: float, warmed: bool = True) -> None:
        if audio_s <= 0 or wall_s <= 0:
            return
        new = PhaseCost(wall_s / audio_s, None if cpu_s is None or cpu_s <= 0 else cpu_s / audio_s, warmed)
        with self._lock:
            before = self._costs.get(key)
            if before is not None and before.warmed and not new.warmed:
                return
            if before is not None and before.warmed == new.warmed:
                cpus = [cpu for cpu in (before.cpu_s, new.cpu_s) if cpu is not None]
                new = PhaseCost((before.wall_s + new.wall_s) / 2, sum(cpus) / len(cpus) if cpus else None, warmed)
            self._costs[key] = new

    def cost(self, key: str) -> PhaseCost | None:
        with self._lock:
            return self._costs.get(key)


@dataclass
class _Running:
    name: str
    started_at: float
    by_cpu: bool
    """Work counts in the worker's CPU seconds (else in wall seconds)."""
    readings: deque[tuple[float, float]] = field(default_factory=deque)
    """(time, CPU seconds since the phase started), the last SHARE_WINDOW_S of them and one before; the
    first is the first the worker was seen busy in the phase (a task waits a moment for its worker)."""
    first_words: tuple[float, float] | None = None
    """(audio seconds done, work done) at the first window's words: the own pace counts from there."""
    first_words_at: float = 0.0
    latest_words: tuple[float, float] | None = None


class JobEta:
    """One running job's phases, fed as they go (``begin``, ``sample``, ``words``, ``end``); ``remaining_s``
    is the estimate. ``keys`` name each phase's pace in ``paces``; ``shares`` are ProgressTracker's
    shares of the work by phase, for a phase not seen before."""

    def __init__(self, paces: PhasePaces, keys: dict[str, str], shares: dict[str, float]) -> None:
        self.paces = paces
        self.keys = keys
        self.phases = [name for name in PHASES if name in keys]
        self.shares = shares
        self.running: _Running | None = None
        self.worked: dict[str, float] = {}
        """Work each finished phase of this job took, in its own units (CPU or wall seconds)."""
        self.last_share: float | None = None

    def begin(self, phase: str, now: float, by_cpu: bool) -> None:
        """``phase`` starts ``now`` (its model loaded); ``by_cpu``: its worker's CPU can be read."""
        self.running = _Running(phase, now, by_cpu)

    def sample(self, now: float, cpu_s: float | None) -> None:
        """CPU seconds the running phase's worker used since the phase began (None: not readable now)."""
        running = self.running
        if running is None or not running.by_cpu or cpu_s is None:
            return
        readings = running.readings
        readings.append((now, cpu_s))
        while len(readings) > 2 and readings[1][0] <= now - SHARE_WINDOW_S:
            readings.popleft()

    def words(self, now: float, cpu_s: float | None, done_s: float) -> None:
        """The text phase reached ``done_s`` audio seconds."""
        self.sample(now, cpu_s)
        running = self.running
        if running is None or running.name != "text":
            return
        work = self._work(running, now)
        if running.first_words is None:
            running.first_words, running.first_words_at = (done_s, work), now
        elif now - running.first_words_at < BURST_S:  # the rest of the first window
            running.first_words = (done_s, work)
        else:
            running.latest_words = (done_s, work)

    def end(self, now: float, cpu_s: float | None, audio_s: float, warmed: bool = True) -> None:
        """The running phase is over, done whole: its cost is learned (``warmed``: not on a worker's first task)."""
        running = self.running
        if running is None:
            return
        self.sample(now, cpu_s)
        self.last_share = self._share(running)
        work = self._work(running, now)
        self.worked[running.name] = work
        cpu = work if running.by_cpu else None
        self.paces.record(self.keys[running.name], now - running.started_at, cpu, audio_s, warmed)
        self.running = None

    def explain(self, now: float) -> dict[str, float | str | None]:
        """The running phase's figures, for a debug log."""
        running = self.running
        share = self._share(running) if running.by_cpu else None
        return {"phase": running.name, "work_s": round(self._work(running, now), 3), "share": share and round(share, 3)}

    def abort(self) -> None:
        """The running phase failed or was cut short: nothing is learned from it."""
        self.running = None

    def remaining_s(self, now: float, audio_total_s: float, audio_done_s: float) -> float | None:
        """Seconds until the job is done, or None where nothing measured supports an estimate."""
        running = self.running
        if running is None or audio_total_s <= 0:
            return None
        share = self._share(running) if running.by_cpu else 1.0
        work = self._work(running, now)
        total = self._total_work(running, work, audio_total_s, audio_done_s)
        if total is None or share is None:
            return None
        seconds = max(0.0, total - work) / share
        for later in self.phases[self.phases.index(running.name) + 1 :]:
            later_s = self._later_s(later, running, share, work, audio_total_s, audio_done_s)
            if later_s is None:
                return None
            seconds += later_s
        return seconds

    def _total_work(self, running: _Running, work: float, total_s: float, done_s: float) -> float | None:
        """The running phase's whole work: its learned cost, in the text blended with its own pace as the
        audio goes by; a phase never learned gets the tracker's share of the text's."""
        prior = self._cost_per_audio_s(running.name, running.by_cpu)
        prior_total = None if prior is None else prior * total_s
        if running.name != "text":
            return prior_total if prior_total is not None else self._share_of_text(running.name, None)
        own_total = None
        if running.first_words and running.latest_words:
            (done_first, work_first), (done_last, work_last) = running.first_words, running.latest_words
            if done_last > done_first and work_last > work_first:
                own_total = work_last + (work_last - work_first) / (done_last - done_first) * (total_s - done_last)
        if prior_total is None or own_total is None:
            return prior_total if own_total is None else own_total
        if work >= prior_total:
            return own_total  # a file harder than the learned ones: the prior has nothing left to say
        # The own pace counts as much as the audio it was measured over: a window's segments can come
        # spread out on a busy machine, and a pace over a few seconds of audio says little.
        (done_first, _), (done_last, _) = running.first_words, running.latest_words
        weight = min(1.0, (done_last - done_first) / total_s)
        return (1 - weight) * prior_total + weight * own_total

    def _later_s(
        self, phase: str, running: _Running, share: float, work: float, total_s: float, done_s: float
    ) -> float | None:
        cost = self.paces.cost(self.keys[phase])
        if cost is not None and running.by_cpu and cost.cpu_s is not None:
            return cost.cpu_s * total_s / share
        if cost is not None:
            return cost.wall_s * total_s
        text_total = self._total_work(running, work, total_s, done_s) if running.name == "text" else None
        estimated = self._share_of_text(phase, text_total)
        return None if estimated is None else estimated / share

    def _share_of_text(self, phase: str, text_total: float | None) -> float | None:
        """A phase never finished here: the tracker's share of the text's work (this job's, done or foreseen)."""
        text_work = self.worked.get("text", text_total)
        return None if text_work is None else text_work * self.shares.get(phase, 0.0) / self.shares["text"]

    def _cost_per_audio_s(self, phase: str, by_cpu: bool) -> float | None:
        cost = self.paces.cost(self.keys[phase])
        if cost is None:
            return None
        return cost.cpu_s if by_cpu else cost.wall_s

    def _work(self, running: _Running, now: float) -> float:
        """Work done in the running phase by ``now``: the CPU seconds read (and the share since), or wall seconds."""
        if not running.by_cpu:
            return now - running.started_at
        at, cpu = running.readings[-1] if running.readings else (running.started_at, 0.0)
        return cpu + max(0.0, now - at) * (self._share(running) or 0.0)

    def _share(self, running: _Running) -> float | None:
        """CPU seconds per second the phase's worker got lately; before a second of readings, the previous
        phase's or the learned one."""
        readings = running.readings
        if readings and readings[-1][0] - readings[0][0] >= MIN_SHARE_SPAN_S:
            (first_at, first_cpu), (last_at, last_cpu) = readings[0], readings[-1]
            return max(MIN_SHARE, (last_cpu - first_cpu) / (last_at - first_at))
        if self.last_share is not None:
            return self.last_share
        cost = self.paces.cost(self.keys[running.name])
        if cost is not None and cost.cpu_s is not None:
            return max(MIN_SHARE, cost.cpu_s / cost.wall_s)
        return None
