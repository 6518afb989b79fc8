"""Virtual-host-like sites, sans I/O: pick a site by Host, check a browser's Origin.

Like Apache's name-based virtual hosts: each site answers the Host names it
lists (port ignored, ``*.example.org`` wildcards allowed) and the default site
answers every other Host.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from .settings import Settings

__all__ = ["Site", "SiteTable", "host_name", "origin_allowed"]


@dataclasses.dataclass(frozen=True, slots=True)
class Site:
    """A resolved site: everything a request needs, no defaults left to apply."""

    label: str
    server_names: tuple[str, ...]
    document_root: Path
    room: str
    title: str
    allowed_origins: frozenset[str]


def host_name(host: str | None) -> str:
    """The host part of a Host header, lower-case, without port or final dot."""
    if not host:
        return ""
    host = host.strip().lower()
    if host.startswith("["):  # [v6]:port
        end = host.find("]")
        return host[: end + 1] if end != -1 else host
    return host.rsplit(":", 1)[0].rstrip(".") if ":" in host else host.rstrip(".")


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name[1:-1] if name.startswith("[") else name)
    except ValueError:
        return False
    return True


class SiteTable:
    """The sites of one configuration; rebuilt as a whole on reload."""

    def __init__(self, default: Site, sites: list[Site]) -> None:
        self.default = default
        self.sites = sites
        self._exact: dict[str, Site] = {}
        self._wildcards: list[tuple[str, Site]] = []
        for site in sites:
            for name in site.server_names:
                if name.startswith("*."):
                    self._wildcards.append((name[1:], site))  # ".example.org"
                else:
                    self._exact[name] = site

    @classmethod
    def from_settings(cls, settings: Settings) -> SiteTable:
        """Resolve ``[[sites]]`` and the top-level default site."""
        default = Site(
            label="default",
            server_names=tuple(settings.server_names),
            document_root=settings.document_root,
            room=settings.room,
            title=settings.title,
            allowed_origins=frozenset(settings.allowed_origins),
        )
        sites = [
            Site(
                label=site.server_names[0],
                server_names=tuple(site.server_names),
                document_root=settings.site_document_root(site),
                room=site.room,
                title=site.title,
                allowed_origins=frozenset(site.allowed_origins),
            )
            for site in settings.sites
        ]
        return cls(default, sites)

    def pick(self, host: str | None) -> Site:
        """The site for a Host header; the default site when none names it."""
        name = host_name(host)
        site = self._exact.get(name)
        if site is not None:
            return site
        for suffix, candidate in self._wildcards:
            if name.endswith(suffix) and len(name) > len(suffix):
                return candidate
        return self.default

    def admits(self, host: str | None) -> bool:
        """Whether a WebSocket upgrade for this Host may proceed (DNS rebinding).

        With the default site's ``server_names`` empty, any Host is admitted (the
        appliance reached by address). Otherwise the Host must be named by a
        site, or be an IP address literal: a rebinding page always sends its
        own *name*, never an address, so access by address keeps working.
        """
        if not self.default.server_names:
            return True
        name = host_name(host)
        if self.pick(host) is not self.default or _is_address(name):
            return True
        return any(
            name == pattern
            or (
                pattern.startswith("*.")
                and name.endswith(pattern[1:])
                and len(name) > len(pattern) - 1
            )
            for pattern in self.default.server_names
        )

    def rooms(self) -> list[str]:
        """Every room some site serves, without duplicates, in order."""
        return list(dict.fromkeys([self.default.room] + [s.room for s in self.sites]))


def origin_allowed(site: Site, origin: str | None, host: str | None) -> bool:
    """Whether a WebSocket handshake's Origin may join this site's room.

    No Origin: a non-browser client, allowed. Otherwise the Origin must be the
    page's own scheme-less ``host[:port]`` (what the browser sent as Host) or be
    listed in ``allowed_origins``; ``null`` and anything unparsable are refused.
    This stops other web pages from using a visitor's browser to post here.
    """
    if origin is None:
        return True
    origin = origin.strip().lower().rstrip("/")
    if origin in site.allowed_origins:
        return True
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.netloc or not host:
        return False
    return parts.netloc == host.strip().lower()
