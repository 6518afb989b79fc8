"""Client addresses, sans I/O: the key limits and bans count by.

What the peer address is behind a reverse proxy is decided here too
(:func:`client_address`), so that admission, bans, rate limits and logs agree.
"""

from __future__ import annotations

import functools
import ipaddress

__all__ = ["Network", "address_key", "client_address", "parse_address", "parse_networks"]


def parse_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An IP address (an IPv6 zone is dropped, IPv4-mapped IPv6 is IPv4), or ``None``."""
    try:
        ip = ipaddress.ip_address(text.strip().split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@functools.lru_cache(maxsize=4096)
def address_key(address: str) -> str:
    """What the per-address limits and bans count: the address, or its /64 for IPv6.

    One IPv6 subscriber gets a whole /64 (usually far more), so counting single
    addresses would let one household open unlimited connections. Every join
    asks twice (admission, the ban check) and parsing an address with
    ``ipaddress`` was a twentieth of a reconnect storm's time, while the same
    addresses come back (a household's devices, every page after a restart):
    the answers of the last few thousand are kept.
    """
    ip = parse_address(address)
    if ip is None:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: list[str]) -> tuple[Network, ...]:
    """Addresses or CIDR networks (``10.0.0.0/8``, ``::1``); raises ValueError naming one."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or network") from None
    return tuple(networks)


def _trusted(address: str, trusted: tuple[Network, ...]) -> bool:
    ip = parse_address(address)
    return ip is not None and any(ip in network for network in trusted)


def _forwarded_for(value: str) -> list[str]:
    """The ``for=`` addresses of a ``Forwarded`` header (RFC 7239), in order."""
    found = []
    for element in value.split(","):
        for pair in element.split(";"):
            key, _, item = pair.strip().partition("=")
            if key.strip().lower() != "for":
                continue
            item = item.strip().strip('"')
            if item.startswith("["):  # "[2001:db8::1]:4711"
                item = item[1:].split("]", 1)[0]
            elif item.count(":") == 1:  # "192.0.2.7:4711"
                item = item.split(":", 1)[0]
            found.append(item)
    return found


def client_address(peer: str, header: str, values: list[str], trusted: tuple[Network, ...]) -> str:
    """The client's address: the peer's, or behind trusted proxies the forwarded one.

    Args:
        peer: the TCP peer's address.
        header: ``"x-forwarded-for"`` or ``"forwarded"``: which header the proxy sets.
        values: every value of that header in the request, in order.
        trusted: the proxies whose headers are believed.

    Only a trusted peer's header is read, and in it the rightmost address that is
    not itself a trusted proxy: each proxy appends the address it saw, so what
    is left of the first untrusted hop was written by the client and proves
    nothing. An entry that is not an address stops the walk at the hop to its
    right, which a trusted proxy did write.
    """
    if not trusted or not _trusted(peer, trusted):
        return peer
    if header == "forwarded":
        hops = [hop for value in values for hop in _forwarded_for(value)]
    else:
        hops = [hop.strip() for value in values for hop in value.split(",") if hop.strip()]
    client = peer
    for hop in reversed(hops):
        if parse_address(hop) is None:
            break
        client = hop
        if not _trusted(hop, trusted):
            break
    ip = parse_address(client)
    return str(ip) if ip is not None else peer
