"""Client addresses, sans I/O: the key limits and bans count by.

What the peer address is behind a reverse proxy is decided here too
(:func:`client_address`), so that admission, bans, rate limits and logs agree.
"""

from __future__ import annotations

import ipaddress

__all__ = ["address_key", "parse_address"]


def parse_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An IP address (an IPv6 zone is dropped, IPv4-mapped IPv6 is IPv4), or ``None``."""
    try:
        ip = ipaddress.ip_address(text.strip().split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def address_key(address: str) -> str:
    """What the per-address limits and bans count: the address, or its /64 for IPv6.

    One IPv6 subscriber gets a whole /64 (usually far more), so counting single
    addresses would let one household open unlimited connections.
    """
    ip = parse_address(address)
    if ip is None:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)
