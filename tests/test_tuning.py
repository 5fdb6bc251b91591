"""Auto-sized speech workers and threads: the layouts tried, the choice, the cache, and what stays explicit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from isoscribe.cli import main
from isoscribe.config import SettingsError, load_settings
from isoscribe.tuning import (
    Calibration,
    Layout,
    available_cores,
    cached_calibration,
    calibrate,
    candidate_layouts,
    memory_cap_workers,
    resolve_batch,
    resolve_one_worker,
    resolve_service,
)


def _settings(tmp_path: Path, **sections):
    overrides = {"asr": {"model": "tiny.en", "device": "cpu", "model_cache_dir": str(tmp_path / "models")}}
    for name, values in sections.items():
        overrides.setdefault(name, {}).update(values)
    return load_settings(overrides=overrides)


def _cache(settings, layouts: list[Layout]) -> None:
    """A calibration as ``calibrate`` stores it, with chosen figures (the real measurement is the slow test)."""
    cores = available_cores()
    key = f"{settings.asr.model}|{settings.asr.compute_type}|{settings.asr.device}|{cores}"
    calibration = Calibration(key, cores, layouts, "2026-01-01T00:00:00+00:00", (0.0, 0.0, 0.0))
    path = Path(settings.asr.model_cache_dir) / "calibration.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({key: calibration.to_dict()}))


def test_auto_is_the_default_and_numbers_or_auto_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert (settings.batch.workers, settings.service.asr_workers, settings.asr.cpu_threads) == ("auto",) * 3
    monkeypatch.setenv("ISOSCRIBE_BATCH__WORKERS", "3")
    monkeypatch.setenv("ISOSCRIBE_ASR__CPU_THREADS", "0")
    settings = load_settings()
    assert (settings.batch.workers, settings.asr.cpu_threads) == (3, 0)
    with pytest.raises(SettingsError, match="batch.workers"):
        load_settings(overrides={"batch": {"workers": 0}})
    with pytest.raises(SettingsError, match="asr.cpu_threads"):
        load_settings(overrides={"asr": {"cpu_threads": "many"}})


def test_every_even_split_of_the_cores_is_a_candidate() -> None:
    assert [(c.workers, c.threads) for c in candidate_layouts(2)] == [(1, 2), (2, 1)]
    assert [(c.workers, c.threads) for c in candidate_layouts(4)] == [(1, 4), (2, 2), (4, 1)]
    assert [(c.workers, c.threads) for c in candidate_layouts(1)] == [(1, 1)]


def test_the_fastest_layout_wins_and_a_near_tie_goes_to_fewer_workers() -> None:
    def best(*speeds: tuple[int, int, float]) -> tuple[int, int]:
        layout = Calibration("k", 4, [Layout(w, t, s) for w, t, s in speeds], "", (0, 0, 0)).best
        return layout.workers, layout.threads

    assert best((1, 4, 10.0), (2, 2, 14.0), (4, 1, 12.0)) == (2, 2)
    assert best((1, 4, 10.0), (2, 2, 13.6), (4, 1, 14.0)) == (2, 2), "within 5 %: less memory wins"


def test_explicit_numbers_are_kept_and_nothing_is_measured(tmp_path: Path) -> None:
    settings = _settings(tmp_path, batch={"workers": 3}, asr={"cpu_threads": 2})
    resolved = resolve_batch(settings, memory_cap=8)
    assert (resolved.batch.workers, resolved.asr.cpu_threads) == (3, 2)
    shared = resolve_batch(_settings(tmp_path, batch={"workers": 2}), memory_cap=8)
    assert shared.asr.cpu_threads == max(1, available_cores() // 2), "auto threads share the cores out"
    assert resolve_one_worker(_settings(tmp_path)).asr.cpu_threads == available_cores()
    assert not (tmp_path / "models" / "calibration.json").exists()


def test_auto_follows_the_cached_calibration_within_the_memory_budget(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    cores = available_cores()
    _cache(settings, [Layout(1, cores, 10.0, 300.0), Layout(cores, 1, 20.0, 300.0)])
    assert cached_calibration(settings.asr).best.workers == cores
    resolved = resolve_batch(settings, memory_cap=cores)
    assert (resolved.batch.workers, resolved.asr.cpu_threads) == (cores, 1)
    assert resolve_service(settings, memory_cap=cores).service.asr_workers == cores
    tight = resolve_batch(settings, memory_cap=1)
    assert (tight.batch.workers, tight.asr.cpu_threads) == (1, cores), "the budget holds one worker"
    assert memory_cap_workers(budget_mb=1000, speech_peak_mb=400) == 2
    assert memory_cap_workers(budget_mb=100, speech_peak_mb=400) == 1


@pytest.mark.slow
def test_tune_measures_each_layout_on_real_speech_and_caches_the_choice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    settings = _settings(tmp_path)
    calibration = calibrate(settings)
    assert [(c.workers, c.threads) for c in calibration.layouts] == [
        (c.workers, c.threads) for c in candidate_layouts(available_cores())
    ]
    assert all(layout.audio_s_per_s > 1 and layout.peak_rss_mb > 50 for layout in calibration.layouts)
    assert cached_calibration(settings.asr).best == calibration.best
    resolved = resolve_batch(settings, memory_cap=64)
    assert (resolved.batch.workers, resolved.asr.cpu_threads) == (calibration.best.workers, calibration.best.threads)

    monkeypatch.setenv("ISOSCRIBE_ASR__MODEL_CACHE_DIR", str(tmp_path / "models"))
    assert main(["tune", "--max-workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert f"chosen: 1 workers × {available_cores()} threads" in printed


class _PoolThatLoads:
    """Stands in for pool_from_settings in calibrate(): records each layout's size and limits; loads only up to
    ``loads_up_to`` workers (wait_ready is False above), and answers speech tasks at once."""

    created: list[tuple[int, float | None]] = []
    loads_up_to = 1

    def __init__(self, settings, stage, limits, size, prespawn) -> None:
        self.size = size
        self.created.append((size, limits.hard_rss_mb))

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def wait_ready(self, timeout_s) -> bool:
        return self.size <= self.loads_up_to

    def submit(self, request):
        from concurrent.futures import Future

        from isoscribe.isolation import TaskResult, TaskStats

        future: Future = Future()
        future.set_result(TaskResult(None, TaskStats(0.01, 300.0, None, 1, 1)))
        return future


def test_calibration_starts_only_the_workers_the_memory_budget_holds_each_capped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import isoscribe.executors
    import isoscribe.tuning

    monkeypatch.setattr(isoscribe.tuning, "available_cores", lambda: 8)
    monkeypatch.setattr(isoscribe.executors, "pool_from_settings", _PoolThatLoads)
    _PoolThatLoads.created = []
    _PoolThatLoads.loads_up_to = 1
    settings = _settings(tmp_path, batch={"memory_budget_mb": 2000, "asr_peak_mb": 900})
    calibration = calibrate(settings)
    assert [size for size, _ in _PoolThatLoads.created] == [1, 2], "8 cores, but the budget holds 2 speech workers"
    assert [cap for _, cap in _PoolThatLoads.created] == [2000, 1000], "each worker capped at its share of the budget"
    assert [layout.workers for layout in calibration.layouts] == [1], "a layout whose workers did not load is not chosen"


def test_calibration_fails_when_no_layout_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import isoscribe.executors
    from isoscribe.tuning import CalibrationFailed

    monkeypatch.setattr(isoscribe.executors, "pool_from_settings", _PoolThatLoads)
    _PoolThatLoads.created = []
    _PoolThatLoads.loads_up_to = 0
    with pytest.raises(CalibrationFailed):
        calibrate(_settings(tmp_path, batch={"memory_budget_mb": 2000, "asr_peak_mb": 900}))
    assert not (tmp_path / "models" / "calibration.json").exists()
