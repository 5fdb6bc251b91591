"""Job webhooks cannot reach the server's own network: real loopback receivers, a real server."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from service_support import ServerProcess, WebhookReceiver, base_config, wait_for_job

from isoscribe.webhooks import WebhookRefused, post_json, post_json_async


@pytest.fixture
def receiver():
    hook = WebhookReceiver()
    yield hook
    hook.close()


def test_loopback_is_refused_by_default_and_never_contacted(receiver: WebhookReceiver) -> None:
    for url in (receiver.url, receiver.url.replace("127.0.0.1", "localhost")):
        with pytest.raises(WebhookRefused, match="non-public address 127.0.0.1"):
            post_json(url, {"id": 1})
    with pytest.raises(WebhookRefused):
        asyncio.run(post_json_async(receiver.url, {"id": 1}))
    assert receiver.bodies == []


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata (link-local)
        "http://10.1.2.3/", "http://192.168.0.1/", "http://172.16.0.1/", "http://100.64.0.1/",
        "http://0.0.0.0:80/", "http://[::1]/", "http://[fe80::1]/", "http://[::ffff:127.0.0.1]/",
        "http://224.0.0.1/", "http://240.0.0.1/", "ftp://example.org/", "http:///nohost",
    ],
)
def test_internal_and_malformed_targets_are_refused(url: str) -> None:
    with pytest.raises(WebhookRefused):
        post_json(url, {}, timeout_s=1)


def test_allowed_host_is_delivered(receiver: WebhookReceiver) -> None:
    response = post_json(receiver.url, {"id": "job_1"}, allow_hosts=["127.0.0.1"])
    assert response.status_code == 204 and receiver.bodies == [{"id": "job_1"}]
    response = asyncio.run(post_json_async(receiver.url, {"id": "job_2"}, allow_hosts=["127.0.0.1"]))
    assert response.status_code == 204 and receiver.bodies[-1] == {"id": "job_2"}


def test_the_checked_address_is_the_one_connected(receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    """One resolution: a name answered once with 127.0.0.1 reaches the receiver with its own Host header."""
    lookups: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host == "hooks.example.test":
            lookups.append(host)
            return real_getaddrinfo("127.0.0.1", *args, **kwargs)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    url = receiver.url.replace("127.0.0.1", "hooks.example.test")
    with pytest.raises(WebhookRefused):
        post_json(url, {"id": 1})
    lookups.clear()
    assert post_json(url, {"id": 2}, allow_hosts=["HOOKS.example.test"]).status_code == 204
    assert receiver.bodies == [{"id": 2}]
    assert lookups == ["hooks.example.test"], "resolved once, by the check, not again by the HTTP client"


class _Redirector(BaseHTTPRequestHandler):
    target = ""

    def do_POST(self) -> None:  # noqa: N802 (http.server's hook name)
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(307)
        self.send_header("Location", type(self).target)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_redirects_are_not_followed(receiver: WebhookReceiver) -> None:
    _Redirector.target = receiver.url
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        response = post_json(url, {"id": 1}, allow_hosts=["127.0.0.1"])
    finally:
        server.shutdown()
        server.server_close()
    assert response.status_code == 307
    assert receiver.bodies == [], "the redirect target was not called"


@pytest.mark.slow
@pytest.mark.parametrize("allow", [False, True], ids=["default", "allowed"])
def test_server_job_webhook_to_loopback(tmp_path: Path, shared_data: Path, receiver: WebhookReceiver, allow: bool) -> None:
    service = {"webhook_allow_hosts": ["127.0.0.1"]} if allow else {}
    server = ServerProcess(tmp_path, base_config(tmp_path / "data", **service)).start()
    try:
        with server.client() as client, open(shared_data / "jfk" / "jfk.wav", "rb") as audio:
            job_id = client.post("/v1/jobs", files={"file": audio}, data={"webhook_url": receiver.url}).json()["id"]
            assert wait_for_job(client, job_id)["status"] == "succeeded"
        if allow:
            assert receiver.received.wait(30)
            assert [body["id"] for body in receiver.bodies] == [job_id]
        else:
            deadline = time.monotonic() + 30
            while "event=webhook_refused" not in server.log() and time.monotonic() < deadline:
                time.sleep(0.2)
            assert f"event=webhook_refused id={job_id}" in server.log()
            assert receiver.bodies == []
    finally:
        assert server.stop() == 0, server.log()
