"""Job webhooks, delivered off the job loops: a finished job is put in the outbox and the loop moves on.

Each attempt has an overall deadline (``webhook_timeout_s``); a failed attempt (refused address,
network error, deadline, or a status other than 2xx) is retried after ``webhook_backoff_s``, doubled each
time, up to ``webhook_attempts``. Every attempt of one delivery carries the same ``webhook-id``, so a
receiver can drop duplicates. When the server stops, deliveries already waiting (those of jobs that finished
during the drain too) get one attempt's time to go out; what is still undelivered then is dropped (logged).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from isoscribe.config import Settings
from isoscribe.logs import log_event
from isoscribe.service.job_store import Job
from isoscribe.service.job_view import job_status
from isoscribe.webhooks import WebhookRefused, new_secret, post_json_async

__all__ = ["WebhookOutbox", "webhook_secret"]

logger = logging.getLogger("isoscribe.service.webhooks")

_SENDERS = 4
"""Deliveries in flight at once: a slow receiver delays only its own deliveries."""
_STOP_FLUSH_S = 10.0
"""The most a stopping server waits for deliveries still to go out."""


@dataclass(frozen=True)
class _Delivery:
    job_id: str
    url: str
    payload: dict[str, Any]
    message_id: str


def webhook_secret(settings: Settings, data_dir: Path) -> str:
    """``service.webhook_secret``, else one made on the first start and kept in ``data_dir/webhook_secret``."""
    if settings.service.webhook_secret is not None:
        return settings.service.webhook_secret.get_secret_value()
    path = data_dir / "webhook_secret"
    if not path.exists():
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(new_secret())
    return path.read_text().strip()


class WebhookOutbox:
    def __init__(self, settings: Settings, secret: str) -> None:
        self.settings = settings.service
        self.secret = secret
        self._queue: asyncio.Queue[_Delivery] = asyncio.Queue()
        self._senders: list[asyncio.Task] = []
        self._undelivered = 0
        """Put and not yet done: waiting in the queue or being sent."""

    def start(self) -> None:
        self._senders = [asyncio.create_task(self._send_loop()) for _ in range(_SENDERS)]

    def put_finished(self, job: Job) -> None:
        """A job that has ended: its status goes to its ``webhook_url``, if it has one."""
        if job.webhook_url:
            self.put(job.id, job.webhook_url, job_status(job))

    def put(self, job_id: str, url: str, payload: dict[str, Any]) -> None:
        self._undelivered += 1
        self._queue.put_nowait(_Delivery(job_id, url, payload, f"msg_{uuid.uuid4().hex}"))

    async def stop(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), min(self.settings.webhook_timeout_s, _STOP_FLUSH_S))
        for sender in self._senders:
            sender.cancel()
        await asyncio.gather(*self._senders, return_exceptions=True)
        if self._undelivered:
            log_event(logger, "webhooks_dropped", logging.WARNING, count=self._undelivered)

    async def _send_loop(self) -> None:
        while True:
            delivery = await self._queue.get()
            try:
                with contextlib.suppress(Exception):  # a bug in one delivery must not stop the sender
                    await self._deliver(delivery)
                self._undelivered -= 1
            finally:
                self._queue.task_done()

    async def _deliver(self, delivery: _Delivery) -> None:
        backoff_s = self.settings.webhook_backoff_s
        for attempt in range(1, self.settings.webhook_attempts + 1):
            error = await self._attempt(delivery)
            if error is None:
                log_event(logger, "webhook_called", id=delivery.job_id, attempt=attempt)
                return
            log_event(logger, "webhook_failed", logging.WARNING, id=delivery.job_id, attempt=attempt, error=error)
            if attempt < self.settings.webhook_attempts:
                await asyncio.sleep(backoff_s)
                backoff_s *= 2
        log_event(logger, "webhook_given_up", logging.WARNING, id=delivery.job_id)

    async def _attempt(self, delivery: _Delivery) -> str | None:
        """None when delivered; else why not."""
        try:
            response = await post_json_async(
                delivery.url, delivery.payload, allow_hosts=self.settings.webhook_allow_hosts,
                timeout_s=self.settings.webhook_timeout_s, secret=self.secret, message_id=delivery.message_id,
            )
        except WebhookRefused as exc:
            log_event(logger, "webhook_refused", logging.WARNING, id=delivery.job_id, error=exc)
            return f"refused: {exc}"
        except TimeoutError:
            return f"no answer within {self.settings.webhook_timeout_s:g} s"
        except (httpx.HTTPError, OSError) as exc:
            return f"{type(exc).__name__}: {exc}"
        return None if response.is_success else f"status {response.status_code}"
