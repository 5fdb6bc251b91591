"""The endpoint's edge, before any route: which Host and Origin may talk to the server, and which
operational pages need a key.

- Without an API key only loopback Host names (localhost, 127.0.0.1, [::1]) and ``service.allowed_hosts``
  are served: a web page that rebinds its own name to 127.0.0.1 still sends its own Host, and gets 403.
- A browser request whose ``Origin`` is neither the server's own (same scheme-less host and port as
  Host) nor one of ``service.cors_origins`` gets 403: a cross-site form POST needs no preflight.
- /metrics, /docs and /openapi.json need a valid key unless ``public_metrics`` / ``public_docs``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from isoscribe.config import Settings
from isoscribe.service.auth import KeyRing
from isoscribe.service.errors import error_body

__all__ = ["EdgeGuard", "LOOPBACK_HOSTS", "host_name"]

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_DOCS_PATHS = ("/docs", "/openapi.json", "/redoc")


def host_name(host: str) -> str:
    """``[::1]:8000`` → ``::1``; ``Example.org:80`` → ``example.org``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class EdgeGuard:
    def __init__(self, app: ASGIApp, settings: Settings, keys: KeyRing) -> None:
        self.app = app
        self.keys = keys
        service = settings.service
        self.allowed_hosts = LOOPBACK_HOSTS | {host_name(h) for h in service.allowed_hosts}
        self.cors_origins = {origin.rstrip("/").lower() for origin in service.cors_origins}
        self.public_metrics = service.public_metrics
        self.public_docs = service.public_docs

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        refusal = self.refusal(headers, scope["path"])
        if refusal is None:
            return await self.app(scope, receive, send)
        status, message, code = refusal
        response = JSONResponse(error_body(message, "invalid_request_error", code), status_code=status)
        await response(scope, receive, send)

    def refusal(self, headers: Headers, path: str) -> tuple[int, str, str] | None:
        host = headers.get("host", "")
        if not self.keys.enabled and host_name(host) not in self.allowed_hosts:
            return 403, f"host {host!r} is not served without an API key (see service.allowed_hosts)", "host_not_allowed"
        origin = headers.get("origin")
        if origin is not None and not self._origin_allowed(origin, host):
            return 403, f"requests from origin {origin!r} are not allowed (see service.cors_origins)", "origin_not_allowed"
        needs_key = (path == "/metrics" and not self.public_metrics) or (
            path.startswith(_DOCS_PATHS) and not self.public_docs
        )
        if needs_key and self.keys.identify(headers.get("authorization", "")) is None:
            return 401, "missing or invalid API key (send 'Authorization: Bearer KEY')", "invalid_api_key"
        return None

    def _origin_allowed(self, origin: str, host: str) -> bool:
        origin = origin.rstrip("/").lower()
        if origin in self.cors_origins:
            return True
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and parts.netloc == host.strip().lower()
