"""Batch planning: output names that never collide, within a run or across runs into one folder."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from isoscribe.batch import run_batch
from isoscribe.cli import main
from isoscribe.batch.plan import Planner, output_names
from isoscribe.config import load_settings
from isoscribe.inputs import InputError
from isoscribe.ledger import Ledger


def _recording(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_names_are_distinct_for_one_stem_in_one_folder_and_never_leave_the_output_folder(tmp_path: Path) -> None:
    wav, flac = tmp_path / "talk.wav", tmp_path / "talk.flac"
    names = output_names([wav, flac, tmp_path / "...wav", tmp_path / ".hidden.wav"])
    assert names[wav] != names[flac] and names[wav].startswith("talk-")
    assert names[tmp_path / "...wav"] == "audio" and names[tmp_path / ".hidden.wav"] == "hidden"


def test_a_name_of_the_batchs_own_files_or_too_long_for_one_gets_a_hash(tmp_path: Path) -> None:
    inputs = [tmp_path / "report.json.wav", tmp_path / "ledger.sqlite-wal.flac", tmp_path / f"{'x' * 240}.wav"]
    names = output_names(inputs)
    assert names[inputs[0]].startswith("report.json-") and names[inputs[1]].startswith("ledger.sqlite-wal-")
    assert len(names[inputs[2]].encode()) <= 170 and names[inputs[2]].startswith("x" * 100)


def test_another_recording_with_a_finished_ones_name_gets_its_own(tmp_path: Path) -> None:
    first = _recording(tmp_path / "a" / "talk.wav", b"first meeting")
    second = _recording(tmp_path / "b" / "talk.wav", b"second meeting")
    with Ledger.in_dir(tmp_path / "out") as ledger:
        planner = Planner(ledger, "fp", tmp_path / "out", retry_failed=False)
        _, [job] = planner.plan([first])
        assert job.row.output_name == "talk"
        ledger.mark_done(job.row.key, ["talk/talk.txt"])
        _, [other] = planner.plan([second])
        assert other.row.output_name.startswith("talk-"), "the first recording's outputs are kept"
        _, [again] = Planner(ledger, "fp2", tmp_path / "out", retry_failed=False).plan([first])
        assert again.row.output_name == "talk", "the same recording under new settings replaces its own outputs"


def test_a_done_recording_found_again_beside_a_copy_reports_each_input_with_the_outputs_name(tmp_path: Path) -> None:
    zoom = _recording(tmp_path / "in" / "zoom.wav", b"meeting")
    copy = _recording(tmp_path / "in" / "copy-of-zoom.wav", b"meeting")  # sorts first
    with Ledger.in_dir(tmp_path / "out") as ledger:
        planner = Planner(ledger, "fp", tmp_path / "out", retry_failed=False)
        _, [job] = planner.plan([zoom])
        (tmp_path / "out" / "zoom").mkdir(parents=True)
        (tmp_path / "out" / "zoom" / "zoom.txt").write_text("words")
        ledger.mark_done(job.row.key, ["zoom/zoom.txt"])
        reports, jobs = planner.plan([copy, zoom])
    assert jobs == []
    assert [(r.input_path, r.output_name) for r in reports.values()] == [(str(copy), "zoom"), (str(zoom), "zoom")]
    assert reports[str(zoom)].warning.endswith("outputs are under zoom")


def test_an_output_folder_that_is_a_file_is_a_plain_input_error(tmp_path: Path) -> None:
    audio = _recording(tmp_path / "talk.wav", b"audio")
    (tmp_path / "out").write_text("not a folder")
    with pytest.raises(InputError, match="cannot use .*out as the output folder"):
        run_batch(load_settings(), [audio], tmp_path / "out", progress=False, notify=False)


@contextlib.contextmanager
def _read_only(folder: Path) -> Iterator[None]:
    """``folder`` unwritable: its mode for a user, a read-only bind mount for root (whom modes do not stop)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True).returncode == 0
    if not mounted or subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], capture_output=True).returncode:
        if mounted:
            subprocess.run(["umount", str(folder)], check=True)
        pytest.skip("cannot make a read-only bind mount here")
    try:
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_an_output_folder_that_cannot_be_written_is_a_plain_input_error(tmp_path: Path) -> None:
    """An existing folder on a read-only mount was an OSError traceback from the run's lock file, exit 1."""
    audio = _recording(tmp_path / "talk.wav", b"audio")
    out = tmp_path / "out"
    out.mkdir()
    with _read_only(out), pytest.raises(InputError, match="cannot use .*out as the output folder: (read-only|not writ)"):
        run_batch(load_settings(), [audio], out, progress=False, notify=False)


def test_a_model_that_is_not_installed_stops_the_run_at_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """It was six seconds of calibration workers failing to load it, then a CalibrationFailed traceback, exit 1."""
    audio = _recording(tmp_path / "talk.wav", b"audio")
    assert main(["run", str(audio), "--out", str(tmp_path / "out"), "--model", "nosuch", "--no-progress"]) == 2
    assert "model 'nosuch' is not available locally" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
