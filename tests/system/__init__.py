"""Real Debian 13 (trixie) systems for pichat's system tests.

Shared by the package tests (``tests/package/``) and the Ansible role's tests. Needs
root, ``debootstrap``, ``systemd-nspawn`` (``systemd-container``), ``unshare`` and
``nsenter`` (``util-linux``): the Makefile's HOST_PACKAGES. Mark tests using it
``@pytest.mark.system``.

Roots (:mod:`tests.system.roots`), cached under ``.cache/trixie/`` and rebuilt when
missing or when their recipe changes:

- :data:`BASE`: ``debootstrap --variant=minbase trixie`` (~25 s).
- :data:`BOOT`: BASE + systemd, dbus, man-db, python3; pichat's runtime dependencies sit in
  apt's archive cache, so ``apt-get install --no-install-recommends
  ./pichat_*.deb`` works offline. (With Recommends it would fetch and byte-compile
  rich, pygments, cryptography... for a minute; pichat uses none of them.)
- :data:`RUNTIME`: BOOT with those dependencies installed, for tests that install
  the .deb but do not test its dependencies (saves ~10 s per install).
- :data:`BUILD`: BASE + debhelper, dh-python, pybuild-plugin-pyproject, lintian.
- :data:`ARM64`: an arm64 (emulated, qemu user mode) root with Python and pichat's
  dependencies, for ``packaging/arm64-check.sh``; it does not boot.
- Your own: ``RootSpec("ssh", parent=BOOT, packages=("openssh-server", "python3"))``
  then :func:`ensure_root` or :func:`boot` on it.

Containers (:mod:`tests.system.container`): ``with boot(BOOT) as container:`` boots
systemd on a throw-away overlay of the root (the cache is never written) and yields
a :class:`Container` once the system is up: ``run``, ``write``, ``read``,
``systemctl``, ``show``, ``wait_for``, ``wait_property``, ``journal``. The container
shares the host's network unless ``private_network=True``: pick ports with
:func:`free_port`.

The package (:mod:`tests.system.deb`): :func:`build_deb` returns
``pichat_<version>_all.deb`` built from the working tree by
``packaging/build-deb.sh``, cached by a digest of the source, so every caller in a
session (and later sessions on an unchanged tree) gets the same file at once.
"""

from __future__ import annotations

from .container import TIMEOUT, Container, ContainerError, boot, free_port
from .deb import build_deb
from .roots import ARM64, BASE, BOOT, BUILD, RUNTIME, RootSpec, chroot_run, ensure_root, use_root

__all__ = [
    "ARM64",
    "BASE",
    "BOOT",
    "BUILD",
    "RUNTIME",
    "TIMEOUT",
    "Container",
    "ContainerError",
    "RootSpec",
    "boot",
    "build_deb",
    "chroot_run",
    "ensure_root",
    "free_port",
    "use_root",
]
