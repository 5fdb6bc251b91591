"""SIGTERM with hung work: open requests and running jobs share one drain time, then their workers are
killed, unfinished jobs go back to the queue, and the server exits 0 after one drain time, not two.

The drain time is long enough that "side by side" (one drain time plus the teardown) and "one after the
other" (two drain times) cannot be mistaken for each other on a slow or loaded machine."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest
from service_support import FAULT_STAGE, ServerProcess, base_config

pytestmark = pytest.mark.slow

DRAIN_S = 10.0


def test_sigterm_with_a_hung_request_and_a_hung_job_share_one_drain_time(
    tmp_path: Path, shared_data: Path
) -> None:
    config = base_config(tmp_path / "data", asr_workers=2, drain_timeout_s=DRAIN_S)
    config["isolation"]["speech_stage"] = FAULT_STAGE
    markers = tmp_path / "markers"
    markers.mkdir()
    server = ServerProcess(tmp_path, config, env={"SERVICE_TEST_MARKERS": str(markers)}).start()
    audio = (shared_data / "jfk" / "jfk.wav").read_bytes()
    hung = {"prompt": "hang"}
    try:
        with server.client() as client:
            job_id = client.post("/v1/jobs", files={"file": ("jfk.wav", audio)}, data=hung).json()["id"]
            request = threading.Thread(
                target=lambda: _post_quietly(server, audio, hung), daemon=True
            )
            request.start()
            deadline = time.monotonic() + 60
            while len(list(markers.iterdir())) < 2:
                assert time.monotonic() < deadline, server.log()
                time.sleep(0.1)
    except BaseException:
        server.kill()
        raise
    started = time.monotonic()
    exit_code = server.stop(timeout_s=3 * DRAIN_S + 10)
    elapsed_s = time.monotonic() - started
    assert exit_code == 0, server.log()
    assert DRAIN_S <= elapsed_s < 2 * DRAIN_S, (elapsed_s, server.log()[-3000:])
    with sqlite3.connect(tmp_path / "data" / "jobs.sqlite3") as db:
        assert db.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()[0] == "queued"


def _post_quietly(server: ServerProcess, audio: bytes, data: dict) -> None:
    try:
        with server.client(timeout=60) as client:
            client.post("/v1/audio/transcriptions", files={"file": ("jfk.wav", audio)}, data=data)
    except httpx.HTTPError:
        pass  # the server goes away under it: that is the point
