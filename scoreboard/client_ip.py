"""The client's IP address, believing X-Forwarded-For only as far as trusted proxies wrote it.

`REMOTE_ADDR` is the peer that opened the connection. Only when that peer is one of
`SCOREBOARD_TRUSTED_PROXIES` does X-Forwarded-For count, read from the right: each trusted
proxy appends the address it received the request from, so the right-most hop that is not a
trusted proxy is the first address no trusted party can vouch beyond. Anything to its left
was written by the client and may be invented.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any

from django.conf import settings

from scoreboard.config import IPNetwork

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_WITH_PORT = re.compile(r"\[(?P<v6>[0-9A-Fa-f:.]+)\](?::[0-9]{1,5})?|(?P<v4>[0-9.]+):[0-9]{1,5}")


def client_ip(request: Any) -> str:
    """The client address of a Django HttpRequest or a DRF Request.

    Normalised (an IPv4-mapped IPv6 address is given as IPv4); `REMOTE_ADDR` unchanged when
    it is not an address at all (empty when the server has no peer address, e.g. a Unix
    socket).
    """
    meta = getattr(request, "_request", request).META
    return client_address(meta.get("REMOTE_ADDR", ""), meta.get("HTTP_X_FORWARDED_FOR", ""))


def scope_client_ip(scope: Mapping[str, Any]) -> str:
    """The client address of an ASGI connection (a WebSocket), by the same rules."""
    peer = scope.get("client")
    forwarded_for = dict(scope.get("headers", ())).get(b"x-forwarded-for", b"")
    return client_address(peer[0] if peer else "", forwarded_for.decode("latin-1"))


def client_address(remote_addr: str, forwarded_for: str) -> str:
    peer = parse_ip(remote_addr)
    if peer is None:
        return remote_addr
    proxies: Sequence[IPNetwork] = settings.SCOREBOARD_TRUSTED_PROXIES
    if not is_trusted(peer, proxies):
        return str(peer)
    return str(forwarded_client(peer, forwarded_for, proxies))


def forwarded_client(
    peer: IPAddress, forwarded_for: str, proxies: Sequence[IPNetwork]
) -> IPAddress:
    """The right-most X-Forwarded-For hop that is not a trusted proxy, seen from a trusted
    `peer`. If every hop is trusted, the left-most; at a malformed hop the walk stops and the
    last good address (a trusted proxy's) is the answer."""
    last_good = peer
    for hop in reversed(forwarded_for.split(",")):
        address = parse_ip(hop)
        if address is None:
            break
        last_good = address
        if not is_trusted(address, proxies):
            break
    return last_good


def parse_ip(text: str) -> IPAddress | None:
    """An address from REMOTE_ADDR or one X-Forwarded-For hop; also `[v6]:port` and
    `v4:port`, which some proxies write. None when it is not an address."""
    text = text.strip()
    with_port = _WITH_PORT.fullmatch(text)
    if with_port:
        text = with_port["v6"] or with_port["v4"]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_trusted(address: IPAddress, proxies: Sequence[IPNetwork]) -> bool:
    return any(address in network for network in proxies)
