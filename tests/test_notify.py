"""Completion notification against a real SMTP server (aiosmtpd) and a real local HTTP receiver."""

from __future__ import annotations

import email
import json
import re
import shutil
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from isoscribe.benchmarks.server import free_port
from isoscribe.config import load_settings
from isoscribe.notify import notify_completion
from isoscribe.report import BatchReport, FileReport, render_markdown, write_report


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []
        self.envelopes = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        self.envelopes.append(envelope)
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def smtp_server():
    inbox = _Inbox()
    logins: list[tuple[str, str]] = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword):
            logins.append((auth_data.login.decode(), auth_data.password.decode()))
            return AuthResult(success=auth_data.password == b"s3cret")
        return AuthResult(success=False)

    controller = Controller(
        inbox, hostname="127.0.0.1", port=free_port(), authenticator=authenticator, auth_require_tls=False
    )
    controller.start()
    inbox.port = controller.port
    inbox.logins = logins
    yield inbox
    controller.stop()


@pytest.fixture
def report_files(tmp_path: Path) -> tuple[BatchReport, dict[str, Path]]:
    report = BatchReport(
        out_dir=str(tmp_path),
        files=[
            FileReport("/audio/a.wav", "a", "done", 1, stages={"speech": {"wall_s": 1.0, "peak_rss_mb": 400.0}}),
            FileReport("/audio/b.wav", "b", "done", 1, warning="summary failed, left empty"),
            FileReport("/audio/bad.wav", "bad", "failed", 1, error="StageError in stage speech: AudioError: cannot decode"),
            FileReport("/audio/old.wav", "old", "skipped", 1),
        ],
        started_at="2026-01-01T00:00:00+00:00",
        wall_s=12.5,
        isolation="pooled",
        executor="local",
        workers=1,
        budget_mb=8000.0,
        stage_peaks_mb={"speech": 500.0, "summary": 400.0},
        peak_tree_mb=950.0,
        peak_parent_mb=120.0,
        memory_samples=[(0.0, 100.0, 100.0), (1.0, 600.0, 110.0), (2.0, 120.0, 115.0)],
    )
    return report, write_report(report, tmp_path)


def test_email_reaches_a_real_smtp_server_with_counts_failures_and_report(
    smtp_server, report_files, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ISOSCRIBE_NOTIFY__SMTP_PASSWORD", "s3cret")
    settings = load_settings(overrides={"notify": {
        "smtp_host": "127.0.0.1", "smtp_port": smtp_server.port, "smtp_security": "none",
        "smtp_user": "batch", "recipients": ["ops@example.org", "lead@example.org"],
    }})
    report, paths = report_files
    assert notify_completion(settings.notify, report, paths) == {"email": True}
    assert smtp_server.logins == [("batch", "s3cret")]
    [message] = smtp_server.messages
    assert sorted(smtp_server.envelopes[0].rcpt_tos) == ["lead@example.org", "ops@example.org"]
    assert message["Subject"] == "isoscribe batch finished: 2 done, 1 failed, 1 skipped"
    body = next(part for part in message.walk() if part.get_content_type() == "text/plain").get_payload(decode=True).decode()
    assert "done: 2; failed: 1; skipped: 1" in body
    assert "/audio/bad.wav: StageError in stage speech: AudioError: cannot decode" in body
    attachments = {part.get_filename(): part for part in message.walk() if part.get_filename()}
    assert set(attachments) == {"report.json", "report.md", "memory.png"}
    attached = json.loads(attachments["report.json"].get_payload(decode=True))
    assert attached["counts"] == {"total": 4, "done": 2, "failed": 1, "skipped": 1}
    assert attachments["memory.png"].get_payload(decode=True).startswith(b"\x89PNG")


def test_a_refused_login_is_logged_and_not_raised(smtp_server, report_files, caplog) -> None:
    settings = load_settings(overrides={"notify": {
        "smtp_host": "127.0.0.1", "smtp_port": smtp_server.port, "smtp_security": "none",
        "smtp_user": "batch", "smtp_password": "wrong", "recipients": ["ops@example.org"], "timeout_s": 3,
    }})
    assert notify_completion(settings.notify, *report_files) == {"email": False}
    assert smtp_server.messages == []
    assert "event=notify_failed channel=email" in caplog.text


def test_unreachable_smtp_server_does_not_raise(report_files, caplog) -> None:
    settings = load_settings(overrides={"notify": {
        "smtp_host": "127.0.0.1", "smtp_port": free_port(), "smtp_security": "starttls",
        "recipients": ["ops@example.org"], "timeout_s": 5,
    }})
    assert notify_completion(settings.notify, *report_files) == {"email": False}
    assert "ConnectionRefusedError" in caplog.text


def _self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, signed by its own key; returns (cert, key) PEM files."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("the openssl command is needed to make the test certificate (apt-get install openssl)")
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "1", "-subj", "/CN=isoscribe test SMTP", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key_path), "-out", str(cert_path)],
        check=True, capture_output=True,
    )
    return cert_path, key_path


class _TlsInbox(_Inbox):
    """Records whether each message came over TLS: STARTTLS sets ``session.ssl``; implicit TLS has an SSL transport."""

    def __init__(self) -> None:
        super().__init__()
        self.encrypted: list[bool] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        self.encrypted.append(session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture(params=["starttls", "ssl"])
def tls_smtp_server(request, tmp_path: Path):
    """STARTTLS required before MAIL (and AUTH), or implicit TLS from the first byte."""
    cert_path, key_path = _self_signed_certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    inbox = _TlsInbox()
    logins: list[str] = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        logins.append(auth_data.login.decode())
        return AuthResult(success=auth_data.password == b"s3cret")

    if request.param == "starttls":
        tls = {"tls_context": context, "require_starttls": True}
    else:  # aiosmtpd counts only STARTTLS as TLS for AUTH; this connection is TLS from its first byte
        tls = {"ssl_context": context, "auth_require_tls": False}
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port(), authenticator=authenticator, **tls)
    controller.start()
    inbox.port, inbox.security, inbox.ca_file, inbox.logins = controller.port, request.param, cert_path, logins
    yield inbox
    controller.stop()


def test_email_over_tls_verifies_the_certificate_against_the_configured_ca(tls_smtp_server, report_files) -> None:
    notify = {
        "smtp_host": "127.0.0.1", "smtp_port": tls_smtp_server.port, "smtp_security": tls_smtp_server.security,
        "smtp_user": "batch", "smtp_password": "s3cret", "recipients": ["ops@example.org"], "timeout_s": 10,
    }
    trusted = load_settings(overrides={"notify": {**notify, "smtp_ca_file": str(tls_smtp_server.ca_file)}})
    assert notify_completion(trusted.notify, *report_files) == {"email": True}
    assert tls_smtp_server.encrypted == [True]
    assert tls_smtp_server.logins == ["batch"], "the login went over the encrypted connection"
    assert tls_smtp_server.messages[0]["Subject"].startswith("isoscribe batch finished")


def test_email_over_tls_refuses_an_untrusted_certificate(tls_smtp_server, report_files, caplog) -> None:
    settings = load_settings(overrides={"notify": {
        "smtp_host": "127.0.0.1", "smtp_port": tls_smtp_server.port, "smtp_security": tls_smtp_server.security,
        "smtp_user": "batch", "smtp_password": "s3cret", "recipients": ["ops@example.org"], "timeout_s": 10,
    }})
    assert notify_completion(settings.notify, *report_files) == {"email": False}
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text
    assert tls_smtp_server.messages == [] and tls_smtp_server.logins == []


def test_nothing_configured_sends_nothing(report_files) -> None:
    assert notify_completion(load_settings().notify, *report_files) == {}


def test_recipients_without_a_server_are_a_logged_failure_not_silence(report_files, caplog) -> None:
    settings = load_settings(overrides={"notify": {"recipients": ["ops@example.org"]}})
    assert notify_completion(settings.notify, *report_files) == {"email": False}
    assert "event=notify_failed channel=email" in caplog.text and "smtp_host" in caplog.text


class _Receiver(BaseHTTPRequestHandler):
    received: list[dict] = []
    status = 204

    def do_POST(self) -> None:  # noqa: N802 (http.server's hook name)
        length = int(self.headers["Content-Length"])
        type(self).received.append(json.loads(self.rfile.read(length)))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def http_receiver():
    _Receiver.received = []
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_webhook_posts_the_report_json(http_receiver, report_files) -> None:
    _Receiver.status = 204
    url = f"http://127.0.0.1:{http_receiver.server_port}/hook"
    settings = load_settings(overrides={"notify": {"webhook_url": url}})
    assert notify_completion(settings.notify, *report_files) == {"webhook": True}
    [payload] = _Receiver.received
    assert payload["counts"]["failed"] == 1
    assert payload["files"][2]["error"].startswith("StageError")


def test_webhook_error_status_is_logged_not_raised(http_receiver, report_files, caplog) -> None:
    _Receiver.status = 500
    url = f"http://127.0.0.1:{http_receiver.server_port}/hook"
    settings = load_settings(overrides={"notify": {"webhook_url": url}})
    assert notify_completion(settings.notify, *report_files) == {"webhook": False}
    assert "event=notify_failed channel=webhook" in caplog.text


def test_the_markdown_report_keeps_odd_file_names_in_their_cells(report_files) -> None:
    report, _ = report_files
    report.files.append(FileReport("/audio/a|b *draft*.wav", "a-b", "interrupted", 1))
    table_row = next(line for line in render_markdown(report).splitlines() if "draft" in line)
    assert table_row.startswith("| a\\|b \\*draft\\*.wav | interrupted |") and len(re.findall(r"(?<!\\)\|", table_row)) == 10
    assert "skipped (done before) 1, interrupted 1" in render_markdown(report)
