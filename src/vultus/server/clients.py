"""Who is asking: the client address of a request, from the socket unless a trusted proxy says.

A ``X-Forwarded-For`` header is written by whoever sends the request, so it is read only
when the socket's peer is one of the proxies the operator listed in
``VULTUS_TRUSTED_PROXIES``; then the last hop that is not itself a trusted proxy is the
client (anything the client wrote before that hop is ignored). The header may come on
several lines (a proxy such as HAProxy adds its own line after the client's): they are
read as one chain, in order. An IPv4-mapped IPv6 peer (``::ffff:10.0.0.1``, from a
dual-stack socket) is its IPv4 address.

Everything that limits or records a client (the public page's daily limit, the sign-in
attempt limit) counts it by :func:`address_key`: an IPv6 client by its /64, the block one
subscriber is usually given, so that walking through one's own addresses makes no new
client. The scheme the browser used (for the cookies' ``Secure``) is likewise taken from
``X-Forwarded-Proto`` only when a trusted proxy sends it.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Iterable, Union

from ..errors import SettingsError

if TYPE_CHECKING:
    from starlette.requests import HTTPConnection

__all__ = ["address_key", "client_address", "client_key", "client_of", "parse_proxies", "scheme_of", "Network"]

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


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address, an IPv4-mapped IPv6 one as its IPv4 address; None when it is not one."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _trusted(address: str, proxies: Iterable[Network]) -> bool:
    ip = _ip(address)
    return ip is not None and any(ip in network for network in proxies)


def address_key(address: str) -> str:
    """The key a client address is counted under: an IPv6 address's /64, an IPv4 address itself.

    Anything that is not an address (a test client's name) is its own key.
    """
    ip = _ip(address)
    if ip is None:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network(f"{ip}/64", strict=False))
    return str(ip)


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


def _peer(request: "HTTPConnection") -> str:
    return request.client.host if request.client else "unknown"


def client_of(request: "HTTPConnection") -> str:
    """The client address of ``request`` under the app's trusted proxies."""
    proxies = getattr(request.app.state, "trusted_proxies", ())
    chain = ", ".join(request.headers.getlist("x-forwarded-for"))
    return client_address(_peer(request), chain or None, proxies)


def client_key(request: "HTTPConnection") -> str:
    """The key ``request``'s client is limited and recorded under (see :func:`address_key`)."""
    return address_key(client_of(request))


def scheme_of(request: "HTTPConnection") -> str:
    """The scheme the browser used: the socket's, or ``https`` when a trusted proxy says so.

    Any ``https`` in the header counts: wrongly marking a cookie Secure only keeps it off
    plain HTTP, while wrongly leaving it off would send it in clear.
    """
    if request.url.scheme == "https":
        return "https"
    proxies = getattr(request.app.state, "trusted_proxies", ())
    if not proxies or not _trusted(_peer(request), proxies):
        return request.url.scheme
    said = ",".join(request.headers.getlist("x-forwarded-proto")).lower()
    return "https" if "https" in [part.strip() for part in said.split(",")] else request.url.scheme
