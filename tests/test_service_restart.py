"""SIGTERM drains and exits 0; queued and interrupted jobs survive in SQLite and complete after a restart."""

from __future__ import annotations

from pathlib import Path

import pytest
from service_support import ServerProcess, base_config, wait_for_job, words

pytestmark = pytest.mark.slow


def test_full_job_queue_is_503_and_jobs_survive_a_restart(tmp_path: Path, shared_data: Path) -> None:
    config = base_config(tmp_path / "data", asr_workers=1, queue_size=1, drain_timeout_s=0.5)
    audio = (shared_data / "jfk" / "jfk.wav").read_bytes()
    first = ServerProcess(tmp_path, config).start()
    try:
        with first.client() as client:
            responses = [client.post("/v1/jobs", files={"file": ("jfk.wav", audio)}) for _ in range(4)]
    finally:
        exit_code = first.stop()
    assert exit_code == 0, first.log()
    accepted = [r.json()["id"] for r in responses if r.status_code == 202]
    refused = [r for r in responses if r.status_code == 503]
    assert accepted and refused, [r.status_code for r in responses]
    assert int(refused[0].headers["retry-after"]) >= 1 and refused[0].json()["error"]["code"] == "queue_full"

    second = ServerProcess(tmp_path, config).start()
    try:
        with second.client() as client:
            for job_id in accepted:
                status = wait_for_job(client, job_id)
                assert status["status"] == "succeeded", status
                assert "country" in words(client.get(f"/v1/jobs/{job_id}/result", params={"format": "text"}).text)
    finally:
        assert second.stop() == 0, second.log()
    assert "event=service_stopped" in first.log() and "event=serve_stopped" in first.log()
