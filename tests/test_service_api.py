"""The transcription service end to end: the official ``openai`` client and raw HTTP against a real
``isoscribe serve`` on 127.0.0.1, with the real speech stage (tiny.en) in a recycled worker pool."""

from __future__ import annotations

import concurrent.futures
import os
import time
from pathlib import Path

import httpx
import pytest
from openai import APIStatusError, AuthenticationError, OpenAI
from service_support import API_KEY, ServerProcess, WebhookReceiver, base_config, metric_value, wait_for_job, words

pytestmark = pytest.mark.slow

JFK_WORDS = words(
    "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."
)


def _close_to_jfk(text: str) -> bool:
    said = words(text)
    return said == JFK_WORDS or (len(set(said) ^ set(JFK_WORDS)) <= 1 and abs(len(said) - len(JFK_WORDS)) <= 1)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    tmp_path = tmp_path_factory.mktemp("service-api")
    config = base_config(
        tmp_path / "data", max_upload_mb=2, max_duration_s=30, queue_size=1, asr_workers=1,
        webhook_allow_hosts=["127.0.0.1"],  # the job webhook test's receiver is on loopback
    )
    config["llm"] = {"max_tokens": 16, "n_ctx": 1024}  # the summary only has to flow through the job
    running = ServerProcess(tmp_path, config).start()
    yield running
    assert running.stop() == 0, running.log()


@pytest.fixture(scope="module")
def openai_client(server: ServerProcess) -> OpenAI:
    return OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0, timeout=300)


@pytest.fixture
def jfk(shared_data: Path) -> Path:
    return shared_data / "jfk" / "jfk.wav"


def test_openai_client_json_and_text(openai_client: OpenAI, jfk: Path) -> None:
    with open(jfk, "rb") as audio:
        as_json = openai_client.audio.transcriptions.create(model="whisper-1", file=audio, response_format="json")
    assert _close_to_jfk(as_json.text), as_json.text
    with open(jfk, "rb") as audio:
        as_text = openai_client.audio.transcriptions.create(model="tiny.en", file=audio, response_format="text")
    assert isinstance(as_text, str) and _close_to_jfk(as_text), as_text


def test_openai_client_srt_and_vtt(openai_client: OpenAI, jfk: Path) -> None:
    with open(jfk, "rb") as audio:
        srt = openai_client.audio.transcriptions.create(model="whisper-1", file=audio, response_format="srt")
    blocks = [block.splitlines() for block in srt.strip().split("\n\n")]
    assert blocks[0][0] == "1" and " --> " in blocks[0][1] and blocks[0][1].count(",") == 2
    assert _close_to_jfk(" ".join(" ".join(block[2:]) for block in blocks)), srt
    with open(jfk, "rb") as audio:
        vtt = openai_client.audio.transcriptions.create(model="whisper-1", file=audio, response_format="vtt")
    assert vtt.startswith("WEBVTT") and " --> " in vtt


def test_openai_client_verbose_json_with_words_and_segments(openai_client: OpenAI, jfk: Path) -> None:
    with open(jfk, "rb") as audio:
        verbose = openai_client.audio.transcriptions.create(
            model="whisper-1",
            file=audio,
            response_format="verbose_json",
            timestamp_granularities=["word", "segment"],
        )
    assert _close_to_jfk(verbose.text)
    assert verbose.language == "english" and verbose.duration == pytest.approx(11.0, abs=0.1)
    assert verbose.segments and verbose.words
    assert words(" ".join(w.word for w in verbose.words)) == words(verbose.text), "the words spell the text"
    starts = [w.start for w in verbose.words]
    assert starts == sorted(starts) and all(w.end >= w.start for w in verbose.words)
    assert verbose.segments[0].start >= 0 and verbose.segments[-1].end <= 11.5


def test_verbose_json_without_granularities_has_segments_only(server: ServerProcess, jfk: Path) -> None:
    with server.client() as client, open(jfk, "rb") as audio:
        response = client.post(
            "/v1/audio/transcriptions", files={"file": audio}, data={"response_format": "verbose_json"}
        )
    body = response.json()
    assert response.status_code == 200 and body["segments"] and "words" not in body


def test_models_lists_alias_and_installed_models(openai_client: OpenAI) -> None:
    ids = [model.id for model in openai_client.models.list()]
    assert ids[0] == "whisper-1" and {"tiny.en", "base"} <= set(ids)


def test_another_installed_model_gets_its_own_pool(openai_client: OpenAI, jfk: Path) -> None:
    with open(jfk, "rb") as audio:
        result = openai_client.audio.transcriptions.create(model="base", file=audio, response_format="verbose_json")
    assert _close_to_jfk(result.text), result.text
    assert result.language == "english"


def test_unknown_model_is_400_with_the_list(server: ServerProcess, jfk: Path) -> None:
    with server.client() as client, open(jfk, "rb") as audio:
        response = client.post("/v1/audio/transcriptions", files={"file": audio}, data={"model": "large-v9"})
    assert response.status_code == 400
    assert "whisper-1" in response.json()["error"]["message"]


def test_wrong_or_missing_api_key_is_401(server: ServerProcess, jfk: Path) -> None:
    with pytest.raises(AuthenticationError):
        OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0).models.list()
    response = httpx.post(f"{server.url}/v1/audio/transcriptions", files={"file": jfk.read_bytes()})
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_oversized_upload_is_413_and_leaves_no_file(server: ServerProcess, tmp_path: Path) -> None:
    big = tmp_path / "big.wav"
    big.write_bytes(os.urandom(3_000_000))
    with server.client() as client, open(big, "rb") as upload:
        response = client.post("/v1/audio/transcriptions", files={"file": ("../../etc/big.wav", upload)})
    assert response.status_code == 413 and response.json()["error"]["code"] == "upload_too_large"
    uploads = Path(_data_dir(server)) / "uploads"
    assert list(uploads.iterdir()) == []


def test_too_long_audio_is_413(server: ServerProcess, shared_data: Path) -> None:
    with server.client() as client, open(shared_data / "long" / "sonnet001.wav", "rb") as audio:
        response = client.post("/v1/audio/transcriptions", files={"file": audio})
    assert response.status_code == 413 and "over the limit of 30 s" in response.json()["error"]["message"]


def test_not_audio_is_415_with_reason(openai_client: OpenAI, tmp_path: Path) -> None:
    text_file = tmp_path / "notes.mp3"
    text_file.write_text("this is not audio\n" * 100)
    with pytest.raises(APIStatusError) as raised, open(text_file, "rb") as upload:
        openai_client.audio.transcriptions.create(model="whisper-1", file=upload)
    assert raised.value.status_code == 415
    message = raised.value.body["message"]
    assert "not decodable audio" in message and str(tmp_path) not in message and "uploads" not in message


def test_full_queue_is_429_with_retry_after(server: ServerProcess, jfk: Path) -> None:
    """queue_size 1 + 1 worker: of 6 simultaneous requests at least one is turned away, none fails."""
    audio = jfk.read_bytes()

    def post(_: int) -> httpx.Response:
        with server.client() as client:
            return client.post("/v1/audio/transcriptions", files={"file": ("jfk.wav", audio)})

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(post, range(6)))
    codes = sorted(r.status_code for r in responses)
    assert set(codes) == {200, 429}, codes
    rejected = next(r for r in responses if r.status_code == 429)
    assert int(rejected.headers["retry-after"]) >= 1
    assert rejected.json()["error"]["code"] == "queue_full"


def test_async_job_flow_with_webhook(server: ServerProcess, jfk: Path) -> None:
    hook = WebhookReceiver()
    try:
        with server.client() as client, open(jfk, "rb") as audio:
            created = client.post("/v1/jobs", files={"file": audio}, data={"webhook_url": hook.url, "diarize": "false"})
            assert created.status_code == 202, created.text
            job_id = created.json()["id"]
            assert created.headers["location"] == f"/v1/jobs/{job_id}"
            status = wait_for_job(client, job_id)
            assert status["status"] == "succeeded" and status["progress"] == 1.0, status
            assert {"queued_s", "speech_s", "total_s"} <= set(status["timings"])
            assert _close_to_jfk(client.get(f"/v1/jobs/{job_id}/result").json()["text"])
            assert _close_to_jfk(client.get(f"/v1/jobs/{job_id}/result", params={"format": "text"}).text)
            assert client.get(f"/v1/jobs/{job_id}/result", params={"format": "srt"}).text.startswith("1\n")
            verbose = client.get(f"/v1/jobs/{job_id}/result", params={"format": "verbose_json"}).json()
            assert verbose["words"] and verbose["segments"]
            assert (
                client.get(f"/v1/jobs/{job_id}/result", params={"format": "transcript"}).json()["schema_version"] == 1
            )
            assert client.get("/v1/jobs/job_nope").status_code == 404
        assert hook.received.wait(30)
        assert hook.bodies[0]["id"] == job_id and hook.bodies[0]["status"] == "succeeded"
    finally:
        hook.close()


def test_job_with_diarization_and_summary(server: ServerProcess, jfk: Path) -> None:
    with server.client() as client, open(jfk, "rb") as audio:
        options = {"diarize": "true", "num_speakers": "2", "summarize": "true"}
        created = client.post("/v1/jobs", files={"file": audio}, data=options)
        assert created.status_code == 202, created.text
        status = wait_for_job(client, created.json()["id"], timeout_s=600)
        assert status["status"] == "succeeded", status
        verbose = client.get(f"/v1/jobs/{status['id']}/result", params={"format": "verbose_json"}).json()
        summary = client.get(f"/v1/jobs/{status['id']}/result", params={"format": "summary"}).json()
    # One label scheme across formats and the JSON API (issue 23): the diarizer's SPEAKER_00, SPEAKER_01.
    assert verbose["segments"] and {s["speaker"] for s in verbose["segments"]} <= {"SPEAKER_00", "SPEAKER_01"}
    assert verbose["words"] and {w["speaker"] for w in verbose["words"]} <= {"SPEAKER_00", "SPEAKER_01"}
    assert summary["warnings"] == [] and summary["overview"], summary
    assert summary["sentences"] and all({"text", "supported", "evidence"} <= set(s) for s in summary["sentences"])
    assert {"speech_s", "summary_s"} <= set(status["timings"])


def test_cancel_job(server: ServerProcess, jfk: Path) -> None:
    audio = jfk.read_bytes()
    with server.client() as client:
        first = client.post("/v1/jobs", files={"file": ("jfk.wav", audio)}).json()["id"]
        while client.get(f"/v1/jobs/{first}").json()["status"] == "queued":  # the queue holds one job
            time.sleep(0.05)
        second = client.post("/v1/jobs", files={"file": ("jfk.wav", audio)})
        assert second.status_code == 202, second.text
        # The second job waits behind the running first one, so the DELETE finds it queued (or, at the
        # latest, just started): either way it is cancelled and never succeeds.
        cancelled = client.delete(f"/v1/jobs/{second.json()['id']}")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled", cancelled.text
        assert wait_for_job(client, first)["status"] == "succeeded"
        assert client.get(f"/v1/jobs/{second.json()['id']}").json()["status"] == "cancelled"
        assert client.get(f"/v1/jobs/{second.json()['id']}/result").status_code == 409


def test_metrics_expose_pool_queue_and_latency(server: ServerProcess, jfk: Path) -> None:
    with server.client() as client, open(jfk, "rb") as audio:
        assert client.post("/v1/audio/transcriptions", files={"file": audio}).status_code == 200
    text = server.metrics()
    assert metric_value(text, "isoscribe_workers", stage="speech") == 1
    assert metric_value(text, "isoscribe_worker_rss_bytes", stage="speech") > 50e6
    assert "isoscribe_queue_depth" in text and "isoscribe_worker_crashes_total" in text
    assert metric_value(text, "isoscribe_request_latency_seconds_count", route="create_transcription") >= 1
    assert metric_value(text, "process_resident_memory_bytes") > 0


def _data_dir(server: ServerProcess) -> str:
    for line in server.config_path.read_text().splitlines():
        if line.startswith("data_dir"):
            return line.split("=", 1)[1].strip().strip('"')
    raise AssertionError("no data_dir in the config")
