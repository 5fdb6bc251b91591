"""Crash containment, leak containment and idle recycling of the service's speech pool.

The server runs the real speech stage wrapped by tests/stages/service_fault_speech.py: every task
leaks 50 MB of native memory in its worker, and a prompt containing "segfault" kills the worker.
"""

from __future__ import annotations

import concurrent.futures
import time
from pathlib import Path

import httpx
import psutil
import pytest
from isolation_support import wait_for
from service_support import FAULT_STAGE, ServerProcess, base_config, metric_value, words

pytestmark = pytest.mark.slow

LEAK_MB = 50
LEAK_REQUESTS = 100
IDLE_TTL_S = 3


@pytest.fixture(scope="module")
def hang_markers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the fault stage touches ``hang-PID`` once a hanging task runs in worker PID."""
    return tmp_path_factory.mktemp("hang-markers")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, hang_markers: Path):
    tmp_path = tmp_path_factory.mktemp("service-faults")
    config = base_config(tmp_path / "data", asr_workers=2, queue_size=8)
    config["asr"].update(beam_size=1, temperatures=[0.0])  # greedy: the 100-request leak test stays short
    config["isolation"].update(
        speech_stage=FAULT_STAGE, max_tasks_per_worker=10, max_rss_mb=1500, idle_ttl_s=IDLE_TTL_S
    )
    env = {"SERVICE_TEST_LEAK_MB": str(LEAK_MB), "SERVICE_TEST_MARKERS": str(hang_markers)}
    running = ServerProcess(tmp_path, config, env=env).start()
    yield running
    assert running.stop() == 0, running.log()


def _transcribe(server: ServerProcess, audio: bytes, prompt: str | None = None) -> httpx.Response:
    data = {"prompt": prompt} if prompt else {}
    with server.client() as client:
        return client.post("/v1/audio/transcriptions", files={"file": ("clip.wav", audio)}, data=data)


def test_segfaulting_worker_fails_only_its_request(server: ServerProcess, shared_data: Path) -> None:
    audio = (shared_data / "jfk" / "jfk.wav").read_bytes()
    prompts = [None, "segfault", None]
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        responses = list(pool.map(lambda prompt: _transcribe(server, audio, prompt), prompts))
    crashed = responses[1]
    assert crashed.status_code == 500, crashed.text
    error = crashed.json()["error"]
    assert error["code"] == "worker_crashed" and "signal 11" in error["message"]
    for response in (responses[0], responses[2]):
        assert response.status_code == 200, response.text
        assert "country" in words(response.json()["text"])
    healed = _transcribe(server, audio)
    assert healed.status_code == 200 and "country" in words(healed.json()["text"])
    metrics = server.metrics()
    assert metric_value(metrics, "isoscribe_worker_crashes_total", stage="speech") >= 1
    assert metric_value(metrics, "isoscribe_workers", stage="speech") >= 1


def test_cancelling_a_running_job_kills_its_worker(server: ServerProcess, hang_markers: Path, shared_data: Path) -> None:
    audio = (shared_data / "jfk" / "jfk.wav").read_bytes()
    before = metric_value(server.metrics(), "isoscribe_worker_exits_total", reason="cancelled")
    with server.client() as client:
        job_id = client.post("/v1/jobs", files={"file": ("jfk.wav", audio)}, data={"prompt": "hang"}).json()["id"]
        assert wait_for(lambda: any(hang_markers.glob("hang-*")), timeout_s=300), "the hanging task never reached a worker"
        assert client.delete(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"
        deadline = time.monotonic() + 30
        while metric_value(server.metrics(), "isoscribe_worker_exits_total", reason="cancelled") == before:
            assert time.monotonic() < deadline, "the hanging worker was not killed"
            time.sleep(0.2)
        assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"
    healed = _transcribe(server, audio)
    assert healed.status_code == 200 and "country" in words(healed.json()["text"])


def test_leaking_stage_leaves_server_rss_flat(server: ServerProcess, shared_data: Path) -> None:
    """100 requests, each leaking 50 MB in its worker: workers are recycled, the server stays flat."""
    audio = (shared_data / "librivox" / "sense_and_sensibility_01_austen_64kb-0880.wav").read_bytes()
    assert _transcribe(server, audio).status_code == 200  # warm-up: first-request allocations happen here
    server_process = psutil.Process(server.process.pid)
    start_rss_mb = server_process.memory_info().rss / 2**20
    exits_before = metric_value(server.metrics(), "isoscribe_worker_exits_total", reason="max_tasks")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        codes = list(pool.map(lambda _: _transcribe(server, audio).status_code, range(LEAK_REQUESTS)))
    end_rss_mb = server_process.memory_info().rss / 2**20
    assert codes.count(200) == LEAK_REQUESTS, codes
    exits = metric_value(server.metrics(), "isoscribe_worker_exits_total", reason="max_tasks") - exits_before
    assert exits >= LEAK_REQUESTS // 20, f"only {exits} workers recycled"
    print(f"server RSS {start_rss_mb:.1f} MB -> {end_rss_mb:.1f} MB after {LEAK_REQUESTS} requests; {exits:.0f} recycles")
    assert end_rss_mb - start_rss_mb < 30, f"server RSS {start_rss_mb:.0f} MB → {end_rss_mb:.0f} MB"


def test_idle_worker_is_recycled_after_ttl(server: ServerProcess, shared_data: Path) -> None:
    audio = (shared_data / "librivox" / "sense_and_sensibility_01_austen_64kb-0880.wav").read_bytes()
    before = metric_value(server.metrics(), "isoscribe_worker_exits_total", reason="idle")
    assert _transcribe(server, audio).status_code == 200
    deadline = time.monotonic() + IDLE_TTL_S + 30
    while time.monotonic() < deadline:
        if metric_value(server.metrics(), "isoscribe_worker_exits_total", reason="idle") > before:
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"no idle recycle within {IDLE_TTL_S + 30} s:\n{server.metrics()}")
    assert _transcribe(server, audio).status_code == 200


def test_crash_is_retried_once_when_configured(tmp_path: Path, shared_data: Path) -> None:
    config = base_config(tmp_path / "data", asr_workers=1, retry_crashed=True)
    config["isolation"]["speech_stage"] = FAULT_STAGE
    server = ServerProcess(tmp_path, config).start()
    try:
        response = _transcribe(server, (shared_data / "jfk" / "jfk.wav").read_bytes(), prompt="segfault")
        metrics = server.metrics()
    finally:
        assert server.stop() == 0, server.log()
    assert response.status_code == 500 and response.json()["error"]["code"] == "worker_crashed"
    assert metric_value(metrics, "isoscribe_crash_retries_total") == 1
    assert metric_value(metrics, "isoscribe_worker_crashes_total", stage="speech") == 2
