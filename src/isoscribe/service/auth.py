"""Optional Bearer API key: compared in constant time; a missing or wrong key is a 401."""

from __future__ import annotations

import hmac

from fastapi import Request

from isoscribe.service.errors import ApiError

__all__ = ["require_api_key"]


async def require_api_key(request: Request) -> None:
    expected = request.app.state.settings.service.api_key
    if expected is None:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    presented = token.strip().encode() if scheme.lower() == "bearer" else b""
    if not hmac.compare_digest(presented, expected.get_secret_value().encode()):
        raise ApiError(
            401,
            "missing or invalid API key (send 'Authorization: Bearer KEY')",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )
