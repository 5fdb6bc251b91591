"""How many speech workers, and how many CTranslate2 threads each, this machine runs best.

Measured, not guessed: ``calibrate`` times the real speech stage on a short shipped clip for each
split of the cores into workers × threads, every worker transcribing at once, and caches the result
beside the models (``asr.model_cache_dir/calibration.json``), keyed by model, compute type and cores.
``isoscribe tune`` runs it; an ``auto`` setting runs it lazily the first time. On 2 cores with tiny.en
two 1-thread workers beat one 2-thread worker (small matrices: extra threads mostly wait on each
other), while a bigger model may prefer threads; hence one measurement per machine and model.
The parent only starts worker processes here; it never imports CTranslate2.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from isoscribe.config import AsrSettings, Settings
from isoscribe.files import write_atomic
from isoscribe.logs import log_event

__all__ = [
    "CALIBRATION_AUDIO",
    "Layout",
    "Calibration",
    "available_cores",
    "candidate_layouts",
    "cached_calibration",
    "calibrate",
    "CalibrationFailed",
    "cpu_threads",
    "memory_cap_workers",
    "resolve_batch",
    "resolve_service",
    "resolve_one_worker",
    "cache_path",
]

logger = logging.getLogger("isoscribe.tuning")

CALIBRATION_AUDIO = Path(__file__).parent / "assets" / "calibration.wav"
CALIBRATION_AUDIO_S = 11.0
TASKS_PER_WORKER = 4
"""Timed transcriptions of the clip per worker and layout (after one warm-up each)."""
SAME_SPEED = 0.05
"""Layouts within this share of the fastest count as equally fast; the one with fewer workers wins (less memory)."""
SPEECH_STAGE = "isoscribe.stages.speech"


@dataclass(frozen=True)
class Layout:
    workers: int
    threads: int
    """CTranslate2 threads per worker."""
    audio_s_per_s: float = 0.0
    """Measured throughput: seconds of audio transcribed per second of wall time, all workers together."""
    peak_rss_mb: float = 0.0
    """Largest worker RSS seen while measuring."""


@dataclass
class Calibration:
    key: str
    cores: int
    layouts: list[Layout]
    measured_at: str
    load_average: tuple[float, float, float]

    @property
    def best(self) -> Layout:
        fastest = max(layout.audio_s_per_s for layout in self.layouts)
        close = [layout for layout in self.layouts if layout.audio_s_per_s >= (1 - SAME_SPEED) * fastest]
        return min(close, key=lambda layout: (layout.workers, -layout.audio_s_per_s))

    def to_dict(self) -> dict:
        return {**asdict(self), "best": asdict(self.best)}

    @classmethod
    def from_dict(cls, data: dict) -> Calibration:
        layouts = [Layout(**layout) for layout in data["layouts"]]
        return cls(data["key"], data["cores"], layouts, data["measured_at"], tuple(data["load_average"]))


def available_cores() -> int:
    return len(os.sched_getaffinity(0))


def candidate_layouts(cores: int) -> list[Layout]:
    """Every split of the cores into equal workers × threads (2 cores: 1×2 and 2×1)."""
    return [Layout(workers, cores // workers) for workers in range(1, cores + 1) if cores % workers == 0]


def _key(asr: AsrSettings, cores: int) -> str:
    return f"{asr.model}|{asr.compute_type}|{asr.device}|{cores}"


def cache_path(asr: AsrSettings) -> Path:
    return Path(asr.model_cache_dir) / "calibration.json"


def cached_calibration(asr: AsrSettings) -> Calibration | None:
    """This machine's calibration for the model, if one was measured."""
    try:
        entries = json.loads(cache_path(asr).read_text())
    except (OSError, ValueError):
        return None
    entry = entries.get(_key(asr, available_cores()))
    return Calibration.from_dict(entry) if entry else None


def _store(asr: AsrSettings, calibration: Calibration) -> None:
    path = cache_path(asr)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError):
        entries = {}
    entries[calibration.key] = calibration.to_dict()
    write_atomic(path, json.dumps(entries, indent=2, sort_keys=True) + "\n")


class CalibrationFailed(RuntimeError):
    """No layout could be measured (every one failed to load its workers within the memory cap)."""


def calibrate(settings: Settings, max_workers: int | None = None) -> Calibration:
    """Time every candidate layout that the memory budget holds (and at most ``max_workers``) and cache
    the result. Each worker is capped at its share of the budget."""
    cores = available_cores()
    budget_mb = _budget_mb(settings)
    cap = memory_cap_workers(budget_mb, _speech_peak_mb(settings))
    max_workers = cap if max_workers is None else min(max_workers, cap)
    candidates = [c for c in candidate_layouts(cores) if c.workers <= max_workers]
    log_event(logger, "calibration_start", model=settings.asr.model, cores=cores, layouts=len(candidates), budget_mb=budget_mb)
    measured = [_measure(settings, candidate, budget_mb / candidate.workers) for candidate in candidates]
    layouts = [layout for layout in measured if layout is not None]
    if not layouts:
        raise CalibrationFailed(f"no layout of {settings.asr.model} loaded within a memory budget of {budget_mb:.0f} MB")
    calibration = Calibration(
        key=_key(settings.asr, cores),
        cores=cores,
        layouts=layouts,
        measured_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        load_average=tuple(round(value, 2) for value in os.getloadavg()),
    )
    _store(settings.asr, calibration)
    best = calibration.best
    log_event(
        logger, "calibration_done", model=settings.asr.model, workers=best.workers, threads=best.threads,
        audio_s_per_s=best.audio_s_per_s, path=cache_path(settings.asr),
    )
    return calibration


def _budget_mb(settings: Settings) -> float:
    from isoscribe.budget import default_budget_mb

    return settings.batch.memory_budget_mb or default_budget_mb()


def _speech_peak_mb(settings: Settings) -> float:
    from isoscribe.budget import DEFAULT_PEAKS_MB

    return settings.batch.asr_peak_mb or DEFAULT_PEAKS_MB["speech"]


def _measure(settings: Settings, layout: Layout, hard_rss_mb: float) -> Layout | None:
    """The layout's throughput, or None when its workers did not all load (within ``hard_rss_mb`` each)."""
    from isoscribe.executors import pool_from_settings
    from isoscribe.isolation import Limits, StageSpec
    from isoscribe.pipeline.stages import speech_request

    measured = settings.model_copy(deep=True)
    measured.asr.cpu_threads = layout.threads
    measured.diarization.enabled = False
    request = speech_request(measured, CALIBRATION_AUDIO, diarize=False)
    stage = StageSpec(SPEECH_STAGE, measured, "calibrate")
    limits = Limits(timeout_s=600, load_timeout_s=settings.isolation.load_timeout_s, hard_rss_mb=hard_rss_mb)
    with pool_from_settings(settings, stage, limits, size=layout.workers, prespawn=True) as pool:
        if not pool.wait_ready(settings.isolation.load_timeout_s):
            log_event(logger, "calibration_layout_skipped", logging.WARNING, workers=layout.workers,
                      threads=layout.threads, reason="workers did not load", hard_rss_mb=round(hard_rss_mb))
            return None
        warm_up = [pool.submit(request) for _ in range(layout.workers)]
        peaks = [future.result().stats.peak_rss_mb for future in warm_up]
        started = time.perf_counter()
        timed = [pool.submit(request) for _ in range(layout.workers * TASKS_PER_WORKER)]
        peaks += [future.result().stats.peak_rss_mb for future in timed]
        wall_s = time.perf_counter() - started
    throughput = len(timed) * CALIBRATION_AUDIO_S / wall_s
    log_event(logger, "calibration_layout", workers=layout.workers, threads=layout.threads, audio_s_per_s=throughput)
    return Layout(layout.workers, layout.threads, round(throughput, 2), round(max(peaks), 1))


def _on_gpu(asr: AsrSettings) -> bool:
    from isoscribe.budget import gpu_total_mb

    return asr.device == "cuda" or (asr.device == "auto" and gpu_total_mb() is not None)


def _chosen_layout(settings: Settings, memory_cap: int) -> Layout:
    """The calibrated layout (measured now if this machine has none), workers capped by memory."""
    if _on_gpu(settings.asr):
        return Layout(1, 0)  # one GPU: a second worker would only share it
    calibration = cached_calibration(settings.asr) or calibrate(settings, memory_cap)
    best = calibration.best
    if best.workers <= memory_cap:
        return best
    fitting = [layout for layout in calibration.layouts if layout.workers <= memory_cap]
    return max(fitting, key=lambda layout: layout.audio_s_per_s) if fitting else Layout(1, calibration.cores)


def memory_cap_workers(budget_mb: float, speech_peak_mb: float) -> int:
    """How many speech workers the memory budget holds at their peak (at least one)."""
    return max(1, math.floor(budget_mb / speech_peak_mb)) if speech_peak_mb > 0 else available_cores()


def resolve_batch(settings: Settings, memory_cap: int) -> Settings:
    """``batch.workers`` and ``asr.cpu_threads`` as numbers; ``memory_cap``: speech workers the budget holds."""
    workers, threads = _workers_and_threads(settings, settings.batch.executor, settings.batch.workers, memory_cap)
    return _with(settings, batch_workers=workers, threads=threads)


def resolve_service(settings: Settings, memory_cap: int) -> Settings:
    """``service.asr_workers`` and ``asr.cpu_threads`` as numbers."""
    service = settings.service
    workers, threads = _workers_and_threads(settings, service.executor, service.asr_workers, memory_cap)
    return _with(settings, asr_workers=workers, threads=threads)


def _workers_and_threads(
    settings: Settings, executor: str, workers: int | str, memory_cap: int
) -> tuple[int, int | None]:
    """Threads None: left as set, for remote Celery workers whose machines decide their own."""
    if executor == "celery":
        # Files in flight on remote workers: this machine's cores say nothing about theirs.
        return (available_cores() if workers == "auto" else workers), None
    return _resolve(settings, workers, memory_cap)


def resolve_one_worker(settings: Settings) -> Settings:
    """``asr.cpu_threads`` as a number for a single speech worker (``isoscribe transcribe``): every core."""
    return _with(settings, threads=_resolve(settings, 1, 1)[1])


def _resolve(settings: Settings, workers: int | str, memory_cap: int) -> tuple[int, int]:
    """(workers, threads per worker): explicit numbers stay; ``auto`` workers come from the calibration.

    Every calibrated layout splits the cores evenly, so ``auto`` threads beside a known worker count
    are the cores shared out among the workers, and nothing is measured unless the workers are ``auto``.
    """
    threads = settings.asr.cpu_threads
    if workers == "auto":
        layout = _chosen_layout(settings, memory_cap)
        workers = layout.workers
        threads = layout.threads if threads == "auto" else threads
    if threads == "auto":
        threads = max(1, available_cores() // workers)
    return workers, threads


def _with(
    settings: Settings, batch_workers: int | None = None, asr_workers: int | None = None, threads: int | None = None
) -> Settings:
    resolved = settings.model_copy(deep=True)
    if batch_workers is not None:
        resolved.batch.workers = batch_workers
    if asr_workers is not None:
        resolved.service.asr_workers = asr_workers
    if threads is not None:
        resolved.asr.cpu_threads = threads
    log_event(
        logger, "layout", batch_workers=resolved.batch.workers, asr_workers=resolved.service.asr_workers,
        cpu_threads=resolved.asr.cpu_threads,
    )
    return resolved


def cpu_threads(asr: AsrSettings) -> int:
    """CTranslate2 threads for a worker whose parent did not resolve ``auto`` (a Celery worker):
    this machine's calibrated count, else 0 (CTranslate2's default)."""
    if asr.cpu_threads != "auto":
        return asr.cpu_threads
    calibration = cached_calibration(asr)
    return calibration.best.threads if calibration else 0
