"""pichat's .deb, built once from the working tree and cached by its content.

:func:`build_deb` runs ``packaging/build-deb.sh`` (which builds inside the cached
Debian 13 build root and fails on any lintian error or warning) into
``.cache/deb/<digest>/``, where the digest covers every source file the build sees
and the requested version. Callers in one session, in parallel sessions, or in a later
session on an unchanged tree all get the same file without building again.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .roots import BUILD, CACHE, REPO

__all__ = ["DEB_CACHE", "build_deb", "source_files"]

DEB_CACHE = CACHE.parent / "deb"
# Builds kept in the cache; older ones are deleted after a new build.
_KEEP = 6


def source_files() -> list[str]:
    """The files ``build-deb.sh`` copies: what git tracks or would track, if present."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        check=True,
        capture_output=True,
    ).stdout.decode()
    return sorted(name for name in listing.split("\0") if name and (REPO / name).is_file())


# Copied into the build but not into the package: a change there needs no rebuild.
_NOT_PACKAGED = ("tests/", "bench/", "ansible/", ".ci/")


def _digest(version: str | None) -> str:
    digest = hashlib.sha256()
    digest.update(f"version={version}\nroot={BUILD.stamp}\n".encode())
    for name in source_files():
        if name.startswith(_NOT_PACKAGED):
            continue
        path = REPO / name
        digest.update(f"{name}\0{os.stat(path).st_mode & 0o111:o}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:20]


def _prune() -> None:
    builds = sorted(
        (path for path in DEB_CACHE.iterdir() if path.is_dir() and not path.name.startswith(".")),
        key=lambda path: path.stat().st_mtime,
        reverse=True,
    )
    for old in builds[_KEEP:]:
        shutil.rmtree(old, ignore_errors=True)


def build_deb(version: str | None = None) -> Path:
    """The path of ``pichat_<version>_all.deb`` built from the working tree.

    Args:
        version: build as this version instead of debian/changelog's (a changelog
            entry and ``pichat.__version__`` are changed in the build's copy only).

    Returns:
        The .deb; ``<deb without .deb>.lintian.txt`` next to it holds lintian's
        report (informational tags only: errors and warnings fail the build).

    Raises:
        subprocess.CalledProcessError: the build or lintian failed (output on stderr).
    """
    DEB_CACHE.mkdir(parents=True, exist_ok=True)
    target = DEB_CACHE / _digest(version)
    with open(DEB_CACHE / "build.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.is_dir():
            work = Path(tempfile.mkdtemp(prefix=".build.", dir=DEB_CACHE))
            try:
                argv = ["bash", str(REPO / "packaging/build-deb.sh"), "--out", str(work)]
                if version is not None:
                    argv += ["--version", version]
                subprocess.run(argv, cwd=REPO, check=True, capture_output=True, text=True)
                work.rename(target)
            except subprocess.CalledProcessError as exc:
                shutil.rmtree(work, ignore_errors=True)
                raise AssertionError(
                    f"packaging/build-deb.sh failed ({exc.returncode}):\n{exc.stdout}{exc.stderr}"
                ) from exc
            _prune()
        target.touch()  # most recently used: kept by _prune
    (deb,) = target.glob("pichat_*_all.deb")
    return deb
