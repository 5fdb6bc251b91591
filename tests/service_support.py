"""Helpers for the service tests: a real ``isoscribe serve`` subprocess on a free loopback port.

The launcher itself is the service benchmark's (``isoscribe.benchmarks.server``).
"""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from isoscribe.benchmarks import server as isoscribe_server

REPO = Path(__file__).resolve().parents[1]
STAGES_DIR = Path(__file__).resolve().parent / "stages"
FAULT_STAGE = "service_fault_speech"
API_KEY = "test-key"


class NoWorkers:
    """An executor for an in-process app whose tests never run a stage."""

    def submit(self, stage, request, on_event=None):
        raise AssertionError(f"no stage should run here (asked for {stage})")

    def cancel(self, future) -> bool:
        return False

    def shutdown(self) -> None:
        pass


def base_config(data_dir: Path, **service: Any) -> dict[str, dict[str, Any]]:
    return {
        "asr": {"model": "tiny.en", "device": "cpu", "cpu_threads": 1},
        "diarization": {"device": "cpu"},
        "isolation": {"prespawn": True, "max_tasks_per_worker": 50},
        "service": {"data_dir": data_dir, "api_key": API_KEY, "asr_workers": 1, **service},
    }


class ServerProcess(isoscribe_server.ServerProcess):
    """The real server, run from the repo with the test stages importable; ``client`` carries the API key."""

    def __init__(self, tmp_path: Path, config: dict[str, dict[str, Any]], env: dict[str, str] | None = None) -> None:
        stages_path = os.pathsep.join([str(STAGES_DIR), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        super().__init__(tmp_path, config, env={"PYTHONPATH": stages_path, **(env or {})}, cwd=REPO)

    def client(self, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=kwargs.pop("timeout", 300), **kwargs)


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        if series.split("{")[0] != name:
            continue
        if all(f'{key}="{val}"' in series for key, val in labels.items()):
            total += float(value)
    return total


class WebhookReceiver:
    """A loopback HTTP server that records what is POSTed to it (JSON bodies, raw bodies, headers).

    ``trickle_s``: answer one byte of the status line per ``trickle_s`` seconds, forever (a receiver
    that holds a sender without ever timing out a per-read deadline); ``fail_first``: answer 503 to that
    many deliveries first."""

    def __init__(self, trickle_s: float | None = None, fail_first: int = 0) -> None:
        self.bodies: list[dict] = []
        self.raw: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        self.received = threading.Event()
        self.stopping = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("content-length", 0))
                raw = self.rfile.read(length)
                receiver.raw.append(raw)
                receiver.headers.append({k.lower(): v for k, v in self.headers.items()})
                receiver.bodies.append(json.loads(raw))
                receiver.received.set()
                if trickle_s is not None:
                    while not receiver.stopping.wait(trickle_s):
                        self.wfile.write(b"H")
                        self.wfile.flush()
                    return
                self.send_response(503 if len(receiver.raw) <= fail_first else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


def wait_for_job(client: httpx.Client, job_id: str, timeout_s: float = 300) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = client.get(f"/v1/jobs/{job_id}").json()
        if status["status"] in ("succeeded", "failed", "cancelled"):
            return status
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} not finished within {timeout_s} s: {status}")


def words(text: str) -> list[str]:
    return "".join(ch if ch.isalnum() or ch.isspace() else " " for ch in text.lower()).split()
