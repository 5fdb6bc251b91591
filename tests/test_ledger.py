"""Ledger: durable rows keyed by content and result-changing settings, recovery, learned peaks."""

from __future__ import annotations

from pathlib import Path

from isoscribe.config import load_settings
from isoscribe.ledger import FileStatus, Ledger, StageRecord, content_hash, settings_fingerprint


def test_rows_survive_reopening_and_keep_stage_records(tmp_path: Path) -> None:
    with Ledger.in_dir(tmp_path) as ledger:
        row = ledger.enqueue(tmp_path / "a.wav", "h1", "fp", "a")
        assert row.status == FileStatus.QUEUED and row.attempts == 0
        assert ledger.mark_running(row.key) == 1
        ledger.record_stage(row.key, "speech", 1, StageRecord(2.5, 480.0, None))
        ledger.mark_done(row.key, ["a/a.json"], warning="summary failed")
    with Ledger.in_dir(tmp_path) as ledger:
        row = ledger.get("h1:fp")
        assert row.status == FileStatus.DONE
        assert row.outputs == ["a/a.json"]
        assert row.warning == "summary failed"
        assert row.stages["speech"] == StageRecord(2.5, 480.0, None)


def test_enqueue_of_a_known_file_returns_its_row(tmp_path: Path) -> None:
    with Ledger.in_dir(tmp_path) as ledger:
        first = ledger.enqueue(tmp_path / "a.wav", "h1", "fp", "a")
        ledger.mark_running(first.key)
        ledger.mark_failed(first.key, "StageError: bad audio")
        again = ledger.enqueue(tmp_path / "moved" / "a.wav", "h1", "fp", "a")
        assert again.status == FileStatus.FAILED and again.attempts == 1
        assert again.input_path.endswith("moved/a.wav")
        assert len(ledger.rows()) == 1
        other_settings = ledger.enqueue(tmp_path / "a.wav", "h1", "fp2", "a")
        assert other_settings.status == FileStatus.QUEUED
        assert len(ledger.rows()) == 2


def test_running_rows_of_a_killed_run_are_requeued_or_failed_when_out_of_attempts(tmp_path: Path) -> None:
    with Ledger.in_dir(tmp_path) as ledger:
        fresh = ledger.enqueue(tmp_path / "a.wav", "h1", "fp", "a")
        ledger.mark_running(fresh.key)
        doomed = ledger.enqueue(tmp_path / "b.wav", "h2", "fp", "b")
        for _ in range(3):
            ledger.mark_running(doomed.key)
        recovered = ledger.recover_interrupted(max_attempts=3)
        assert {row.key for row in recovered} == {fresh.key, doomed.key}
        assert ledger.get(fresh.key).status == FileStatus.QUEUED
        assert ledger.get(doomed.key).status == FileStatus.FAILED
        assert "runner stopped during each of 3 attempts" in ledger.get(doomed.key).error


def test_a_killed_runs_file_with_its_speech_kept_is_queued_whatever_its_attempts(tmp_path: Path) -> None:
    """Phased mode: a file waiting for its summary half stays ``running``; a kill then is none of its doing."""
    with Ledger.in_dir(tmp_path) as ledger:
        waiting = ledger.enqueue(tmp_path / "a.wav", "h1", "fp", "a")
        for _ in range(3):
            ledger.mark_running(waiting.key)
        ledger.recover_interrupted(max_attempts=3, resumable=lambda key: key == waiting.key)
        assert ledger.get(waiting.key).status == FileStatus.QUEUED


def test_requeue_gives_a_failed_file_fresh_attempts(tmp_path: Path) -> None:
    with Ledger.in_dir(tmp_path) as ledger:
        row = ledger.enqueue(tmp_path / "a.wav", "h1", "fp", "a")
        ledger.mark_running(row.key)
        ledger.mark_failed(row.key, "WorkerCrashed")
        ledger.requeue(row.key)
        row = ledger.get(row.key)
        assert row.status == FileStatus.QUEUED and row.attempts == 0


def test_learned_peak_prefers_the_same_settings_and_ignores_failed_attempts(tmp_path: Path) -> None:
    with Ledger.in_dir(tmp_path) as ledger:
        assert ledger.learned_peak_mb("speech") is None
        a = ledger.enqueue(tmp_path / "a.wav", "h1", "small", "a")
        b = ledger.enqueue(tmp_path / "b.wav", "h2", "large", "b")
        ledger.record_stage(a.key, "speech", 1, StageRecord(1.0, 400.0))
        ledger.record_stage(a.key, "speech", 2, StageRecord(1.0, 9000.0), ok=False)
        ledger.record_stage(b.key, "speech", 1, StageRecord(1.0, 1200.0))
        assert ledger.learned_peak_mb("speech", "small") == 400.0
        assert ledger.learned_peak_mb("speech", "unknown") == 1200.0
        assert ledger.learned_peak_mb("summary") is None


def test_fingerprint_changes_with_results_not_with_runtime_knobs() -> None:
    base = settings_fingerprint(load_settings())
    assert settings_fingerprint(load_settings(overrides={"batch": {"workers": 2, "isolation": "per-file"}})) == base
    assert settings_fingerprint(load_settings(overrides={"asr": {"model": "base"}})) != base
    assert settings_fingerprint(load_settings(overrides={"diarization": {"enabled": True}})) != base
    assert settings_fingerprint(load_settings(overrides={"llm": {"max_tokens": 64}})) != base
    for check in ("language_per_segment", "loop_detection", "recover_skipped_speech"):
        assert settings_fingerprint(load_settings(overrides={"asr": {check: False}})) != base, check
    assert settings_fingerprint(load_settings(overrides={"asr": {"recover_skipped_speech": True}})) == base
    no_summary = load_settings(overrides={"batch": {"summarize": False}})
    assert settings_fingerprint(no_summary) != base
    assert settings_fingerprint(no_summary.model_copy(update={"llm": no_summary.llm.model_copy(update={"max_tokens": 64})})) == settings_fingerprint(no_summary)
    narrow = {"subtitles": {"max_line_width": 12}}
    assert settings_fingerprint(load_settings(overrides=narrow)) != base, "srt and vtt are laid out differently"
    assert settings_fingerprint(load_settings(overrides={**narrow, "batch": {"formats": ["json"]}})) == \
        settings_fingerprint(load_settings(overrides={"batch": {"formats": ["json"]}}))


def test_a_recording_done_under_other_settings_is_redone_once_its_outputs_are_overwritten(tmp_path: Path) -> None:
    with Ledger.in_dir(tmp_path) as ledger:
        plain = ledger.enqueue(tmp_path / "a.wav", "h1", "plain", "a")
        ledger.mark_done(plain.key, ["a/a.txt"])
        diarized = ledger.enqueue(tmp_path / "a.wav", "h1", "diarized", "a")
        ledger.mark_done(diarized.key, ["a/a.txt"])
        assert ledger.get(plain.key).status == FileStatus.QUEUED and ledger.get(plain.key).outputs == []
        assert ledger.done_under("a", other_than="h2") and not ledger.done_under("a", other_than="h1")


def test_content_hash_follows_bytes_not_names(tmp_path: Path) -> None:
    (tmp_path / "a.wav").write_bytes(b"same")
    (tmp_path / "b.wav").write_bytes(b"same")
    (tmp_path / "c.wav").write_bytes(b"other")
    assert content_hash(tmp_path / "a.wav") == content_hash(tmp_path / "b.wav") != content_hash(tmp_path / "c.wav")


def test_learned_gpu_peak_is_kept_apart_from_rss(tmp_path: Path) -> None:
    with Ledger.in_dir(tmp_path) as ledger:
        row = ledger.enqueue(tmp_path / "a.wav", "h1", "fp", "a")
        ledger.record_stage(row.key, "speech", 1, StageRecord(1.0, 400.0, 1500.0))
        assert ledger.learned_peak_mb("speech", "fp", gpu=True) == 1500.0
        assert ledger.learned_peak_mb("speech", "fp") == 400.0


def test_fingerprint_changes_with_the_task_and_the_known_speakers_samples(tmp_path: Path) -> None:
    base = settings_fingerprint(load_settings())
    assert settings_fingerprint(load_settings(overrides={"asr": {"task": "translate"}})) != base
    assert settings_fingerprint(load_settings(overrides={"asr": {"task": "transcribe"}})) == base
    (tmp_path / "Alice.wav").write_bytes(b"first sample")
    (tmp_path / "notes.txt").write_text("not a sample")
    with_speakers = load_settings(overrides={"diarization": {"speakers_dir": tmp_path}})
    named = settings_fingerprint(with_speakers)
    assert named not in (base, settings_fingerprint(load_settings(overrides={"diarization": {"enabled": True}})))
    (tmp_path / "notes.txt").write_text("still not a sample")
    assert settings_fingerprint(with_speakers) == named
    (tmp_path / "Alice.wav").write_bytes(b"another sample")
    assert settings_fingerprint(with_speakers) != named
