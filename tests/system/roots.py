"""Cached Debian 13 (trixie) root filesystems under ``.cache/trixie/``.

Roots are layered: ``base`` is a ``debootstrap --variant=minbase`` of trixie; every
other root is a copy of its parent with more packages installed. Each root carries a
stamp naming its recipe (parent stamp, packages); a missing root or a stale stamp
rebuilds it. Building happens in a temporary directory next to the cache, renamed
into place at the end, under an exclusive ``flock`` on ``NAME.lock``, so two test
runs at once never see a half-built root. Users take the same lock shared while they
read a root (:func:`use_root`), so a rebuild waits for them.

Nothing here mounts anything in the caller's mount namespace: chroot commands run
under ``unshare --mount``, so their ``/proc``, ``/sys`` and ``/dev`` mounts vanish with
them, even when the process is killed.

Stdlib only: ``packaging/build-deb.sh`` runs this module with any Python 3.11+
(``python3 -m tests.system build`` prints the build root's path).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "ARM64",
    "BASE",
    "BOOT",
    "BUILD",
    "CACHE",
    "DEBIAN_PATH",
    "MIRROR",
    "REPO",
    "RUNTIME",
    "RUNTIME_PACKAGES",
    "RootSpec",
    "chroot_run",
    "ensure_root",
    "use_root",
]

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("PICHAT_CACHE", REPO / ".cache")) / "trixie"
MIRROR = os.environ.get("PICHAT_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SUITE = "trixie"

# Debian's own tools, not pyenv's python3 or a venv's.
DEBIAN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
_CHROOT_ENV = {
    "PATH": DEBIAN_PATH,
    "LANG": "C.UTF-8",
    "HOME": "/root",
    "DEBIAN_FRONTEND": "noninteractive",
    "TERM": "dumb",
}

# Bump to rebuild every root when the recipe below changes in a way the stamps miss.
_RECIPE = 1


@dataclass(frozen=True)
class RootSpec:
    """How to make one cached root.

    Attributes:
        name: the directory name under ``.cache/trixie/``.
        parent: the root this one is a copy of; ``None`` for the debootstrap base.
        packages: installed with ``apt-get install --no-install-recommends``.
        download: fetched into apt's archive cache only (``--download-only
            --no-install-recommends``), so a later ``apt-get install
            --no-install-recommends ./pichat_*.deb`` in a copy resolves its
            dependencies without the network. (Their Recommends, rich, pygments,
            cryptography..., take a minute to byte-compile and pichat uses none.)
        mask: units to ``systemctl mask`` (e.g. the gettys, useless in a container).
        arch: a foreign Debian architecture for the debootstrap base (e.g. ``arm64``),
            run through qemu user mode (binfmt_misc must be set up); children of a
            root inherit its architecture.
    """

    name: str
    parent: RootSpec | None = None
    packages: tuple[str, ...] = ()
    download: tuple[str, ...] = ()
    mask: tuple[str, ...] = field(default=())
    arch: str | None = None

    @property
    def path(self) -> Path:
        """Where the finished root lives."""
        return CACHE / self.name

    @property
    def stamp(self) -> str:
        """A digest of the whole recipe, parents included."""
        recipe = {
            "recipe": _RECIPE,
            "suite": SUITE,
            "parent": self.parent.stamp if self.parent else None,
            "packages": sorted(self.packages),
            "download": sorted(self.download),
            "mask": sorted(self.mask),
            "arch": self.arch,
        }
        return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


# What pichat needs at run time, from Debian 13 (the .deb's Depends).
RUNTIME_PACKAGES = (
    "python3-websockets",
    "python3-pydantic-settings",
    "python3-sdnotify",
    "python3-prometheus-client",
)

BASE = RootSpec("base")

# dpkg-buildpackage, debhelper with pybuild's pyproject plugin, and lintian.
BUILD = RootSpec(
    "build",
    parent=BASE,
    packages=(
        "debhelper",
        "dh-python",
        "pybuild-plugin-pyproject",
        "python3-all",
        "python3-setuptools",
        "lintian",
    ),
)

# A root that boots with systemd-nspawn; pichat's dependencies are in apt's cache.
BOOT = RootSpec(
    "boot",
    parent=BASE,
    # man-db: "systemd-analyze verify" checks that Documentation=man:... pages exist.
    # python3: installing it in a container takes ~30 s (the stdlib's byte-code);
    # Ansible needs it on its targets anyway.
    packages=("systemd", "systemd-sysv", "dbus", "libpam-systemd", "man-db", "python3"),
    download=RUNTIME_PACKAGES,
    mask=("console-getty.service", "getty@.service", "systemd-networkd.service"),
)

# BOOT with pichat's dependencies already installed: for tests that install the
# .deb but do not test its dependencies (e.g. the Ansible role's).
RUNTIME = RootSpec("runtime", parent=BOOT, packages=RUNTIME_PACKAGES)

# pichat installed in an emulated arm64 root (the Pi's CPU): packaging/arm64-check.sh.
# Nothing boots there (systemd does not run under qemu user mode); the daemon runs
# chrooted. Installing Python under emulation takes minutes, hence a cached root.
ARM64 = RootSpec("arm64", arch="arm64", packages=("python3", *RUNTIME_PACKAGES))

_STAMP_FILE = ".pichat-root-stamp"


def chroot_run(
    root: Path,
    command: Sequence[str],
    *,
    check: bool = True,
    capture: bool = False,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` chrooted into ``root`` with ``/proc``, ``/sys``, ``/dev`` mounted.

    The mounts live in a private mount namespace (``unshare --mount``) that dies
    with the command. Use it on a root you own (a temporary copy), never on a
    cached one.

    Args:
        root: the root filesystem.
        command: argv inside the root.
        check: raise ``CalledProcessError`` on a non-zero exit.
        capture: return stdout and stderr instead of passing them through (both to
            stderr: stdout stays clean for ``python3 -m tests.system NAME``).
        env: extra environment variables.
    """
    script = (
        'set -e; R="$1"; shift; '
        'mount -t proc proc "$R/proc"; mount -t sysfs sysfs "$R/sys"; '
        'mount --rbind /dev "$R/dev"; exec chroot "$R" "$@"'
    )
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"]
        + [str(root), *command],
        check=check,
        text=True,
        stdout=subprocess.PIPE if capture else sys.stderr,
        stderr=subprocess.PIPE if capture else None,
        env={**_CHROOT_ENV, **(env or {})},
    )


@contextlib.contextmanager
def _locked(spec: RootSpec, mode: int) -> Iterator[None]:
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{spec.name}.lock", "a") as lock:
        fcntl.flock(lock, mode)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _current(spec: RootSpec) -> bool:
    try:
        return (spec.path / _STAMP_FILE).read_text().strip() == spec.stamp
    except OSError:
        return False


def _log(message: str) -> None:
    print(f"[trixie-root] {message}", file=sys.stderr, flush=True)


def _build(spec: RootSpec, work: Path) -> None:
    if spec.parent is None:
        _log(f"debootstrap {SUITE} into {work}")
        arch = [f"--arch={spec.arch}"] if spec.arch else []
        subprocess.run(
            ["debootstrap", "--variant=minbase", *arch, SUITE, str(work), MIRROR],
            check=True,
            env={**_CHROOT_ENV},
            stdout=subprocess.DEVNULL,
        )
        # HTTPS from inside (pip, curl) must trust what the host trusts.
        host_ca = Path("/etc/ssl/certs/ca-certificates.crt")
        if host_ca.exists():
            (work / "etc/ssl/certs").mkdir(parents=True, exist_ok=True)
            shutil.copy(host_ca, work / "etc/ssl/certs/ca-certificates.crt")
        chroot_run(work, ["apt-get", "update", "-q"])
    else:
        _log(f"copying {spec.parent.name} into {work}")
        subprocess.run(
            ["cp", "-a", "--reflink=auto", f"{spec.parent.path}/.", str(work)],
            check=True,
            stdout=sys.stderr,
        )
    if spec.packages:
        _log(f"installing {' '.join(spec.packages)}")
        chroot_run(
            work,
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *spec.packages],
        )
    if spec.download:
        _log(f"downloading {' '.join(spec.download)}")
        chroot_run(
            work,
            ["apt-get", "install", "-y", "-q", "--download-only", "--no-install-recommends"]
            + list(spec.download),
        )
    if spec.mask:
        chroot_run(work, ["systemctl", "mask", *spec.mask])
    (work / _STAMP_FILE).write_text(spec.stamp + "\n")


def ensure_root(spec: RootSpec) -> Path:
    """Return the path of ``spec``'s root, building it (and its parents) when needed.

    Safe to call from concurrent processes: one builds, the others wait on the lock.
    """
    if spec.parent is not None:
        ensure_root(spec.parent)
    with _locked(spec, fcntl.LOCK_SH):
        if _current(spec):
            return spec.path
    with _locked(spec, fcntl.LOCK_EX):
        if _current(spec):
            return spec.path
        # The parent must not change while it is copied.
        parent_lock = (
            _locked(spec.parent, fcntl.LOCK_SH)
            if spec.parent is not None
            else contextlib.nullcontext()
        )
        with parent_lock:
            work = Path(tempfile.mkdtemp(prefix=f".{spec.name}.", dir=CACHE))
            try:
                work.chmod(0o755)  # the root's "/": mkdtemp makes it 0700
                _build(spec, work)
                old = CACHE / f".{spec.name}.old"
                if spec.path.exists():
                    shutil.rmtree(old, ignore_errors=True)
                    spec.path.rename(old)
                work.rename(spec.path)
                shutil.rmtree(old, ignore_errors=True)
            except BaseException:
                shutil.rmtree(work, ignore_errors=True)
                raise
    _log(f"{spec.name} ready at {spec.path}")
    return spec.path


@contextlib.contextmanager
def use_root(spec: RootSpec) -> Iterator[Path]:
    """Build ``spec`` if needed and hold it (shared lock) while the block reads it.

    Never write to the yielded path: boot or chroot into a copy or an overlay.
    """
    ensure_root(spec)
    with _locked(spec, fcntl.LOCK_SH):
        # A rebuild may have slipped in between; it only ever replaces a stale root.
        if not _current(spec):
            raise RuntimeError(f"root {spec.path} changed while being acquired; retry")
        yield spec.path


def main(argv: Sequence[str]) -> int:
    """``python3 -m tests.system NAME``: build root NAME if needed, print its path."""
    specs = {spec.name: spec for spec in (BASE, BUILD, BOOT, RUNTIME, ARM64)}
    if len(argv) != 1 or argv[0] not in specs:
        print(f"usage: python3 -m tests.system {{{','.join(specs)}}}", file=sys.stderr)
        return 2
    print(ensure_root(specs[argv[0]]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
