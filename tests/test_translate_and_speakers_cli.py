"""``--task translate`` and ``--speakers DIR`` on the command line: ``isoscribe transcribe`` and
``isoscribe run`` as real subprocesses with real models on rendered recordings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from asr_helpers import run_cli
from speaker_fixtures import MEETING, reads_as_english, render_german, render_meeting, render_references, spoken_by

from isoscribe.benchmarks.meetings import script_turns
from isoscribe.models import resolve_model

pytestmark = pytest.mark.slow

def test_translate_with_an_english_only_model_exits_2_naming_a_multilingual_one(
    shared_data: Path, tmp_path: Path
) -> None:
    result = run_cli("transcribe", str(shared_data / "jfk" / "jfk.wav"), "--task", "translate", cwd=tmp_path)
    assert result.returncode == 2
    assert "tiny.en" in result.stderr and "English-only" in result.stderr and "base" in result.stderr
    config = tmp_path / "translate.toml"
    config.write_text('[asr]\ntask = "translate"\n')
    from_file = run_cli("--config", str(config), "transcribe", str(shared_data / "jfk" / "jfk.wav"), cwd=tmp_path)
    assert from_file.returncode == 2 and "English-only" in from_file.stderr, from_file.stderr
    tiny_en_folder = str(resolve_model("tiny.en", None))
    by_path = run_cli(
        "transcribe", str(shared_data / "jfk" / "jfk.wav"), "--model", tiny_en_folder, "--task", "translate", cwd=tmp_path
    )
    assert by_path.returncode == 2 and "English-only" in by_path.stderr, by_path.stderr


def test_a_language_the_model_has_no_token_for_exits_2(shared_data: Path, tmp_path: Path) -> None:
    jfk = str(shared_data / "jfk" / "jfk.wav")
    cantonese = run_cli("transcribe", jfk, "--model", "base", "--language", "yue", cwd=tmp_path)
    assert cantonese.returncode == 2 and "no token for language 'yue'" in cantonese.stderr, cantonese.stderr
    german = run_cli("run", jfk, "--out", str(tmp_path / "out"), "--language", "de", cwd=tmp_path)
    assert german.returncode == 2 and "English-only" in german.stderr, german.stderr
    assert not (tmp_path / "out").exists()


def test_transcribe_and_run_translate_german_to_english(tmp_path: Path) -> None:
    german = render_german(tmp_path / "german.wav")
    result = run_cli("transcribe", str(german), "--task", "translate", "--model", "base", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert reads_as_english(result.stdout), result.stdout

    out = tmp_path / "out"
    batch = run_cli(
        "run", str(german), "--out", str(out), "--task", "translate", "--model", "base",
        "--no-summarize", "--formats", "txt", "--no-progress", cwd=tmp_path,
    )
    assert batch.returncode == 0, batch.stderr
    translated = (out / "german" / "german.txt").read_text()
    assert reads_as_english(translated), translated


def test_run_with_speakers_dir_names_the_same_people_in_every_file(tmp_path: Path) -> None:
    """Two meetings of the same three voices in another order; samples of two of them (and of Dave,
    who is in neither) in a folder: every turn of theirs carries their name in both files."""
    first = render_meeting(tmp_path / "in" / "first.wav")
    second = render_meeting(tmp_path / "in" / "second.wav", tuple(reversed(MEETING)))
    render_references(tmp_path / "speakers")  # Alice.wav, Bob.wav, Dave.wav (and their scripts, not audio)
    out = tmp_path / "out"
    result = run_cli(
        "run", str(first), str(second), "--out", str(out), "--speakers", str(tmp_path / "speakers"),
        "--no-summarize", "--formats", "json", "--no-progress", cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    for audio in (first, second):
        transcript = json.loads((out / audio.stem / f"{audio.stem}.json").read_text())
        turns = script_turns(audio)
        named = [(s["speaker"], spoken_by(s["start"], s["end"], turns)) for s in transcript["segments"]]
        assert all(speaker == said_by.capitalize() for speaker, said_by in named if said_by != "carol"), named
        assert {speaker for speaker, said_by in named if said_by == "carol"} == {"SPEAKER_00"}, named


def test_a_voice_sample_of_the_wrong_length_or_not_audio_exits_2_before_any_file_runs(
    shared_data: Path, tmp_path: Path
) -> None:
    """Measured at start in the probe stage: before, each file of the batch was transcribed and then failed."""
    import soundfile

    jfk = shared_data / "jfk" / "jfk.wav"
    audio, rate = soundfile.read(jfk)
    samples = {
        "Kennedy.wav": (audio, "must be 2-10 s of audio: ", "runs over the limit of 10 s"),  # 11 s
        "Brief.wav": (audio[:rate], "lasts 1.00 s, not 2-10 s", ""),
        "Garbled.wav": (None, "must be 2-10 s of audio: ", "Garbled.wav"),
    }
    for name, (sample, said, also_said) in samples.items():
        folder = tmp_path / name.removesuffix(".wav")
        folder.mkdir()
        if sample is None:
            (folder / name).write_text("not audio")
        else:
            soundfile.write(folder / name, sample, rate)
        out = tmp_path / f"out-{name}"
        refused = run_cli("run", str(jfk), "--out", str(out), "--speakers", str(folder), "--no-progress", cwd=tmp_path)
        assert refused.returncode == 2, refused.stderr
        assert f"the voice sample of {name.removesuffix('.wav')!r}" in refused.stderr and said in refused.stderr
        assert also_said in refused.stderr and not out.exists() and "stage=speech" not in refused.stderr
