"""The batch workflow on real clips with real models and real worker processes.

Short clips, ``tiny.en`` and a few summary tokens keep it to a few minutes on two cores.
"""

from __future__ import annotations

import email
import json
import logging
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from isoscribe import formats
from isoscribe.batch import run_batch
from isoscribe.config import load_settings
from isoscribe.ledger import FileStatus, Ledger
from isoscribe.transcript import Transcript

pytestmark = pytest.mark.slow

CLIPS = ["librispeech/1089-134686-0001.wav", "librivox/sense_and_sensibility_01_austen_64kb-0880.wav"]
STAGES_DIR = Path(__file__).parent / "stages"


def _settings(**sections):
    overrides = {
        "asr": {"model": "tiny.en"},
        "diarization": {"enabled": True},
        "llm": {"max_tokens": 32, "threads": 1},
        "batch": {"workers": 1, "retry_backoff_s": 0.1},
    }
    for name, values in sections.items():
        overrides.setdefault(name, {}).update(values)
    return load_settings(overrides=overrides)


def _output_names(stem: str, summarized: bool) -> list[str]:
    """The files the batch's default formats (every batch format in the registry) write for ``stem``."""
    return sorted(f"{stem}.{fmt.extension}" for fmt in formats.allowed("batch").values()
                  if summarized or not fmt.needs_summary)


def _leftovers(out_dir: Path) -> list[Path]:
    return [p for p in out_dir.rglob("*") if p.name.startswith(".partial-") or p.name.endswith(".tmp")]


def test_real_clips_complete_with_every_output_within_one_stage_of_memory(
    shared_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The budget holds either stage but not both: the warm speech worker must be retired before the
    # LLM worker loads, and the other way round, so the tree never holds both models.
    settings = _settings(batch={"isolation": "pooled", "memory_budget_mb": 1000, "asr_peak_mb": 900, "llm_peak_mb": 600})
    clips = [shared_data / clip for clip in CLIPS]
    out_dir = tmp_path / "out"

    caplog.set_level(logging.INFO, logger="isoscribe")
    report = run_batch(settings, clips, out_dir, progress=False)

    assert report.counts == {"total": 2, "done": 2, "failed": 0, "skipped": 0}, report.failures
    assert "event=batch_phased" in caplog.text  # all speech, then all summaries: one load per pool
    assert caplog.text.count("event=budget_retire_warm stage=speech") == 1
    for clip, item in zip(clips, report.files):
        assert sorted(Path(output).name for output in item.outputs) == _output_names(clip.stem, summarized=True)
        for output in item.outputs:
            assert (out_dir / output).stat().st_size > 0, output
        transcript = Transcript.from_dict(json.loads((out_dir / clip.stem / f"{clip.stem}.json").read_text()))
        assert transcript.segments and transcript.speakers
        assert item.warning is None
        assert {"speech", "post", "summary", "write"} <= set(item.stages)
    assert "belly" in (out_dir / clips[0].stem / f"{clips[0].stem}.txt").read_text().lower()
    assert {path.name for path in out_dir.iterdir()} >= {"report.json", "report.md", "memory.png", "ledger.sqlite"}
    assert json.loads((out_dir / "report.json").read_text())["counts"]["done"] == 2
    assert (out_dir / "memory.png").read_bytes().startswith(b"\x89PNG")
    assert _leftovers(out_dir) == []

    stage_peak_mb = max(record["peak_rss_mb"] for item in report.files for stage, record in item.stages.items()
                        if stage in ("speech", "summary"))
    assert report.peak_tree_mb <= 1.15 * stage_peak_mb + report.peak_parent_mb, (report.peak_tree_mb, stage_peak_mb)

    with Ledger.in_dir(out_dir) as ledger:
        assert [row.status for row in ledger.rows()] == [FileStatus.DONE, FileStatus.DONE]
        assert ledger.learned_peak_mb("speech") > 100

    log_file = tmp_path / "logs" / "batch.log"
    again = run_batch(settings, clips, out_dir, progress=False, log_file=log_file)
    assert again.counts == {"total": 2, "done": 0, "failed": 0, "skipped": 2}
    assert "event=batch_done total=2 done=0 failed=0 skipped=2" in log_file.read_text()


def test_corrupt_file_asr_crash_and_llm_crash_follow_the_failure_rules(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, smtp_inbox
) -> None:
    monkeypatch.syspath_prepend(str(STAGES_DIR))  # the workers get the parent's sys.path
    good = shared_data / CLIPS[0]
    corrupt = tmp_path / "in" / "corrupt.wav"
    corrupt.parent.mkdir()
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio" * 50)
    crashing = tmp_path / "in" / "crash-asr.wav"
    shutil.copy(shared_data / CLIPS[1], crashing)
    settings = _settings(
        isolation={"speech_stage": "batch_crash_speech", "summary_stage": "batch_crash_summary"},
        batch={"isolation": "per-file", "max_attempts": 2},
        notify={"smtp_host": "127.0.0.1", "smtp_port": smtp_inbox.port, "smtp_security": "none",
                "recipients": ["ops@example.org"]},
    )
    out_dir = tmp_path / "out"

    report = run_batch(settings, [good, corrupt, crashing], out_dir, progress=False)

    by_name = {Path(item.input_path).name: item for item in report.files}
    done = by_name[good.name]
    assert done.status == "done"
    assert "summary stage failed" in done.warning and "WorkerCrashed" in done.warning
    assert (out_dir / good.stem / f"{good.stem}.summary.md").is_file()
    assert json.loads((out_dir / good.stem / f"{good.stem}.json").read_text())["segments"]

    bad = by_name["corrupt.wav"]
    assert bad.status == "failed" and bad.attempts == 1
    assert "StageError" in bad.error and "AudioError" in bad.error and "corrupt.wav" in bad.error

    crashed = by_name["crash-asr.wav"]
    assert crashed.status == "failed" and crashed.attempts == 2
    assert "WorkerCrashed" in crashed.error and "signal 11" in crashed.error
    assert "gave up after 2 attempts" in crashed.error
    assert not (out_dir / "corrupt").exists() and not (out_dir / "crash-asr").exists()

    [message] = smtp_inbox.messages
    assert message["Subject"] == "isoscribe batch finished: 1 done, 2 failed, 0 skipped"
    attachments = {part.get_filename() for part in message.walk() if part.get_filename()}
    assert {"report.json", "report.md"} <= attachments

    rerun = run_batch(settings, [good, corrupt, crashing], out_dir, progress=False, notify=False)
    assert rerun.counts == {"total": 3, "done": 0, "failed": 2, "skipped": 1}
    assert {item.attempts for item in rerun.failures} == {1, 2}  # failed files are not retried by default

    retried = run_batch(settings, [corrupt], out_dir, retry_failed=True, progress=False, notify=False)
    [item] = retried.files
    assert item.status == "failed" and item.attempts == 1 and "AudioError" in item.error


def test_kill_9_mid_batch_then_rerun_finishes_every_file_exactly_once(shared_data: Path, tmp_path: Path) -> None:
    clips = [shared_data / clip for clip in CLIPS + ["librispeech/61-70968-0000.flac"]]
    out_dir = tmp_path / "out"
    command = [
        sys.executable, "-m", "isoscribe.cli", "run", *map(str, clips), "--out", str(out_dir),
        "--model", "tiny.en", "--no-diarize", "--no-summarize", "--isolation", "per-file", "--no-progress",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISOSCRIBE_")}
    runner = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        done_at_kill = _wait_for_done_rows(out_dir / "ledger.sqlite", runner, at_least=1, timeout_s=300)
        runner.send_signal(signal.SIGKILL)
        runner.wait(30)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert done_at_kill < len(clips), "the batch finished before it could be killed"

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]

    report = json.loads((out_dir / "report.json").read_text())
    assert report["counts"]["skipped"] >= done_at_kill
    assert report["counts"]["done"] + report["counts"]["skipped"] == len(clips)
    assert report["recovered"] <= report["workers"], "at most one running file per worker was left behind"
    with Ledger.in_dir(out_dir) as ledger:
        rows = ledger.rows()
        assert [row.status for row in rows] == [FileStatus.DONE] * len(clips)
    with sqlite3.connect(out_dir / "ledger.sqlite") as db:
        finished = dict(db.execute("SELECT key, COUNT(*) FROM stage_runs WHERE stage = 'write' GROUP BY key"))
    assert sorted(finished.values()) == [1] * len(clips)  # each file's outputs were put in place once
    for clip in clips:
        outputs = sorted(path.name for path in (out_dir / clip.stem).iterdir())
        assert outputs == _output_names(clip.stem, summarized=False)
    assert _leftovers(out_dir) == []


def _wait_for_done_rows(ledger_path: Path, runner: subprocess.Popen, at_least: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if runner.poll() is not None:
            pytest.fail(f"runner exited early ({runner.returncode}): {runner.stderr.read().decode()[-3000:]}")
        if ledger_path.exists():
            try:
                with sqlite3.connect(f"file:{ledger_path}?mode=ro", uri=True, timeout=1) as db:
                    done = db.execute("SELECT COUNT(*) FROM files WHERE status = 'done'").fetchone()[0]
            except sqlite3.OperationalError:  # schema not created yet
                done = 0
            if done >= at_least:
                return done
        time.sleep(0.05)
    pytest.fail("no file finished in time")


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def smtp_inbox():
    from aiosmtpd.controller import Controller

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    inbox.port = port
    yield inbox
    controller.stop()


def test_an_unreadable_input_fails_that_file_and_the_batch_goes_on(shared_data: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(shared_data / CLIPS[1], inputs / "good.wav")
    (inputs / "unreadable.wav").symlink_to("/proc/self/mem")  # a regular file whose first read fails (EIO)
    settings = _settings(diarization={"enabled": False}, batch={"summarize": False, "formats": ["json"]})

    report = run_batch(settings, [inputs], tmp_path / "out", progress=False, notify=False)

    statuses = sorted((item.status, item.error or "") for item in report.files)
    assert [status for status, _ in statuses] == ["done", "failed"]
    assert "cannot read input" in statuses[1][1] and "Input/output error" in statuses[1][1]
    assert not report.ok
