"""Batch command line and progress display, without models."""

from __future__ import annotations

import logging
from pathlib import Path

from isoscribe.batch.progress import BatchProgress as _Progress
from isoscribe.cli import main
from isoscribe.ledger import FileStatus


def test_run_with_an_input_that_does_not_exist_exits_2(tmp_path: Path, capsys) -> None:
    assert main(["run", str(tmp_path / "missing.wav"), "--out", str(tmp_path / "out")]) == 2
    assert "input not found" in capsys.readouterr().err


def test_progress_bar_shows_counts_and_current_stage(capsys) -> None:
    progress = _Progress(total=2, enabled=True)
    progress.stage("a", "speech")
    progress.file_done("a", FileStatus.DONE, None)
    progress.stage("b", "summary")
    progress.file_done("b", FileStatus.FAILED, "StageError in stage speech: AudioError: bad")
    progress.close()
    err = capsys.readouterr().err
    assert "2/2" in err and "done=1 failed=1" in err and "b:summary" in err


def test_without_a_terminal_progress_is_structured_log_lines(caplog) -> None:
    caplog.set_level(logging.INFO, logger="isoscribe")
    progress = _Progress(total=1, enabled=None)  # stderr is not a terminal under pytest
    progress.stage("a", "speech")
    progress.file_done("a", FileStatus.FAILED, "WorkerCrashed in stage speech: worker killed by signal 11")
    progress.close()
    assert "event=file_stage file=a stage=speech" in caplog.text
    assert 'event=file_finished file=a status=failed done=0 failed=1 cause="WorkerCrashed' in caplog.text
