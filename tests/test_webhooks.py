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

from isoscribe.config import load_settings
from isoscribe.service.webhook_outbox import WebhookOutbox, webhook_secret
from isoscribe.webhooks import WebhookRefused, new_secret, post_json, post_json_async


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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
        "http://[2002:7f00:1::]/",  # 6to4 of 127.0.0.1
        "http://[64:ff9b::7f00:1]/", "http://[64:ff9b:1::a01:203]/",  # NAT64 of 127.0.0.1, 10.1.2.3
        "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",  # Teredo
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


def _documented_verify():
    """``verify_webhook`` exactly as the README shows it."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("<!-- webhook-verify -->", 1)[1].split("<!-- /webhook-verify -->", 1)[0]
    namespace: dict = {}
    exec(block.split("```python", 1)[1].split("```", 1)[0], namespace)  # noqa: S102 - our own README
    return namespace["verify_webhook"]


def test_a_delivery_verifies_with_the_documented_snippet(receiver: WebhookReceiver) -> None:
    secret = new_secret()
    asyncio.run(post_json_async(receiver.url, {"id": "job_1"}, allow_hosts=["127.0.0.1"], secret=secret,
                                message_id="msg_1"))
    verify = _documented_verify()
    headers, raw = receiver.headers[0], receiver.raw[0]
    assert headers["webhook-id"] == "msg_1" and verify(secret, headers, raw)
    assert not verify(secret, headers, raw.replace(b"job_1", b"job_2")), "a changed body must not verify"
    assert not verify(new_secret(), headers, raw), "another secret must not verify"


def test_a_trickling_receiver_is_cut_at_the_attempt_deadline() -> None:
    """Each byte comes well within a per-read timeout; the attempt's overall deadline still ends it."""
    trickler = WebhookReceiver(trickle_s=0.2)
    try:
        with pytest.raises(TimeoutError):
            asyncio.run(post_json_async(trickler.url, {"id": "job_1"}, allow_hosts=["127.0.0.1"], timeout_s=2))
        assert trickler.bodies == [{"id": "job_1"}]
    finally:
        trickler.close()


def test_the_outbox_retries_a_failed_delivery_under_the_same_id(tmp_path: Path) -> None:
    flaky = WebhookReceiver(fail_first=2)
    settings = load_settings(overrides={"service": {
        "data_dir": tmp_path, "webhook_allow_hosts": ["127.0.0.1"], "webhook_backoff_s": 0.05, "webhook_attempts": 3,
    }})

    async def deliver() -> None:
        outbox = WebhookOutbox(settings, webhook_secret(settings, tmp_path))
        outbox.start()
        outbox.put("job_1", flaky.url, {"id": "job_1"})
        while len(flaky.raw) < 3:
            await asyncio.sleep(0.05)
        await outbox.stop()

    try:
        asyncio.run(asyncio.wait_for(deliver(), 60))
        assert len({headers["webhook-id"] for headers in flaky.headers}) == 1 and len(flaky.raw) == 3
        assert (tmp_path / "webhook_secret").stat().st_mode & 0o077 == 0, "the made secret is private"
    finally:
        flaky.close()


def test_a_delivery_put_just_before_stop_still_goes_out_and_an_undelivered_one_is_logged(
    tmp_path: Path, receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings(overrides={"service": {
        "data_dir": tmp_path, "webhook_allow_hosts": ["127.0.0.1"], "webhook_backoff_s": 30, "webhook_timeout_s": 1,
    }})
    nobody = f"http://127.0.0.1:{_free_port()}/"

    async def stop_at_once() -> None:
        outbox = WebhookOutbox(settings, webhook_secret(settings, tmp_path))
        outbox.start()
        outbox.put("job_1", receiver.url, {"id": "job_1"})  # a job that finished during the drain
        outbox.put("job_2", nobody, {"id": "job_2"})  # refused, then a 30 s backoff: past the stop's wait
        await outbox.stop()

    asyncio.run(asyncio.wait_for(stop_at_once(), 60))
    assert receiver.bodies == [{"id": "job_1"}]
    assert "event=webhooks_dropped count=1" in caplog.text


@pytest.mark.slow
def test_a_trickling_webhook_receiver_does_not_hold_the_next_job(tmp_path: Path, shared_data: Path) -> None:
    trickler = WebhookReceiver(trickle_s=5)
    config = base_config(tmp_path / "data", webhook_allow_hosts=["127.0.0.1"], webhook_timeout_s=60, asr_workers=1)
    server = ServerProcess(tmp_path, config).start()
    audio = (shared_data / "jfk" / "jfk.wav").read_bytes()
    try:
        with server.client() as client:
            hooked = client.post("/v1/jobs", files={"file": ("jfk.wav", audio)}, data={"webhook_url": trickler.url})
            assert wait_for_job(client, hooked.json()["id"])["status"] == "succeeded"
            assert trickler.received.wait(30), "the webhook was sent"
            # The receiver now holds the delivery; the one job loop must take the next job regardless.
            second = client.post("/v1/jobs", files={"file": ("jfk.wav", audio)}).json()["id"]
            assert wait_for_job(client, second)["status"] == "succeeded"
    finally:
        trickler.close()
        assert server.stop() == 0, server.log()


@pytest.mark.slow
@pytest.mark.parametrize("allow", [False, True], ids=["default", "allowed"])
def test_server_job_webhook_to_loopback(tmp_path: Path, shared_data: Path, receiver: WebhookReceiver, allow: bool) -> None:
    service = {"webhook_allow_hosts": ["127.0.0.1"]} if allow else {}
    server = ServerProcess(tmp_path, base_config(tmp_path / "data", **service)).start()
    try:
        with server.client() as client, open(shared_data / "jfk" / "jfk.wav", "rb") as audio:
            created = client.post("/v1/jobs", files={"file": audio}, data={"webhook_url": receiver.url})
            if not allow:  # refused at submit, before any work
                assert created.status_code == 400 and created.json()["error"]["param"] == "webhook_url", created.text
                assert client.get("/v1/jobs").json()["data"] == []
                assert receiver.bodies == []
                return
            job_id = created.json()["id"]
            assert wait_for_job(client, job_id)["status"] == "succeeded"
        assert receiver.received.wait(30)
        assert [body["id"] for body in receiver.bodies] == [job_id]
        assert "webhook-signature" in receiver.headers[0]
    finally:
        assert server.stop() == 0, server.log()
