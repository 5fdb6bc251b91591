"""Upload limits that hold while the body arrives, against a real uvicorn server (in a thread, no model
workers) and raw sockets, so that a test can stall, trickle or stop sending mid-body."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import uvicorn

from service_support import NoWorkers

from isoscribe.benchmarks.server import free_port
from isoscribe.config import load_settings
from isoscribe.service.app import create_app

BOUNDARY = "limits-boundary"


class _Server:
    def __init__(self, tmp_path: Path, **service) -> None:
        overrides = {"data_dir": tmp_path, "asr_workers": 1, "queue_size": 1, **service}
        self.port = free_port()
        app = create_app(load_settings(overrides={"service": overrides}), NoWorkers())
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    def open(self, path: str, content_length: int) -> socket.socket:
        """A connection that has sent a multipart POST's headers and nothing of its body yet."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=60)
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {content_length}\r\n\r\n".encode()
        )
        return sock


def _field(name: str, value: bytes) -> bytes:
    return f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value + b"\r\n"


def _file_head() -> bytes:
    return f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'.encode()


def _status(sock: socket.socket) -> int:
    """The status code of the answer (the socket's 60 s timeout fails a server that never answers)."""
    head = b""
    while b"\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, f"connection closed without an answer: {head!r}"
        head += chunk
    return int(head.split(b" ", 2)[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[_Server]:
    with _Server(tmp_path, upload_idle_timeout_s=2) as running:
        yield running


def test_65_voice_sample_fields_are_400_without_the_server_growing(server: _Server) -> None:
    sample = b"data:audio/wav;base64," + b"A" * 1_000_000
    fields = [_field("known_speaker_names[]", f"name{i}".encode()) for i in range(65)]
    samples = [_field("known_speaker_references[]", sample) for _ in range(65)]
    size = sum(map(len, fields)) + len(samples) * len(samples[0]) + len(_file_head()) + 4
    process = psutil.Process()
    before_mb = process.memory_info().rss / 1e6
    peak_mb = before_mb
    sock = server.open("/v1/jobs", size)
    try:
        sock.sendall(b"".join(fields))
        for part in samples:
            try:
                sock.sendall(part)
            except OSError:  # the server answered and closed: the rest is not read
                break
            peak_mb = max(peak_mb, process.memory_info().rss / 1e6)
        assert _status(sock) == 400
    finally:
        sock.close()
    assert peak_mb - before_mb < 10, f"RSS grew {peak_mb - before_mb:.1f} MB"


def test_a_slow_upload_is_cut_off_at_the_read_deadline(server: _Server) -> None:
    sock = server.open("/v1/audio/transcriptions", 10_000_000)
    try:
        sock.sendall(_file_head() + b"RIFF")  # then nothing: a sender that stalls
        assert _status(sock) == 408
    finally:
        sock.close()
    # Its admission slot was given back: with one slot per (queue_size + asr_workers), more uploads get in.
    for _ in range(3):
        probe = server.open("/v1/jobs", 100)
        try:
            probe.sendall(_field("temperature", b"9"))
            probe.sendall(_file_head())
            assert _status(probe) == 400
        finally:
            probe.close()


def test_parameters_that_come_first_are_checked_before_the_file_is_stored(server: _Server, tmp_path: Path) -> None:
    sock = server.open("/v1/jobs", 50_000_000)
    try:
        sock.sendall(_field("temperature", b"9") + _file_head() + b"RIFF" * 1000)
        assert _status(sock) == 400, "answered while the file was still coming"
    finally:
        sock.close()
    assert list((tmp_path / "job-audio").iterdir()) == []


def test_job_uploads_are_admitted_like_requests(server: _Server) -> None:
    """queue_size 1 + 1 worker: two uploads in progress take both slots; a third is turned away at once."""
    held = [server.open("/v1/jobs", 10_000_000) for _ in range(2)]
    try:
        for sock in held:
            sock.sendall(_file_head() + b"RIFF")
        pipelines = server.server.config.app.state.service.pipelines
        deadline = time.monotonic() + 30
        while pipelines.in_flight < 2:  # both reach the server and are admitted before the third arrives
            assert time.monotonic() < deadline, "the two uploads were not admitted"
            time.sleep(0.05)
        third = server.open("/v1/jobs", 10_000_000)
        try:
            third.sendall(_file_head())
            assert _status(third) == 429
        finally:
            third.close()
    finally:
        for sock in held:
            sock.close()
