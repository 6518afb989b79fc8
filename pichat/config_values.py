"""The checks of single configuration values, for :mod:`pichat.settings`.

Plain functions and annotated types: each takes a value as written, returns it
normalised, or raises ``ValueError`` with the sentence the operator reads after
the key's name. Nothing here reads the environment or a file; the settings
module is still the only one that does.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field

from .addresses import parse_networks
from .passwords import parse_hash
from .validation import has_control, name_key

__all__ = [
    "HOSTNAME_RE",
    "ROOM_RE",
    "DocumentRoot",
    "Networks",
    "Origins",
    "RoomName",
    "ServerNames",
    "Title",
    "check_moderator_name",
    "check_password_hash",
    "check_proxies",
    "check_redis_url",
]

ROOM_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
HOSTNAME_RE = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9-]{0,62})(\.[a-z0-9]([a-z0-9-]{0,62}))*\.?$")

Title = Annotated[str, Field(min_length=1, max_length=120)]
RoomName = Annotated[str, Field(pattern=ROOM_RE.pattern)]


def check_origins(origins: list[str]) -> list[str]:
    """Normalise ``scheme://host[:port]`` origins; reject anything else."""
    normalised = []
    for origin in origins:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{origin!r} is not an origin like 'https://chat.example.org'")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"{origin!r} is not an origin: no path, query or fragment")
        normalised.append(origin.rstrip("/").lower())
    return normalised


def check_server_names(names: list[str]) -> list[str]:
    """Lower-case host names without a final dot; ``*.example.org`` wildcards allowed."""
    cleaned = [name.strip().lower().rstrip(".") for name in names]
    for name in cleaned:
        if not HOSTNAME_RE.match(name):
            raise ValueError(f"{name!r} is not a host name")
    return cleaned


def check_proxies(entries: list[str]) -> list[str]:
    return [str(network) for network in parse_networks(entries)]


def check_redis_url(url: str) -> str:
    """``redis://``, ``rediss://`` or ``unix://``; and the client library must be there.

    The Debian package only recommends python3-redis: a daemon asked to use Redis
    without it refuses to start here, naming the key, rather than failing at first use.
    """
    if not url:
        return url
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(
            f"{parts.scheme or url!r} is not a Redis URL scheme: use redis://host:port/db, "
            "rediss:// (TLS) or unix:///path/to/redis.sock"
        )
    if parts.scheme == "unix" and not parts.path:
        raise ValueError("a unix:// Redis URL needs a socket path, like unix:///run/redis.sock")
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError(f"{url!r} names no Redis host")
    try:
        import redis.asyncio  # noqa: F401
    except ImportError:
        raise ValueError(
            "Redis needs the Python module redis (Debian: apt install python3-redis)"
        ) from None
    return url


def check_document_root(path: Path) -> Path:
    if not path.is_dir():
        raise ValueError(f"{str(path)!r} is not a directory")
    return path.resolve()


def check_networks(values: list[str]) -> list[str]:
    """Addresses or CIDRs, normalised (``10.1.2.3`` becomes ``10.1.2.3/32``)."""
    networks = []
    for value in values:
        try:
            networks.append(str(ipaddress.ip_network(value.strip(), strict=False)))
        except ValueError:
            raise ValueError(
                f"{value!r} is not an address or a network like '10.0.0.0/8'"
            ) from None
    return networks


# Shared by the top level (the default site) and each [[sites]] table.
Origins = Annotated[list[str], AfterValidator(check_origins)]
DocumentRoot = Annotated[Path, AfterValidator(check_document_root)]
ServerNames = Annotated[list[str], AfterValidator(check_server_names)]
Networks = Annotated[list[str], AfterValidator(check_networks)]


def check_moderator_name(name: str) -> str:
    name = name.strip()
    if not name or has_control(name) or not name_key(name):
        raise ValueError("a moderator's name must have visible characters and no controls")
    return name


def check_password_hash(text: str) -> str:
    parse_hash(text)  # raises ValueError naming the problem
    return text
