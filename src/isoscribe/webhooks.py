"""Webhook POSTs that cannot be aimed at the server's own network.

A job's ``webhook_url`` comes from a client, so the server must not become its proxy into loopback,
link-local (cloud metadata at 169.254.169.254), private or otherwise non-public addresses. The host
is resolved when the webhook is sent, every address it resolves to must be public unless the host
is listed in ``allow_hosts``, and the request goes to the checked address itself: the URL is
rewritten to that IP with the original ``Host`` header and TLS server name, so a second DNS answer
(rebinding between check and connect) cannot change where it lands. Redirects are never followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = ["WebhookRefused", "post_json", "post_json_async"]

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


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
    url: str, payload: Any, *, allow_hosts: Iterable[str] = (), timeout_s: float = 30
) -> httpx.Response:
    """``post_json`` for an event loop: the name is resolved in the loop's resolver thread."""
    host = _host(url)
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    target = _target(url, _addresses(host, infos), allow_hosts)
    async with httpx.AsyncClient(timeout=timeout_s, follow_redirects=False, trust_env=False) as client:
        return await client.post(target.url, json=payload, **_request_options(target))


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
