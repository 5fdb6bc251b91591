"""The service as a public endpoint, on the app in-process with no model workers: which Host and Origin
are served, keys that own their jobs, OpenAI's error shape everywhere, no server path in a job status,
and the checks a request meets before any stage runs."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service_support import NoWorkers

from isoscribe.config import load_settings
from isoscribe.service.app import create_app
from isoscribe.service.auth import Caller, hash_key
from isoscribe.service.core import Service
from isoscribe.service.job_store import JobOptions, JobStore
from isoscribe.service.webhook_outbox import WebhookOutbox
from isoscribe.service.server import serve_command

ADMIN, KEY_A, KEY_B = "admin-key", "key-a", "key-b"
LOOPBACK = "http://127.0.0.1:8000"


def _client(tmp_path: Path, **service) -> TestClient:
    settings = load_settings(overrides={"service": {"data_dir": tmp_path, **service}})
    return TestClient(create_app(settings, NoWorkers()), base_url=LOOPBACK)


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _is_openai_error(response, status: int) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"], error


def test_a_dns_rebinding_host_gets_403_without_a_key(tmp_path: Path) -> None:
    with _client(tmp_path, allowed_hosts=["transcribe.lan"]) as client:
        _is_openai_error(client.get("/v1/jobs", headers={"Host": "evil.example"}), 403)
        _is_openai_error(client.get("/", headers={"Host": "evil.example:8000"}), 403)
        for host in ("127.0.0.1:8000", "localhost", "[::1]:8000", "transcribe.lan:8000"):
            assert client.get("/v1/jobs", headers={"Host": host}).status_code == 200, host


def test_a_cross_origin_post_gets_403_and_queues_nothing(tmp_path: Path) -> None:
    with _client(tmp_path, cors_origins=["https://app.example"]) as client:
        files = {"file": ("a.wav", b"RIFF")}
        refused = client.post("/v1/jobs", files=files, headers={"Origin": "http://evil.example"})
        _is_openai_error(refused, 403)
        assert "evil.example" in refused.json()["error"]["message"]
        assert client.get("/v1/jobs").json()["data"] == []
        same_site = client.get("/v1/jobs", headers={"Origin": LOOPBACK})
        assert same_site.status_code == 200
        preflight = client.options(
            "/v1/jobs", headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"


def test_a_non_loopback_bind_without_a_key_refuses_to_start(tmp_path: Path) -> None:
    settings = load_settings(overrides={"service": {"data_dir": tmp_path, "host": "0.0.0.0"}})
    assert serve_command(settings, argparse.Namespace(insecure_no_auth=False, hash_key=False)) == 2


def test_unknown_paths_and_methods_answer_in_openai_shape(tmp_path: Path) -> None:
    with _client(tmp_path) as client:
        _is_openai_error(client.get("/v1/nope"), 404)
        _is_openai_error(client.delete("/v1/models"), 405)
        _is_openai_error(client.get("/v1/jobs/job_missing"), 404)
        _is_openai_error(client.get("/v1/models/no-such-model"), 404)
        assert client.get("/v1/models/whisper-1").json()["id"] == "whisper-1"


@pytest.fixture
def owned_jobs(tmp_path: Path) -> Iterator[tuple[TestClient, str, str]]:
    store = JobStore(tmp_path / "jobs.sqlite3")
    job_a = store.create(tmp_path / "a.wav", JobOptions(filename="a.wav"), None, hash_key(KEY_A)[:16]).id
    job_b = store.create(tmp_path / "b.wav", JobOptions(filename="b.wav"), None, hash_key(KEY_B)[:16]).id
    store.close()
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"{hash_key(KEY_B)}  # user b\n")
    with _client(tmp_path, api_key=ADMIN, api_keys=[KEY_A], api_keys_file=keys_file) as client:
        yield client, job_a, job_b


def test_key_a_cannot_see_or_delete_key_b_job(owned_jobs: tuple[TestClient, str, str]) -> None:
    client, job_a, job_b = owned_jobs
    listed = client.get("/v1/jobs", headers=_auth(KEY_A)).json()["data"]
    assert [job["id"] for job in listed] == [job_a]
    _is_openai_error(client.get(f"/v1/jobs/{job_b}", headers=_auth(KEY_A)), 404)
    _is_openai_error(client.delete(f"/v1/jobs/{job_b}", params={"purge": "true"}, headers=_auth(KEY_A)), 404)
    assert client.get(f"/v1/jobs/{job_b}", headers=_auth(KEY_B)).json()["id"] == job_b, "B's job is still there"
    everyone = client.get("/v1/jobs", headers=_auth(ADMIN)).json()["data"]
    assert {job["id"] for job in everyone} == {job_a, job_b}
    _is_openai_error(client.get("/v1/jobs", headers=_auth("not-a-key")), 401)


def test_the_job_list_is_paginated_without_results(owned_jobs: tuple[TestClient, str, str]) -> None:
    client, job_a, job_b = owned_jobs
    first = client.get("/v1/jobs", params={"limit": 1}, headers=_auth(ADMIN)).json()
    assert [job["id"] for job in first["data"]] == [job_b] and first["has_more"]
    second = client.get("/v1/jobs", params={"limit": 1, "after": first["last_id"]}, headers=_auth(ADMIN)).json()
    assert [job["id"] for job in second["data"]] == [job_a] and not second["has_more"], "a full last page ends the list"
    assert all("transcript" not in job for job in first["data"] + second["data"])
    _is_openai_error(client.get("/v1/jobs", params={"after": job_b}, headers=_auth(KEY_A)), 400)  # B's, unseen
    assert client.delete(f"/v1/jobs/{job_b}", params={"purge": "true"}, headers=_auth(ADMIN)).status_code == 200
    gone = client.get("/v1/jobs", params={"limit": 1, "after": job_b}, headers=_auth(ADMIN))
    _is_openai_error(gone, 400)
    assert gone.json()["error"]["code"] == "invalid_cursor", "not an empty last page while job A is still listed"


def test_metrics_and_docs_need_a_key_unless_public(tmp_path: Path) -> None:
    with _client(tmp_path, api_key=ADMIN) as client:
        for path in ("/metrics", "/docs", "/openapi.json"):
            _is_openai_error(client.get(path), 401)
            assert client.get(path, headers=_auth(ADMIN)).status_code == 200, path
    with _client(tmp_path / "public", api_key=ADMIN, public_metrics=True, public_docs=True) as client:
        assert client.get("/metrics").status_code == client.get("/openapi.json").status_code == 200


def test_stored_jobs_for_a_model_not_served_here_fail_and_the_job_loop_goes_on(tmp_path: Path) -> None:
    """A store shared with other instances may hold jobs for a model only they serve: each fails naming it."""
    store = JobStore(tmp_path / "jobs.sqlite3")
    job_ids = [store.create(tmp_path / f"{n}.wav", JobOptions(model="large-v9")).id for n in range(2)]
    store.close()
    with _client(tmp_path, asr_workers=1) as client:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            statuses = [client.get(f"/v1/jobs/{job_id}").json() for job_id in job_ids]
            if all(status["status"] == "failed" for status in statuses):
                break
            time.sleep(0.1)
    assert [status["error"]["type"] for status in statuses] == ["model_not_found"] * 2, statuses
    assert "'large-v9' is not available" in statuses[1]["error"]["message"]


def test_no_server_path_in_a_job_status(tmp_path: Path) -> None:
    sample = tmp_path / "job-audio" / "sample.reference"
    store = JobStore(tmp_path / "jobs.sqlite3")
    options = JobOptions(filename="meeting.wav", diarize=True, known_speakers={"Alice": str(sample)})
    job_id = store.create(tmp_path / "job-audio" / "meeting.wav", options).id
    store.close()
    with _client(tmp_path) as client:
        status = client.get(f"/v1/jobs/{job_id}")
        listed = client.get("/v1/jobs")
    for response in (status, listed):
        assert response.status_code == 200 and str(tmp_path) not in response.text, response.text
    assert status.json()["options"]["known_speakers"] == ["Alice"]


def test_a_language_an_english_only_model_cannot_do_is_400(tmp_path: Path) -> None:
    with _client(tmp_path) as client:
        form = {"model": "whisper-1", "language": "de"}
        refused = client.post("/v1/audio/transcriptions", data=form, files={"file": ("a.wav", b"RIFF")})
    _is_openai_error(refused, 400)
    assert refused.json()["error"]["param"] == "language"
    assert list((tmp_path / "uploads").iterdir()) == [], "the refused upload is deleted"


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/hook", "http://[2002:7f00:1::]/hook", "ftp://example.org/"])
def test_a_webhook_url_that_would_be_refused_is_400_at_submit(tmp_path: Path, url: str) -> None:
    with _client(tmp_path) as client:
        refused = client.post("/v1/jobs", data={"webhook_url": url}, files={"file": ("a.wav", b"RIFF")})
        _is_openai_error(refused, 400)
        assert refused.json()["error"]["param"] == "webhook_url"
        assert client.get("/v1/jobs").json()["data"] == []
    assert list((tmp_path / "job-audio").iterdir()) == [], "the refused upload is deleted"


def test_finished_jobs_expire_with_their_audio(tmp_path: Path) -> None:
    import time

    audio = tmp_path / "job-audio" / "done.wav"
    audio.parent.mkdir(parents=True)
    audio.write_bytes(b"RIFF")
    store = JobStore(tmp_path / "jobs.sqlite3")
    finished = store.create(audio, JobOptions(filename="done.wav")).id
    store.claim_next()
    store.succeed(finished, {"segments": []}, None, {})
    store.close()
    with _client(tmp_path, job_ttl_s=0.5) as client:
        deadline = time.monotonic() + 30
        while client.get(f"/v1/jobs/{finished}").status_code != 404:
            assert time.monotonic() < deadline, "the finished job did not expire"
            time.sleep(0.05)
    assert not audio.exists()


def test_job_audio_is_not_kept_by_default() -> None:
    assert load_settings().service.keep_job_audio is False


def test_a_cancelled_queued_job_gets_its_webhook_and_loses_its_files(tmp_path: Path) -> None:
    audio = tmp_path / "queued.wav"
    audio.write_bytes(b"audio")
    service = Service(load_settings(overrides={"service": {"data_dir": tmp_path}}), NoWorkers())
    job = service.store.create(audio, JobOptions(filename="queued.wav"), "https://hooks.example/done")
    sent: list[tuple[str, str, dict]] = []
    service.outbox = WebhookOutbox(service.settings, "whsec_test")
    service.outbox.put = lambda *delivery: sent.append(delivery)  # recorded, not sent
    assert asyncio.run(service.cancel_job(job.id, Caller("", admin=True))).status == "cancelled"
    assert [(job_id, url, body["status"]) for job_id, url, body in sent] == [
        (job.id, "https://hooks.example/done", "cancelled")
    ]
    assert not audio.exists()
    service.store.close()


def test_a_start_removes_job_uploads_no_job_owns(tmp_path: Path) -> None:
    job_audio = tmp_path / "job-audio"
    job_audio.mkdir()
    (job_audio / "cut-off-upload.wav").write_bytes(b"half")
    kept = job_audio / "kept.wav"
    kept.write_bytes(b"audio")
    store = JobStore(tmp_path / "jobs.sqlite3")
    job_id = store.create(kept, JobOptions(filename="kept.wav")).id
    assert store.claim_next().id == job_id and store.succeed(job_id, {"text": ""}, None, {})  # kept for the player
    store.close()
    with _client(tmp_path) as client:
        assert client.get("/healthz").status_code == 200
    assert sorted(path.name for path in job_audio.iterdir()) == ["kept.wav"]
