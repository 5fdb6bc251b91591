"""The decoding options with the real model (tiny.en), through each entry point: ``prompt`` spells a rare
name that tiny.en misspells without it, and every option reaches ``WhisperModel.transcribe`` as asked.

The speech stage here is the real one with faster-whisper watched (tests/stages/decoding_spy_speech.py):
each call's keyword arguments and its number of samples land in a JSON-lines file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from asr_helpers import ISOSCRIBE
from service_support import STAGES_DIR, ServerProcess, base_config, wait_for_job, words

from isoscribe.audio import SAMPLE_RATE, decode_audio
from isoscribe.benchmarks.server import write_config
from isoscribe.decoding import DECODING_OPTIONS
from isoscribe.demo import render_script

pytestmark = pytest.mark.slow

SPY_STAGE = "decoding_spy_speech"

RARE_NAME = "Przybylski"
"""A surname tiny.en does not know: said by espeak-ng, without a prompt it became "knock to the RSI bills came"."""
SENTENCE = f"Please send the budget to Doctor {RARE_NAME} before Friday."
PROMPT = f"Attendees: Doctor {RARE_NAME}."
PAUSE_S = 3.0
"""Silence around the sentence, longer than the 2 s the VAD filter keeps at a recording's ends, so that decoding
only the speech (vad_filter) hands the model less audio."""

ALL_OPTIONS = {
    "hotwords": "budget Friday",
    "beam_size": "2",
    "temperature": "0.3",
    "vad_filter": "false",
    "condition_on_previous_text": "false",
    "word_timestamps": "false",
    "no_speech_threshold": "0.35",
}
"""Every option but the prompt, each away from its default; what faster-whisper must be handed for each:"""
ENGINE_EXPECTED = {
    "hotwords": "budget Friday",
    "beam_size": 2,
    "temperature": [0.3],
    "condition_on_previous_text": False,
    "word_timestamps": False,
    "no_speech_threshold": 0.35,
}


@pytest.fixture(scope="module")
def rare_name_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rare-name") / "rare_name.wav"
    return render_script(path, [("A", SENTENCE)], {"A": ("en-us", 50, 150)}, pause_s=PAUSE_S)


def _spy_env(spy_file: Path) -> dict[str, str]:
    pythonpath = os.pathsep.join([str(STAGES_DIR), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISOSCRIBE_")}
    return {**env, "PYTHONPATH": pythonpath, "DECODING_SPY_FILE": str(spy_file)}


def _calls(spy_file: Path, since: int = 0) -> list[dict]:
    """faster-whisper's calls recorded after the first ``since``. The first of a file is its main decode;
    later ones may decode a stretch again on its own (loops, skipped speech), without the prompt on purpose."""
    lines = spy_file.read_text().splitlines() if spy_file.exists() else []
    return [json.loads(line) for line in lines[since:]]


def _assert_handed(call: dict, expected: dict) -> None:
    handed = {name: call[name] for name in expected}
    assert handed == expected


def _cli(*args: str, cwd: Path, spy_file: Path):
    import subprocess

    return subprocess.run(
        [str(ISOSCRIBE), *args], capture_output=True, text=True, timeout=600, cwd=cwd, env=_spy_env(spy_file)
    )


def test_cli_transcribe_hands_every_flag_to_faster_whisper(rare_name_clip: Path, tmp_path: Path) -> None:
    spy_file = tmp_path / "calls.jsonl"
    config = write_config(tmp_path / "isoscribe.toml", {"isolation": {"speech_stage": SPY_STAGE}, "asr": {"device": "cpu"}})
    flags = [
        "--prompt", PROMPT, "--hotwords", "budget Friday", "--beam-size", "2", "--temperature", "0.3",
        "--no-vad-filter", "--no-condition-on-previous-text", "--no-word-timestamps", "--no-speech-threshold", "0.35",
    ]
    result = _cli("--config", str(config), "transcribe", str(rare_name_clip), "--format", "json", *flags,
                  cwd=tmp_path, spy_file=spy_file)
    assert result.returncode == 0, result.stderr
    first = _calls(spy_file)[0]
    _assert_handed(first, {**ENGINE_EXPECTED, "initial_prompt": PROMPT})
    assert first["samples"] == decode_audio(rare_name_clip).size  # no VAD filter: the whole clip
    transcript = json.loads(result.stdout)
    assert transcript["segments"] and not any(segment["words"] for segment in transcript["segments"])


def test_vad_filter_hands_the_model_only_the_speech(rare_name_clip: Path, tmp_path: Path) -> None:
    spy_file = tmp_path / "calls.jsonl"
    config = write_config(tmp_path / "isoscribe.toml", {"isolation": {"speech_stage": SPY_STAGE}, "asr": {"device": "cpu"}})
    result = _cli("--config", str(config), "transcribe", str(rare_name_clip), "--vad-filter",
                  cwd=tmp_path, spy_file=spy_file)
    assert result.returncode == 0, result.stderr
    samples, whole = _calls(spy_file)[0]["samples"], decode_audio(rare_name_clip).size
    print(f"vad_filter: {samples / SAMPLE_RATE:.2f} s of {whole / SAMPLE_RATE:.2f} s handed to the model")
    assert samples <= whole - PAUSE_S * SAMPLE_RATE


def test_a_changed_option_runs_a_batch_file_again(rare_name_clip: Path, tmp_path: Path) -> None:
    """``isoscribe run``: a second run with the same options skips the file; a changed TOML key or flag runs
    it again, with the new options handed to faster-whisper."""
    spy_file, out = tmp_path / "calls.jsonl", tmp_path / "out"
    sections = {"isolation": {"speech_stage": SPY_STAGE}, "asr": {"device": "cpu"}}
    config = write_config(tmp_path / "isoscribe.toml", sections)
    batch = ["run", str(rare_name_clip), "--out", str(out), "--no-summarize", "--formats", "json", "--no-progress"]
    first = _cli("--config", str(config), *batch, cwd=tmp_path, spy_file=spy_file)
    assert first.returncode == 0 and "1 done" in first.stdout, first.stderr
    again = _cli("--config", str(config), *batch, cwd=tmp_path, spy_file=spy_file)
    assert again.returncode == 0 and "1 skipped" in again.stdout, again.stderr
    seen = len(_calls(spy_file))
    changed = write_config(tmp_path / "changed.toml", {**sections, "asr": {"device": "cpu", "beam_size": 3}})
    third = _cli("--config", str(changed), *batch, "--hotwords", "budget", "--no-condition-on-previous-text",
                 cwd=tmp_path, spy_file=spy_file)
    assert third.returncode == 0 and "1 done" in third.stdout, third.stderr
    _assert_handed(_calls(spy_file, seen)[0], {"beam_size": 3, "hotwords": "budget", "condition_on_previous_text": False})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    tmp_path = tmp_path_factory.mktemp("decoding-service")
    spy_file = tmp_path / "calls.jsonl"
    config = base_config(tmp_path / "data", client_options=list(DECODING_OPTIONS))
    config["isolation"]["speech_stage"] = SPY_STAGE
    running = ServerProcess(tmp_path, config, env={"DECODING_SPY_FILE": str(spy_file)}).start()
    running.spy_file = spy_file
    yield running
    assert running.stop() == 0, running.log()


def _post(server: ServerProcess, path: str, clip: Path, fields: dict[str, str]) -> dict:
    with server.client() as client, open(clip, "rb") as audio:
        answer = client.post(path, files={"file": audio}, data=fields)
        assert answer.status_code in (200, 202), answer.text
        if path != "/v1/jobs":
            return answer.json()
        status = wait_for_job(client, answer.json()["id"])
        assert status["status"] == "succeeded", status
        return {"status": status, **client.get(f"/v1/jobs/{status['id']}/result").json()}


def test_the_prompt_spells_the_rare_name_only_when_given(server: ServerProcess, rare_name_clip: Path) -> None:
    without = _post(server, "/v1/audio/transcriptions", rare_name_clip, {})["text"]
    seen = len(_calls(server.spy_file))
    prompted = _post(server, "/v1/audio/transcriptions", rare_name_clip, {"prompt": PROMPT})["text"]
    print(f"without prompt: {without!r}\nwith prompt: {prompted!r}")
    assert RARE_NAME.lower() not in words(without)
    assert RARE_NAME.lower() in words(prompted)
    assert _calls(server.spy_file, seen)[0]["initial_prompt"] == PROMPT


@pytest.mark.parametrize("path", ["/v1/audio/transcriptions", "/v1/jobs"])
def test_every_form_field_reaches_faster_whisper(server: ServerProcess, rare_name_clip: Path, path: str) -> None:
    seen = len(_calls(server.spy_file))
    answer = _post(server, path, rare_name_clip, ALL_OPTIONS)
    first = _calls(server.spy_file, seen)[0]
    _assert_handed(first, ENGINE_EXPECTED)
    assert first["samples"] == decode_audio(rare_name_clip).size
    assert "budget" in words(answer["text"])
    if path == "/v1/jobs":
        shown = answer["status"]["options"]
        assert (shown["beam_size"], shown["vad_filter"], shown["hotwords"]) == (2, False, "budget Friday")


def test_translation_form_fields_reach_faster_whisper(server: ServerProcess, rare_name_clip: Path) -> None:
    seen = len(_calls(server.spy_file))
    fields = {"beam_size": "1", "hotwords": "budget", "no_speech_threshold": "0.5"}
    answer = _post(server, "/v1/audio/translations", rare_name_clip, fields)
    first = _calls(server.spy_file, seen)[0]
    _assert_handed(first, {"task": "translate", "beam_size": 1, "hotwords": "budget", "no_speech_threshold": 0.5})
    assert "budget" in words(answer["text"])
