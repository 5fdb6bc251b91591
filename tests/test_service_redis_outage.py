"""The service on the Celery executor keeps its jobs in Redis. Redis goes away under it and comes back:
the job loops log and back off instead of dying, /readyz says not ready meanwhile, and every job that
was submitted finishes, once. A job left running by another instance that died is taken back and run."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from redis import Redis
from service_support import ServerProcess, base_config
from test_distributed import RedisServer, Worker

pytestmark = [pytest.mark.celery, pytest.mark.slow]

JOBS = 2
OUTAGE_S = 8.0
"""Longer than the job loops' idle poll: an idle loop meets the missing store."""
STALL_S = 180.0
"""How long the jobs may go without any of them moving (status, stage, audio done) before the test fails;
a job waiting behind another moves when that one does, so the clock restarts with every step of any job."""


def test_jobs_survive_a_redis_outage_under_a_running_service(tmp_path: Path, shared_data: Path) -> None:
    redis_server = RedisServer(tmp_path, persistent=True)
    redis_server.start()
    celery = {"broker_url": redis_server.url(0), "result_backend": redis_server.url(1),
              "shared_dir": str(tmp_path / "shared"), "poll_interval_s": "0.1"}
    env = {f"ISOSCRIBE_CELERY__{key.upper()}": value for key, value in celery.items()}
    import os

    worker_env = {k: v for k, v in os.environ.items() if not k.startswith("ISOSCRIBE_")} | env
    worker_env |= {"ISOSCRIBE_ASR__DEVICE": "cpu", "ISOSCRIBE_ASR__CPU_THREADS": "1"}
    worker = Worker(worker_env, tmp_path / "worker.log")
    config = base_config(tmp_path / "data", executor="celery", asr_workers=JOBS + 1)
    server = ServerProcess(tmp_path, config, env=env)
    try:
        worker.wait_ready()
        server.start()
        audio = (shared_data / "jfk" / "jfk.wav").read_bytes()
        with server.client() as client:
            job_ids = [client.post("/v1/jobs", files={"file": ("jfk.wav", audio)}).json()["id"] for _ in range(JOBS)]
        redis_server.stop()
        assert _readyz(server) == 503, "not ready while the job store is unreachable"
        with server.client() as client:
            for method, path in (("GET", "/v1/jobs"), ("GET", f"/v1/jobs/{job_ids[0]}"),
                                 ("GET", f"/v1/jobs/{job_ids[0]}/result"), ("POST", "/v1/jobs"), ("GET", "/metrics")):
                files = {"file": ("jfk.wav", audio)} if method == "POST" else None
                answer = client.request(method, path, files=files)
                assert answer.status_code == 503 and answer.headers.get("retry-after"), (method, path, answer.text)
        time.sleep(OUTAGE_S)
        redis_server.start()
        with server.client() as client:
            statuses = _wait_finished(client, job_ids, server)
        failures = {job_id: status["error"] for job_id, status in statuses.items() if status["status"] != "succeeded"}
        assert not failures, (failures, [line for line in server.log().splitlines() if "Error" in line][-20:])
        assert _readyz(server) == 200
        orphan = _orphan_of_a_dead_instance(redis_server.url(1), shared_data / "jfk" / "jfk.wav", tmp_path)
        with server.client() as client:
            assert _wait_finished(client, [orphan], server)[orphan]["status"] == "succeeded"
        assert "event=orphan_jobs_requeued" in server.log()
        store = Redis.from_url(redis_server.url(1), decode_responses=True)
        assert store.scard("isoscribe:jobs:status:succeeded") == JOBS + 1
        assert store.scard("isoscribe:jobs:status:queued") == store.scard("isoscribe:jobs:status:running") == 0
    finally:
        assert server.stop() == 0, server.log()[-4000:]
        worker.stop()
        redis_server.stop()
    assert "event=job_store_unreachable" in server.log() and "event=job_store_reachable" in server.log()


def _wait_finished(client: httpx.Client, job_ids: list[str], server: ServerProcess) -> dict[str, dict]:
    """Every job's final status, failing when no job made progress for ``STALL_S``."""
    seen: dict[str, tuple] = {}
    last_step = time.monotonic()
    while True:
        responses = {job_id: client.get(f"/v1/jobs/{job_id}") for job_id in job_ids}
        # A store still reconnecting answers 503 with Retry-After: that is no step, and no failure.
        assert all(r.status_code in (200, 503) for r in responses.values()), [r.text for r in responses.values()]
        statuses = {job_id: r.json() for job_id, r in responses.items() if r.status_code == 200}
        steps = {job_id: (s["status"], s["stage"], s["audio_done_s"]) for job_id, s in statuses.items()}
        if steps != seen:
            seen, last_step = steps, time.monotonic()
        if len(statuses) == len(job_ids) and all(s["status"] not in ("queued", "running") for s in statuses.values()):
            return statuses
        assert time.monotonic() - last_step < STALL_S, (steps, server.log()[-4000:])
        time.sleep(0.3)


def _orphan_of_a_dead_instance(store_url: str, audio: Path, tmp_path: Path) -> str:
    """A job that another instance claimed and then died with: its heartbeat is gone, the job still running."""
    from isoscribe.service.job_store import JobOptions
    from isoscribe.service.job_store_redis import RedisJobStore

    copy = tmp_path / "orphan.wav"
    copy.write_bytes(audio.read_bytes())
    dead = RedisJobStore(store_url)
    job = dead.create(copy, JobOptions(model="whisper-1"))
    assert dead.claim_next().id == job.id
    dead.close()
    return job.id


def _readyz(server: ServerProcess) -> int:
    return httpx.get(f"{server.url}/readyz", timeout=10).status_code


def test_serve_with_a_job_store_that_does_not_answer_says_so_and_exits_1(tmp_path: Path) -> None:
    import os
    import socket
    import subprocess

    from asr_helpers import ISOSCRIBE

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISOSCRIBE_")} | {
        "ISOSCRIBE_SERVICE__EXECUTOR": "celery", "ISOSCRIBE_SERVICE__DATA_DIR": str(tmp_path / "data"),
        "ISOSCRIBE_CELERY__BROKER_URL": f"redis://127.0.0.1:{port}/0",
        "ISOSCRIBE_CELERY__RESULT_BACKEND": f"redis://:s3cret@127.0.0.1:{port}/1",
    }
    served = subprocess.run([str(ISOSCRIBE), "serve", "--port", "0"], capture_output=True, text=True, env=env,
                            timeout=120, cwd=tmp_path)
    assert served.returncode == 1, served.stderr
    assert f"isoscribe: the job store's Redis at redis://127.0.0.1:{port}/1 does not answer" in served.stderr
    assert "Traceback" not in served.stderr and "s3cret" not in served.stderr
