"""Helpers for the service tests: a real ``isoscribe serve`` subprocess on a free loopback port.

(Named test_service_* so that it sits with the tests it serves; it defines no tests itself.)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
STAGES_DIR = Path(__file__).resolve().parent / "stages"
FAULT_STAGE = "service_fault_speech"
API_KEY = "test-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_config(path: Path, sections: dict[str, dict[str, Any]]) -> Path:
    """A TOML file from ``{"section": {"key": value}}``; JSON scalars are valid TOML scalars."""
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {json.dumps(str(v) if isinstance(v, Path) else v)}" for key, v in values.items())
    path.write_text("\n".join(lines) + "\n")
    return path


def base_config(data_dir: Path, **service: Any) -> dict[str, dict[str, Any]]:
    return {
        "asr": {"model": "tiny.en", "device": "cpu", "cpu_threads": 1},
        "diarization": {"device": "cpu"},
        "isolation": {"prespawn": True, "max_tasks_per_worker": 50},
        "service": {"data_dir": data_dir, "api_key": API_KEY, **service},
    }


class ServerProcess:
    """``python -m isoscribe.cli --config … serve`` with its log in a file; ``stop`` sends SIGTERM."""

    def __init__(self, tmp_path: Path, config: dict[str, dict[str, Any]], env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = write_config(tmp_path / f"isoscribe-{self.port}.toml", config)
        self.log_path = tmp_path / f"server-{self.port}.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ISOSCRIBE_")}
        self.env["PYTHONPATH"] = os.pathsep.join([str(STAGES_DIR), self.env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        self.env.update(env or {})
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 180) -> ServerProcess:
        command = [
            sys.executable,
            "-m",
            "isoscribe.cli",
            "--config",
            str(self.config_path),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.kill()
        raise RuntimeError(f"server not ready within {timeout_s} s:\n{self.log()}")

    def stop(self, timeout_s: float = 60) -> int:
        """SIGTERM and wait; the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:] if self.log_path.exists() else ""

    def client(self, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=kwargs.pop("timeout", 300), **kwargs)

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=10).text


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
    """A loopback HTTP server that records the JSON bodies POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.received = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("content-length", 0))
                receiver.bodies.append(json.loads(self.rfile.read(length)))
                receiver.received.set()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
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
