"""``isoscribe serve``: uvicorn around create_app, with a SIGTERM drain that exits 0.

On SIGTERM the job drain starts at once, while uvicorn stops accepting connections and waits for
open requests: both get ``drain_timeout_s`` side by side, so the server is gone within that plus the
time to kill what is left, not twice it. Then the lifespan stops the worker pools.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import signal
import sys
from types import FrameType

import uvicorn

from isoscribe.config import Settings
from isoscribe.logs import log_event
from isoscribe.service.app import create_app
from isoscribe.service.auth import KeyRing, hash_key
from isoscribe.service.core import Service
from isoscribe.service.job_types import JobStoreUnavailable

__all__ = ["serve_command"]

logger = logging.getLogger("isoscribe.service")


def serve_command(settings: Settings, args: argparse.Namespace) -> int:
    service = settings.service
    if getattr(args, "hash_key", False):
        print(hash_key(sys.stdin.readline().strip()))
        return 0
    if not _loopback(service.host) and not KeyRing(settings).enabled and not getattr(args, "insecure_no_auth", False):
        log_event(
            logger, "serve_refused", logging.ERROR, host=service.host,
            reason="a non-loopback address without an API key; set service.api_key (or pass --insecure-no-auth)",
        )
        return 2
    try:
        app = create_app(settings)
    except JobStoreUnavailable as exc:
        log_event(logger, "serve_failed", logging.ERROR, host=service.host, port=service.port, reason=exc)
        print(f"isoscribe: {exc}", file=sys.stderr)
        return 1
    config = uvicorn.Config(
        app,
        host=service.host,
        port=service.port,
        log_config=None,
        log_level=settings.log_level,
        access_log=settings.log_level == "debug",
        timeout_graceful_shutdown=service.drain_timeout_s,
        # Pings still go out every 20 s, but a late pong does not drop the WebSocket: a live session
        # that stops reading the socket (its back-pressure) leaves the client's pong queued behind the
        # audio it has not read yet, so the pong's delay measures the server's own backlog, not a dead
        # client. A vanished client is still found: its unacknowledged pings end the TCP connection
        # at the kernel's retransmission limit (about 15 min); a session also ends at its maximum length.
        ws_ping_timeout=None,
    )
    server = _DrainingServer(config, app.state.service)
    # uvicorn re-raises the signal it caught once it has shut down; a drained server should exit 0,
    # so the re-raised SIGTERM lands in this no-op handler instead of the default that kills us.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    log_event(logger, "serve_starting", host=service.host, port=service.port)
    server.run()
    if not server.started:  # startup failed (port taken, bad data_dir …); uvicorn has logged why
        log_event(logger, "serve_failed", logging.ERROR, host=service.host, port=service.port)
        return 1
    log_event(logger, "serve_stopped")
    return 0


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, service: Service) -> None:
        super().__init__(config)
        self.service = service

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.service.begin_drain_threadsafe()
        super().handle_exit(sig, frame)
