"""API keys: several, each owning the jobs it makes; admin keys see every job. Keys are held only as
SHA-256 digests; a job's owner is the first 16 hex digits of its key's digest, never the key.

No key configured: every caller is the admin (the service is then reachable from loopback Host names
only, see ``service.edge``).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request

from isoscribe.config import Settings
from isoscribe.service.errors import ApiError

__all__ = ["Caller", "KeyRing", "require_api_key", "hash_key", "caller_of"]

_OWNER_CHARS = 16


@dataclass(frozen=True)
class Caller:
    owner: str
    """The key's id ("" without keys): what a job records as its owner."""
    admin: bool

    def may_see(self, owner: str) -> bool:
        return self.admin or hmac.compare_digest(owner, self.owner)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyRing:
    def __init__(self, settings: Settings) -> None:
        service = settings.service
        self._admin: dict[str, bool] = {}
        """Digest → admin."""
        if service.api_key is not None:
            self._admin[hash_key(service.api_key.get_secret_value())] = True
        for key in service.api_keys:
            self._admin.setdefault(hash_key(key.get_secret_value()), False)
        if service.api_keys_file is not None:
            self._admin.update(_read_key_file(service.api_keys_file))

    @property
    def enabled(self) -> bool:
        return bool(self._admin)

    def identify(self, authorization: str) -> Caller | None:
        """The caller an ``Authorization`` header names; None for a missing or unknown key."""
        if not self.enabled:
            return Caller("", admin=True)
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        digest = hash_key(token.strip())
        admin = self._admin.get(digest)
        return None if admin is None else Caller(digest[:_OWNER_CHARS], admin)


def _read_key_file(path: Path) -> dict[str, bool]:
    keys: dict[str, bool] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        digest = fields[0].lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest) or fields[1:] not in ([], ["admin"]):
            raise ValueError(f"{path}:{number}: expected a SHA-256 hex digest, optionally followed by 'admin'")
        keys[digest] = fields[1:] == ["admin"]
    return keys


def caller_of(request: Request) -> Caller:
    """The caller ``require_api_key`` identified for this request."""
    return request.state.caller


async def require_api_key(request: Request) -> None:
    caller = request.app.state.service.keys.identify(request.headers.get("authorization", ""))
    if caller is None:
        raise ApiError(
            401,
            "missing or invalid API key (send 'Authorization: Bearer KEY')",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    request.state.caller = caller
