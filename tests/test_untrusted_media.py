"""Untrusted media never touches a parent process: the server and a batch parent hand every file to a
probe worker, answer bad input with a clear 4xx or a failed file, stay up, and never map a media or
model library themselves (checked the way an operator would, in /proc/PID/maps)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import wave
from pathlib import Path

import httpx
import pytest
from media_fixtures import random_bytes, truncated_m4a, video_without_audio
from service_support import ServerProcess, base_config, words

pytestmark = pytest.mark.slow

FORBIDDEN_LIBRARIES = ("libavformat", "libavcodec", "ctranslate2", "libtorch", "torch/lib", "llama")


def mapped_forbidden(pid: int) -> list[str]:
    maps = Path(f"/proc/{pid}/maps").read_text()
    return sorted({line.split()[-1] for line in maps.splitlines() if any(lib in line for lib in FORBIDDEN_LIBRARIES)})


def _short_wav(path: Path, seconds: float) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(b"\x00\x10" * int(16000 * seconds))
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    tmp_path = tmp_path_factory.mktemp("untrusted")
    running = ServerProcess(tmp_path, base_config(tmp_path / "data", max_duration_s=30)).start()
    yield running
    assert running.stop() == 0, running.log()


@pytest.fixture(scope="module")
def bad_media(tmp_path_factory: pytest.TempPathFactory, shared_data: Path, lying_webm: Path) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad-media")
    empty = folder / "empty.wav"
    empty.write_bytes(b"")
    return {
        "truncated": truncated_m4a(shared_data / "jfk" / "jfk.wav", folder / "truncated.m4a"),
        "random": random_bytes(folder / "random.mp3"),
        "video": video_without_audio(folder / "video.mp4"),
        "lying": lying_webm,
        "zero-length": empty,
        "too-short": _short_wav(folder / "blip.wav", 0.05),
    }


EXPECTED = {
    "truncated": (415, "unsupported_audio"),
    "random": (415, "unsupported_audio"),
    "video": (415, "unsupported_audio"),
    "lying": (413, "audio_too_long"),
    "zero-length": (415, "unsupported_audio"),
    "too-short": (400, "audio_too_short"),
}


def _post(server: ServerProcess, path: Path) -> httpx.Response:
    with server.client() as client, open(path, "rb") as upload:
        return client.post("/v1/audio/transcriptions", files={"file": (path.name, upload)})


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_bad_media_is_a_clear_4xx(server: ServerProcess, bad_media: dict[str, Path], kind: str) -> None:
    response = _post(server, bad_media[kind])
    status, code = EXPECTED[kind]
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"] and str(bad_media[kind].parent) not in error["message"]


def test_a_lying_job_fails_with_its_cause(server: ServerProcess, bad_media: dict[str, Path]) -> None:
    with server.client() as client, open(bad_media["lying"], "rb") as upload:
        job_id = client.post("/v1/jobs", files={"file": ("lying.webm", upload)}).json()["id"]
        deadline = time.monotonic() + 120
        while (status := client.get(f"/v1/jobs/{job_id}").json())["status"] in ("queued", "running"):
            assert time.monotonic() < deadline
            time.sleep(0.2)
    assert status["status"] == "failed" and status["error"]["type"] == "audio_too_long"


def test_after_good_and_bad_uploads_the_server_is_up_and_maps_no_media_or_model_library(
    server: ServerProcess, bad_media: dict[str, Path], shared_data: Path
) -> None:
    for path in bad_media.values():
        _post(server, path)
    good = _post(server, shared_data / "jfk" / "jfk.wav")
    assert good.status_code == 200 and "country" in words(good.json()["text"])
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    assert server.process.poll() is None
    assert mapped_forbidden(server.pid) == []


def test_a_batch_parent_maps_no_media_or_model_library_while_it_runs(shared_data: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("sonnet001.wav", "acoustic_corpus.wav"):
        shutil.copy(shared_data / "long" / name, inputs / name)
    random_bytes(inputs / "noise.wav")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "isoscribe.cli", "run", str(inputs), "--out", str(out),
               "--no-summarize", "--no-progress", "--formats", "json"]
    batch = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: set[str] = set()
    samples = 0
    while batch.poll() is None:
        try:
            seen.update(mapped_forbidden(batch.pid))
            samples += 1
        except FileNotFoundError:
            break
        time.sleep(0.2)
    output = batch.communicate()[0]
    assert batch.returncode == 1, output  # noise.wav fails, the others are done
    assert samples >= 5 and seen == set()
    assert (out / "sonnet001" / "sonnet001.json").is_file() and (out / "acoustic_corpus" / "acoustic_corpus.json").is_file()
    assert "2 done, 1 failed" in output
