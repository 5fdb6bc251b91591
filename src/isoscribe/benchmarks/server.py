"""A real ``isoscribe serve`` subprocess on a free loopback port, for the service benchmark and tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

__all__ = ["ServerProcess", "free_port", "write_config"]


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


class ServerProcess:
    """``python -m isoscribe.cli --config … serve`` with its log in a file; ``stop`` sends SIGTERM.

    The server sees this process's environment without ISOSCRIBE_* variables, plus ``env``.
    """

    def __init__(
        self,
        tmp_path: Path,
        config: dict[str, dict[str, Any]],
        env: dict[str, str] | None = None,
        log_level: str | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = write_config(tmp_path / f"isoscribe-{self.port}.toml", config)
        api_key = config.get("service", {}).get("api_key")
        self.auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        """/metrics needs a key unless ``public_metrics``."""
        self.log_path = tmp_path / f"server-{self.port}.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ISOSCRIBE_")}
        self.env.update(env or {})
        self.log_level = log_level
        self.cwd = cwd
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout_s: float = 180) -> ServerProcess:
        command = [sys.executable, "-m", "isoscribe.cli", "--config", str(self.config_path)]
        if self.log_level:
            command += ["--log-level", self.log_level]
        command += ["serve", "--host", "127.0.0.1", "--port", str(self.port)]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT)
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
        """SIGTERM and wait; the exit code (-9 when it did not drain in time and was killed)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.process.returncode

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:] if self.log_path.exists() else ""

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", headers=self.auth, timeout=10).text
