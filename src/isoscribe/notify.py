"""Completion notification: an email over SMTP and an optional webhook POST of the report JSON.

A notification that fails is logged and never fails the batch.
"""

from __future__ import annotations

import json
import logging
import smtplib
import ssl
from email.message import EmailMessage
from pathlib import Path

import httpx

from isoscribe.config import NotifySettings
from isoscribe.logs import log_event
from isoscribe.report import BatchReport

__all__ = ["notify_completion", "build_email", "send_email", "post_webhook"]

log = logging.getLogger("isoscribe.notify")

_ATTACHMENTS = (("json", "application", "json"), ("md", "text", "markdown"), ("png", "image", "png"))
"""Report files attached to the email: (report_paths key, MIME main type, subtype)."""


def notify_completion(settings: NotifySettings, report: BatchReport, report_paths: dict[str, Path]) -> dict[str, bool]:
    """Send what is configured; returns which channels succeeded (absent: not configured)."""
    sent: dict[str, bool] = {}
    if settings.recipients and settings.smtp_host:
        sent["email"] = _guarded("email", lambda: send_email(settings, build_email(settings, report, report_paths)))
    elif settings.recipients:
        log_event(log, "notify_failed", logging.WARNING, channel="email", error="no notify.smtp_host to send it with")
        sent["email"] = False
    if settings.webhook_url:
        sent["webhook"] = _guarded("webhook", lambda: post_webhook(settings, report))
    return sent


def _guarded(channel: str, send) -> bool:
    try:
        send()
    except Exception as exc:  # any failure to notify is reported, never raised
        log_event(log, "notify_failed", logging.WARNING, channel=channel, error=f"{type(exc).__name__}: {exc}")
        return False
    log_event(log, "notify_sent", channel=channel)
    return True


def build_email(settings: NotifySettings, report: BatchReport, report_paths: dict[str, Path]) -> EmailMessage:
    counts = report.counts
    message = EmailMessage()
    message["Subject"] = (
        f"isoscribe batch finished: {counts['done']} done, {counts['failed']} failed, {counts['skipped']} skipped"
    )
    message["From"] = settings.sender
    message["To"] = ", ".join(settings.recipients)
    body = [
        f"Batch in {report.out_dir} finished in {report.wall_s:.1f} s.",
        f"Files: {counts['total']}; done: {counts['done']}; failed: {counts['failed']}; skipped: {counts['skipped']}.",
        "",
    ]
    if report.failures:
        body.append("Failures:")
        body += [f"- {item.input_path}: {(item.error or '').partition(chr(10))[0]}" for item in report.failures]
        body.append("")
    markdown = report_paths.get("md")
    if markdown is not None and markdown.is_file():
        body += ["Report:", "", markdown.read_text(encoding="utf-8")]
    message.set_content("\n".join(body))
    for kind, maintype, subtype in _ATTACHMENTS:
        path = report_paths.get(kind)
        if path is not None and path.is_file():
            message.add_attachment(path.read_bytes(), maintype=maintype, subtype=subtype, filename=path.name)
    return message


def send_email(settings: NotifySettings, message: EmailMessage) -> None:
    host, port, timeout = settings.smtp_host, settings.smtp_port, settings.timeout_s
    if settings.smtp_security == "ssl":
        client: smtplib.SMTP = smtplib.SMTP_SSL(host, port, timeout=timeout, context=_tls_context(settings))
    else:
        client = smtplib.SMTP(host, port, timeout=timeout)
    with client:
        if settings.smtp_security == "starttls":
            client.starttls(context=_tls_context(settings))
        if settings.smtp_user:
            password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
            client.login(settings.smtp_user, password)
        client.send_message(message)


def _tls_context(settings: NotifySettings) -> ssl.SSLContext:
    """Certificate and host name verified, against ``smtp_ca_file`` when set."""
    return ssl.create_default_context(cafile=settings.smtp_ca_file)


def post_webhook(settings: NotifySettings, report: BatchReport) -> None:
    """POST the report to ``notify.webhook_url``, without following redirects.

    Unlike a service job's webhook (``isoscribe.webhooks``), this URL is the operator's own
    configuration, trusted like ``smtp_host``, so it may name an internal host.
    """
    payload = json.loads(json.dumps(report.to_dict(), default=str))
    response = httpx.post(settings.webhook_url, json=payload, timeout=settings.timeout_s, follow_redirects=False)
    response.raise_for_status()
