"""The service on the Celery executor keeps its jobs in Redis. Redis goes away under it and comes back:
the job loops log and back off instead of dying, /readyz says not ready meanwhile, and every job that
was submitted finishes, once."""

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
        time.sleep(OUTAGE_S)
        redis_server.start()
        with server.client() as client:
            deadline = time.monotonic() + 300
            statuses = {}
            while len(statuses) < JOBS:
                assert time.monotonic() < deadline, (statuses, server.log()[-4000:])
                for job_id in set(job_ids) - set(statuses):
                    status = client.get(f"/v1/jobs/{job_id}").json()
                    if status["status"] not in ("queued", "running"):
                        statuses[job_id] = status
                time.sleep(0.3)
        failures = {job_id: status["error"] for job_id, status in statuses.items() if status["status"] != "succeeded"}
        assert not failures, (failures, [line for line in server.log().splitlines() if "Error" in line][-20:])
        assert _readyz(server) == 200
        store = Redis.from_url(redis_server.url(1), decode_responses=True)
        assert store.scard("isoscribe:jobs:status:succeeded") == JOBS
        assert store.scard("isoscribe:jobs:status:queued") == store.scard("isoscribe:jobs:status:running") == 0
    finally:
        assert server.stop() == 0, server.log()[-4000:]
        worker.stop()
        redis_server.stop()
    assert "event=job_store_unreachable" in server.log() and "event=job_store_reachable" in server.log()


def _readyz(server: ServerProcess) -> int:
    return httpx.get(f"{server.url}/readyz", timeout=10).status_code
