"""Static files from a site's document root, answered through ``process_request``.

The rules a public appliance needs: ``/`` is ``index.html``; nothing outside the
document root, whatever the encoding or symlinks; no dotfiles; no directory
listings; ETag revalidation; a precompressed ``.gz`` sibling for clients that
accept gzip; and security headers that let the page load only its own scripts.
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
from pathlib import Path
from urllib.parse import unquote

__all__ = ["CONTENT_TYPES", "FileCache", "StaticFile", "resolve", "security_headers"]

CONTENT_TYPES: dict[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
    ".txt": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".map": "application/json",
}
DEFAULT_TYPE = "application/octet-stream"
#: Revalidated on every load: they change together when pichat is upgraded.
_REVALIDATE = frozenset({".html", ".js", ".mjs", ".css", ".json", ".webmanifest", ".map"})

_HOST_SAFE = re.compile(r"[A-Za-z0-9.\-:\[\]]{1,255}")


def resolve(root: Path, url_path: str) -> Path | None:
    """The file a URL path names under ``root`` (already resolved), or None.

    The path is percent-decoded once; a decoded NUL, backslash, or a segment
    starting with a dot (``..``, ``.git``, ``.env``) is refused outright. The
    result is resolved (symlinks followed) and must still lie inside ``root``.
    A directory serves its ``index.html``; there are no listings.
    """
    try:
        path = unquote(url_path.split("?", 1)[0].split("#", 1)[0], errors="strict")
    except UnicodeDecodeError:
        return None
    if "\x00" in path or "\\" in path:
        return None
    segments = [s for s in path.split("/") if s]
    if any(s.startswith(".") for s in segments):
        return None
    candidate = root.joinpath(*segments) if segments else root
    try:
        real = candidate.resolve(strict=True)
        if real != root and root not in real.parents:
            return None
        info = real.stat()
        if stat.S_ISDIR(info.st_mode):
            real = (real / "index.html").resolve(strict=True)
            if root not in real.parents:
                return None
            info = real.stat()
        if not stat.S_ISREG(info.st_mode):
            return None
    except (OSError, RuntimeError, ValueError):
        return None
    return real


@dataclasses.dataclass(frozen=True, slots=True)
class StaticFile:
    """A file ready to send: body, validators and headers that depend on it."""

    body: bytes
    etag: str
    content_type: str
    cache_control: str
    gzip: bool


class FileCache:
    """Bodies of small files, keyed by path and checked against ``stat`` each time.

    The page's few files are read once, not on every request, yet an edit on
    disk shows up at the next request (mtime or size change).
    """

    def __init__(self, max_file: int = 1 << 20, max_total: int = 8 << 20) -> None:
        self.max_file = max_file
        self.max_total = max_total
        self._entries: dict[Path, tuple[int, int, bytes]] = {}
        self._total = 0

    def read(self, path: Path) -> tuple[bytes, os.stat_result]:
        """The file's bytes and its stat result."""
        info = path.stat()
        entry = self._entries.get(path)
        if entry is not None and entry[0] == info.st_mtime_ns and entry[1] == info.st_size:
            return entry[2], info
        body = path.read_bytes()
        if entry is not None:
            self._total -= len(entry[2])
            del self._entries[path]
        if len(body) <= self.max_file:
            if self._total + len(body) > self.max_total:
                self._entries.clear()
                self._total = 0
            self._entries[path] = (info.st_mtime_ns, info.st_size, body)
            self._total += len(body)
        return body, info

    def load(self, path: Path, accept_gzip: bool) -> StaticFile:
        """Prepare ``path`` for sending, preferring a fresh ``.gz`` sibling."""
        suffix = path.suffix.lower()
        content_type = CONTENT_TYPES.get(suffix, DEFAULT_TYPE)
        cache_control = "no-cache" if suffix in _REVALIDATE else "public, max-age=86400"
        body, info = self.read(path)
        etag = f'"{info.st_mtime_ns:x}-{info.st_size:x}"'
        if accept_gzip:
            sibling = path.with_name(path.name + ".gz")
            try:
                gz_body, gz_info = self.read(sibling)
            except OSError:
                pass
            else:
                # A stale .gz (older than its source) would serve old content.
                if gz_info.st_mtime_ns >= info.st_mtime_ns:
                    gz_etag = f'"{gz_info.st_mtime_ns:x}-{gz_info.st_size:x}-gz"'
                    return StaticFile(gz_body, gz_etag, content_type, cache_control, True)
        return StaticFile(body, etag, content_type, cache_control, False)


def security_headers(host: str | None) -> list[tuple[str, str]]:
    """Headers every response carries.

    The CSP allows scripts and styles from the page's own origin only (no
    inline code), WebSockets to the same host, and avatars from any http(s)
    URL; ``Referrer-Policy: no-referrer`` keeps the chat's address from the
    hosts those avatars come from.
    """
    connect = "'self'"
    if host and _HOST_SAFE.fullmatch(host):
        connect += f" ws://{host} wss://{host}"
    csp = (
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        f"img-src 'self' data: http: https:; connect-src {connect}; "
        "font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    )
    return [
        ("Content-Security-Policy", csp),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("X-Frame-Options", "DENY"),
    ]
