"""The page as an installable app: its manifest per site and its versioned service worker.

Both are files of the site's document root that the daemon adjusts as it serves
them, so an operator's own document root keeps working and no build step exists:

- ``manifest.webmanifest`` gets the site's title as ``name`` and ``short_name``
  (each virtual host installs as its own app, under its own name);
- ``sw.js`` gets a version in place of :data:`VERSION_MARK`: the package version
  and a digest of the document root's files. The worker names its cache by it,
  so an upgrade (or an edited file) changes the script's bytes, the browser
  installs the new worker on the next visit, and that one caches every file
  afresh instead of serving a mix of old and new.

Nothing here touches a socket; reading the document root's metadata is the only
I/O (:func:`tree_digest`).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from . import __version__

__all__ = [
    "MANIFEST_PATH",
    "SHORT_NAME_LENGTH",
    "DIGEST_REUSE",
    "VERSION_MARK",
    "WORKER_PATH",
    "manifest_body",
    "tree_digest",
    "worker_body",
]

MANIFEST_PATH = "/manifest.webmanifest"
WORKER_PATH = "/sw.js"
VERSION_MARK = b"__PICHAT_VERSION__"
#: Launchers cut longer labels; Chromium warns past 12 characters.
SHORT_NAME_LENGTH = 12


def short_name(title: str) -> str:
    """A home-screen label: the title, else its first word, else its start."""
    if len(title) <= SHORT_NAME_LENGTH:
        return title
    first = title.split()[0] if title.split() else title
    return first if len(first) <= SHORT_NAME_LENGTH else first[: SHORT_NAME_LENGTH - 1] + "…"


def manifest_body(template: bytes, title: str) -> bytes:
    """The site's manifest: the template with the site's ``name`` and ``short_name``.

    Raises:
        ValueError: the template is not a JSON object.
    """
    manifest = json.loads(template)
    if not isinstance(manifest, dict):
        raise ValueError("the manifest is not a JSON object")
    manifest["name"] = title
    manifest["short_name"] = short_name(title)
    return json.dumps(manifest, ensure_ascii=False, indent=1).encode()


def tree_digest(root: Path) -> str:
    """A short digest of the names, sizes and times of the files under ``root``.

    Dotfiles and dot-directories are skipped (they are never served); every
    other file counts, so editing any of them makes a new version.
    """
    digest = hashlib.sha256()
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = sorted(d for d in subdirectories if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(directory, name)
            try:
                info = path.stat()
            except OSError:
                continue
            digest.update(
                f"{path.relative_to(root)}\0{info.st_size}\0{info.st_mtime_ns}\0".encode()
            )
    return digest.hexdigest()[:12]


#: A document root's digest is reused for this many times as long as the walk
#: took: the walks take at most 1 % of the event loop, however often ``/sw.js``
#: is asked for, and an edit shows in the version that much later (25 ms for
#: the page's own files, seconds for a root of thousands).
DIGEST_REUSE = 100
_digests: dict[Path, tuple[float, float, str]] = {}


def worker_body(script: bytes, root: Path, now: float | None = None) -> bytes:
    """``sw.js`` with its version: the package's and the document root's digest.

    The digest stats every file under the root, on the event loop: 0.25 ms for
    the page's own files, but 67 ms for a root of 5000 files on the development
    machine, several times that on a Pi, and anyone may ask for ``/sw.js`` as
    often as they like; see :data:`DIGEST_REUSE`.
    """
    moment = time.monotonic() if now is None else now
    cached = _digests.get(root)
    if cached is None or not cached[0] <= moment < cached[0] + DIGEST_REUSE * cached[1]:
        started = time.perf_counter()
        digest = tree_digest(root)
        cached = _digests[root] = (moment, time.perf_counter() - started, digest)
    version = f"{__version__}-{cached[2]}".encode()
    return script.replace(VERSION_MARK, version)
