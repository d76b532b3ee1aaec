"""Who is asking: the client address of a request, from the socket unless a trusted proxy says.

A ``X-Forwarded-For`` header is written by whoever sends the request, so it is read only
when the socket's peer is one of the proxies the operator listed in
``VULTUS_TRUSTED_PROXIES``; then the last hop that is not itself a trusted proxy is the
client (anything the client wrote before that hop is ignored). Everything that limits or
records a client (the public page's daily limit, the sign-in attempt limit) uses this.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Iterable, Union

from ..errors import SettingsError

if TYPE_CHECKING:
    from starlette.requests import HTTPConnection

__all__ = ["client_address", "client_of", "parse_proxies", "Network"]

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


def parse_proxies(text: str | None) -> tuple[Network, ...]:
    """The networks of a comma-separated list of addresses or CIDR ranges (empty for None)."""
    networks = []
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise SettingsError(
                f"VULTUS_TRUSTED_PROXIES holds {item!r}, which is not an IP address or range; give the "
                "addresses of your reverse proxies, comma-separated (e.g. 127.0.0.1, 10.0.0.0/8)."
            ) from None
    return tuple(networks)


def _trusted(address: str, proxies: Iterable[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_address(peer: str, forwarded_for: str | None, proxies: tuple[Network, ...]) -> str:
    """The client's address, given the socket's ``peer`` and the ``X-Forwarded-For`` header."""
    if not proxies or not forwarded_for or not _trusted(peer, proxies):
        return peer
    for hop in reversed([h.strip() for h in forwarded_for.split(",")]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # a malformed chain: trust nothing the proxy passed on
        if not _trusted(hop, proxies):
            return hop
    return peer  # every hop is a trusted proxy: the request came from inside


def client_of(request: "HTTPConnection") -> str:
    """The client address of ``request`` under the app's trusted proxies."""
    peer = request.client.host if request.client else "unknown"
    proxies = getattr(request.app.state, "trusted_proxies", ())
    return client_address(peer, request.headers.get("x-forwarded-for"), proxies)
