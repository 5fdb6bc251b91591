"""Decoding and measuring on real clips, every container the issue names, broken and lying files."""

from __future__ import annotations

import shutil
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from isoscribe.audio import SAMPLE_RATE, AudioError, AudioTooLong, decode_audio, measure_duration, probe_duration


def test_decodes_44k_stereo_24bit_flac_to_16k_mono_float32(shared_data: Path) -> None:
    samples = decode_audio(shared_data / "jfk" / "jfk.flac")
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(samples.size / SAMPLE_RATE - 11.0) < 0.02
    assert 0.05 < np.abs(samples).max() <= 1.0


def test_flac_and_wav_of_the_same_speech_decode_alike(shared_data: Path) -> None:
    flac = decode_audio(shared_data / "jfk" / "jfk.flac")
    pcm = decode_audio(shared_data / "jfk" / "jfk.wav")
    length = min(flac.size, pcm.size)
    correlation = np.corrcoef(flac[:length], pcm[:length])[0, 1]
    assert correlation > 0.9


def test_probe_duration_matches_the_manifest(shared_data: Path, manifest: list[dict]) -> None:
    for clip in manifest:
        assert probe_duration(shared_data / clip["path"]) == pytest.approx(clip["duration_s"], abs=0.05), clip["path"]


def test_measure_duration_counts_decoded_samples(shared_data: Path, manifest: list[dict]) -> None:
    for clip in manifest:
        measured = measure_duration(shared_data / clip["path"])
        assert measured == pytest.approx(clip["duration_s"], abs=0.05), clip["path"]


def test_a_header_that_lies_about_the_duration_changes_nothing(lying_webm: Path) -> None:
    assert probe_duration(lying_webm) < 2.0  # what the patched Segment Info claims
    assert measure_duration(lying_webm) == pytest.approx(40.0, abs=0.1)
    with pytest.raises(AudioTooLong, match="over the limit of 30 s"):
        measure_duration(lying_webm, max_duration_s=30)
    with pytest.raises(AudioTooLong):
        decode_audio(lying_webm, max_duration_s=30)


@pytest.mark.parametrize(
    "suffix, codec_args",
    [
        ("mp3", ["-c:a", "libmp3lame"]),
        ("m4a", ["-c:a", "aac"]),
        ("ogg", ["-c:a", "libvorbis"]),
        ("webm", ["-c:a", "libopus"]),
        ("mp4", ["-c:a", "aac"]),
        ("flac", ["-c:a", "flac"]),
    ],
)
def test_every_container_decodes(shared_data: Path, tmp_path: Path, suffix: str, codec_args: list[str]) -> None:
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg is required for the format tests (scripts/setup.sh installs it)")
    encoded = tmp_path / f"jfk.{suffix}"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(shared_data / "jfk" / "jfk.wav"), *codec_args, str(encoded)], check=True
    )
    samples = decode_audio(encoded)
    assert abs(samples.size / SAMPLE_RATE - 11.0) < 0.15
    assert probe_duration(encoded) == pytest.approx(11.0, abs=0.15)
    assert measure_duration(encoded) > 10.5


def _zero_length_wav(path: Path) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(b"")
    return path


def _corrupt(path: Path) -> Path:
    rng = np.random.default_rng(0)
    path.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + rng.bytes(4000))
    return path


def _empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _text_file(path: Path) -> Path:
    path.write_text("this is plain text, not audio\n" * 20)
    return path


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda d: _corrupt(d / "corrupt.wav"), ""),
        (lambda d: _empty(d / "empty.wav"), "empty"),
        (lambda d: _text_file(d / "notes.mp3"), ""),
        (lambda d: _zero_length_wav(d / "silence.wav"), "zero duration"),
        (lambda d: d / "missing.wav", "not found"),
    ],
    ids=["corrupt", "empty", "text-file", "zero-duration", "missing"],
)
def test_bad_inputs_raise_one_clear_audio_error(tmp_path: Path, make, reason: str) -> None:
    path = make(tmp_path)
    for function in (decode_audio, probe_duration, measure_duration):
        with pytest.raises(AudioError) as caught:
            function(path)
        message = str(caught.value)
        assert str(path) in message
        assert reason in message
        assert caught.value.reason


def test_audio_error_pickles_with_its_cause(tmp_path: Path) -> None:
    import pickle

    error = AudioError(tmp_path / "x.wav", "file is empty")
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == str(error) and copy.reason == "file is empty"


def test_audio_module_imports_no_model_runtime() -> None:
    code = (
        "import sys, isoscribe.audio, isoscribe.models;"
        "print(sorted(m for m in ('torch', 'ctranslate2', 'faster_whisper') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
