"""Webhook POSTs that cannot be aimed at the server's own network.

A job's ``webhook_url`` comes from a client, so the server must not become its proxy into loopback,
link-local (cloud metadata at 169.254.169.254), private or otherwise non-public addresses. The host
is resolved when the webhook is sent, every address it resolves to must be public unless the host
is listed in ``allow_hosts``, and the request goes to the checked address itself: the URL is
rewritten to that IP with the original ``Host`` header and TLS server name, so a second DNS answer
(rebinding between check and connect) cannot change where it lands. Redirects are never followed.
IPv6 addresses that embed an IPv4 one (6to4, NAT64, Teredo) are refused outright: the check cannot
know where the gateway delivers them.

Deliveries are signed as Standard Webhooks do (https://www.standardwebhooks.com): headers
``webhook-id``, ``webhook-timestamp`` (Unix seconds) and ``webhook-signature`` = ``v1,`` + base64 of
HMAC-SHA256 over ``{id}.{timestamp}.{body}`` with the secret's bytes (``whsec_`` + base64).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import json
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = ["WebhookRefused", "post_json", "post_json_async", "check_url_async", "signature", "new_secret"]

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_EMBEDDED_IPV4 = tuple(
    ipaddress.ip_network(network) for network in ("2002::/16", "64:ff9b::/96", "64:ff9b:1::/48", "2001::/32")
)
"""6to4, NAT64 (well-known and local-use) and Teredo."""


class WebhookRefused(ValueError):
    """The webhook URL is malformed or resolves to an address the server will not call."""


@dataclass(frozen=True)
class _Target:
    url: httpx.URL
    """The URL with its host replaced by the checked address."""
    host_header: str
    server_name: str
    """The original host name: TLS SNI and certificate check use it, not the IP."""


def post_json(url: str, payload: Any, *, allow_hosts: Iterable[str] = (), timeout_s: float = 30) -> httpx.Response:
    """POST ``payload`` as JSON to ``url`` after the address check; raises WebhookRefused or httpx errors."""
    target = _target(url, _resolve(_host(url)), allow_hosts)
    with httpx.Client(timeout=timeout_s, follow_redirects=False, trust_env=False) as client:
        return client.post(target.url, json=payload, **_request_options(target))


async def post_json_async(
    url: str,
    payload: Any,
    *,
    allow_hosts: Iterable[str] = (),
    timeout_s: float = 30,
    secret: str | None = None,
    message_id: str = "",
) -> httpx.Response:
    """``post_json`` for an event loop, signed with ``secret`` when given. ``timeout_s`` bounds the whole
    attempt (resolving, connecting, sending, and the answer), so a receiver that trickles bytes cannot
    hold it: asyncio.TimeoutError past it."""
    async with asyncio.timeout(timeout_s):
        target = await _checked_target(url, allow_hosts)
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        options = _request_options(target)
        options["headers"]["Content-Type"] = "application/json"
        if secret is not None:
            timestamp = int(time.time())
            options["headers"] |= {
                "webhook-id": message_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": signature(secret, message_id, timestamp, body),
            }
        async with httpx.AsyncClient(timeout=timeout_s, follow_redirects=False, trust_env=False) as client:
            return await client.post(target.url, content=body, **options)


async def check_url_async(url: str, allow_hosts: Iterable[str] = ()) -> None:
    """Raise WebhookRefused now for a URL that would be refused at delivery (checked again then)."""
    await _checked_target(url, allow_hosts)


async def _checked_target(url: str, allow_hosts: Iterable[str]) -> _Target:
    host = _host(url)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise WebhookRefused(f"webhook host {host} does not resolve: {exc}") from None
    return _target(url, _addresses(host, infos), allow_hosts)


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks' ``v1,`` signature of one delivery."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def new_secret() -> str:
    import secrets

    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def _host(url: str) -> str:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise WebhookRefused(f"invalid webhook URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise WebhookRefused("webhook URL must be http:// or https:// with a host")
    return parsed.host


def _resolve(host: str) -> list[IpAddress]:
    return _addresses(host, socket.getaddrinfo(host, None, type=socket.SOCK_STREAM))


def _addresses(host: str, infos: list[tuple]) -> list[IpAddress]:
    found = [ipaddress.ip_address(info[4][0].partition("%")[0]) for info in infos]
    if not found:
        raise WebhookRefused(f"webhook host {host} has no address")
    return found


def _target(url: str, addresses: list[IpAddress], allow_hosts: Iterable[str]) -> _Target:
    parsed = httpx.URL(url)
    host = parsed.host
    if not _allowed(host, allow_hosts):
        internal = [str(address) for address in addresses if not _is_public(address)]
        if internal:
            raise WebhookRefused(
                f"webhook host {host} resolves to non-public address {', '.join(internal)}; "
                "list it in service.webhook_allow_hosts to allow it"
            )
    return _Target(parsed.copy_with(host=str(addresses[0])), parsed.netloc.decode("ascii"), host)


def _request_options(target: _Target) -> dict[str, Any]:
    return {"headers": {"Host": target.host_header}, "extensions": {"sni_hostname": target.server_name}}


def _allowed(host: str, allow_hosts: Iterable[str]) -> bool:
    wanted = _normalized(host)
    return any(_normalized(entry) == wanted for entry in allow_hosts)


def _normalized(host: str) -> str:
    host = host.strip().strip("[]").lower().rstrip(".")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def _is_public(address: IpAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and any(address in network for network in _EMBEDDED_IPV4):
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not (
        address.is_loopback
        or address.is_link_local
        or address.is_private
        or address.is_multicast
        or address.is_unspecified
        or address.is_reserved
    )
