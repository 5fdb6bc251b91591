"""``isoscribe transcribe`` end to end: a real subprocess running the speech stage through run_isolated."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import srt
from asr_helpers import run_cli, wer

from isoscribe.transcript import Transcript

pytestmark = pytest.mark.slow

def test_transcribe_json_to_stdout_is_the_documented_schema(
    shared_data: Path, manifest: list[dict], tmp_path: Path
) -> None:
    result = run_cli(
        "transcribe", str(shared_data / "jfk" / "jfk.flac"), "--format", "json", cwd=tmp_path, timeout_s=300
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["schema_version"] == 1 and data["model"] == "tiny.en" and data["language"] == "en"
    transcript = Transcript.from_dict(data)
    reference = next(c["reference_text"] for c in manifest if c["path"] == "jfk/jfk.flac")
    assert wer(reference, transcript.text) <= 0.10
    assert all(segment.words for segment in transcript.segments)
    assert transcript.speakers == [] and "event=transcribe_done" in result.stderr


def test_transcribe_diarized_srt_to_out_file(demo_dialogue: Path, tmp_path: Path) -> None:
    out = tmp_path / "dialogue.srt"
    result = run_cli(
        "transcribe", str(demo_dialogue), "--diarize", "--format", "srt", "--out", str(out), cwd=tmp_path, timeout_s=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    cues = list(srt.parse(out.read_text()))
    labels = {cue.content.split("]")[0] + "]" for cue in cues}
    assert labels == {"[SPEAKER_00]", "[SPEAKER_01]"}


def test_out_naming_a_folder_writes_stem_dot_format_into_it(shared_data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "subtitles"
    folder.mkdir()
    result = run_cli(
        "transcribe", str(shared_data / "jfk" / "jfk.flac"), "--format", "srt", "--out", str(folder), cwd=tmp_path,
        timeout_s=300,
    )
    assert result.returncode == 0, result.stderr
    assert [path.name for path in folder.iterdir()] == ["jfk.srt"]
    assert list(srt.parse((folder / "jfk.srt").read_text()))


def test_out_ending_with_a_slash_is_a_new_folder_and_one_under_a_file_is_refused(shared_data: Path, tmp_path: Path) -> None:
    jfk = str(shared_data / "jfk" / "jfk.wav")
    new = run_cli("transcribe", jfk, "--out", f"{tmp_path / 'new'}/", cwd=tmp_path, timeout_s=300)
    assert new.returncode == 0 and (tmp_path / "new" / "jfk.txt").is_file(), new.stderr
    (tmp_path / "afile").write_text("")
    refused = run_cli("transcribe", jfk, "--out", str(tmp_path / "afile" / "x.txt"), cwd=tmp_path, timeout_s=300)
    assert refused.returncode == 2 and "is a file, not a folder" in refused.stderr, refused.stderr
    long_stem = tmp_path / f"{'a' * 240}.wav"
    long_stem.symlink_to(jfk)
    named = run_cli("transcribe", str(long_stem), "--out", f"{tmp_path / 'new'}/", cwd=tmp_path, timeout_s=300)
    assert named.returncode == 0 and (tmp_path / "new" / f"{'a' * 240}.txt").is_file(), named.stderr


def test_bad_audio_and_unknown_model_fail_with_a_clear_message(tmp_path: Path, shared_data: Path) -> None:
    text_file = tmp_path / "notes.wav"
    text_file.write_text("not audio at all\n")
    result = run_cli("transcribe", str(text_file), cwd=tmp_path, timeout_s=300)
    assert result.returncode == 2 and str(text_file) in result.stderr

    result = run_cli(
        "transcribe", str(shared_data / "jfk" / "jfk.wav"), "--model", "huge-v7", cwd=tmp_path, timeout_s=300
    )
    assert result.returncode == 2
    assert "huge-v7" in result.stderr and "tiny.en" in result.stderr and "base" in result.stderr


def test_transcribe_shows_a_progress_bar_on_a_terminal_and_writes_the_transcript_after_it(
    shared_data: Path, tmp_path: Path
) -> None:
    import fcntl
    import os
    import struct
    import subprocess
    import termios

    from asr_helpers import ISOSCRIBE

    leader, terminal = os.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISOSCRIBE_")}
    command = [str(ISOSCRIBE), "--log-level", "warning", "transcribe", str(shared_data / "jfk" / "jfk.wav")]
    shown: list[bytes] = []
    reader = threading.Thread(target=_read_until_closed, args=(leader, shown))  # a full terminal would block it
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=terminal, cwd=tmp_path, env=env) as process:
        os.close(terminal)
        reader.start()
        out, _ = process.communicate(timeout=300)
    reader.join(timeout=30)
    os.close(leader)
    assert process.returncode == 0 and "ask not what your country" in out.decode().lower()
    assert b"11/11 s audio" in b"".join(shown) and b"jfk.wav:speech" in b"".join(shown), shown


def _read_until_closed(fd: int, into: list[bytes]) -> None:
    import os

    try:
        while chunk := os.read(fd, 65536):
            into.append(chunk)
    except OSError:  # EIO: the terminal's other side closed
        pass
