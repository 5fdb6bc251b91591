"""A long upload on a service with two speech workers: its pieces run on both and come back in order,
as a job and as a stream."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from openai import OpenAI
from openai.types.audio import TranscriptionTextDoneEvent
from service_support import API_KEY, ServerProcess, base_config, wait_for_job, words

from isoscribe.benchmarks.asr import make_long_audio

pytestmark = pytest.mark.slow

AUDIO_S = 330.0
"""Two pieces of 165 s on two workers (a file stays whole up to 5 minutes)."""
JFK_AT_S = [(30.0, 41.0), (225.4, 236.4)]
"""Where make_long_audio puts the JFK clip in its first and third rounds: one in each piece."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp_path = tmp_path_factory.mktemp("service-long")
    config = base_config(tmp_path / "data", max_upload_mb=40, max_duration_s=900, asr_workers=2)
    running = ServerProcess(tmp_path, config).start()
    yield running
    assert running.stop() == 0, running.log()


@pytest.fixture(scope="module")
def long_audio(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    return make_long_audio(shared_data, tmp_path_factory.mktemp("audio") / "long.wav", AUDIO_S)


def test_a_long_job_runs_in_pieces_on_both_workers_and_is_stitched_in_order(server: ServerProcess, long_audio: Path) -> None:
    with server.client() as client, long_audio.open("rb") as audio:
        created = client.post("/v1/jobs", files={"file": audio}, data={"diarize": "true"})
        assert created.status_code == 202, created.text
        status = wait_for_job(client, created.json()["id"])
        assert status["status"] == "succeeded", status
        transcript = client.get(f"/v1/jobs/{status['id']}/result", params={"format": "transcript"}).json()
    assert transcript["timings_s"]["pieces"] == 2
    segments = transcript["segments"]
    times = [t for s in segments for w in s["words"] for t in (w["start"], w["end"])]
    assert times == sorted(times) and times[-1] <= AUDIO_S + 0.01
    jfk = [[s for s in segments if start - 1 <= s["start"] and s["end"] <= end + 1] for start, end in JFK_AT_S]
    for spoken in jfk:
        assert "country" in words(" ".join(s["text"] for s in spoken))
    assert {s["speaker"] for s in jfk[0]} == {s["speaker"] for s in jfk[1]}, "one voice, one label in both pieces"


def test_a_long_stream_runs_in_pieces_and_its_deltas_come_in_file_order(server: ServerProcess, long_audio: Path) -> None:
    stitched_before = server.log().count("speech_pieces_stitched")
    client = OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0, timeout=300)
    with long_audio.open("rb") as audio:
        events = list(client.audio.transcriptions.create(model="whisper-1", file=audio, stream=True))
    *deltas, done = events
    assert isinstance(done, TranscriptionTextDoneEvent) and len(deltas) > 20
    assert "".join(delta.delta for delta in deltas) == done.text, "every segment once, in the file's order"
    assert server.log().count("speech_pieces_stitched") == stitched_before + 1
