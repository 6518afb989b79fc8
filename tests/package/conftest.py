"""Fixtures for the package tests: the .deb, and a Debian 13 container with it installed."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.system import BOOT, Container, boot, build_deb, ensure_root, free_port

# Where build_deb()'s directory is bound inside the containers.
DIST = "/mnt/dist"


@pytest.fixture(scope="session")
def deb() -> Path:
    """pichat_<version>_all.deb built from the working tree (cached by content).

    The root the containers boot is made meanwhile, when missing: from nothing
    that overlaps its downloads and installs with the build root's.
    """
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        boot_root = pool.submit(ensure_root, BOOT)
        package = build_deb()
        boot_root.result()
    return package


def deb_version(deb: Path) -> str:
    """The version in a ``pichat_<version>_all.deb`` file name."""
    return deb.name.split("_")[1]


@pytest.fixture(scope="session")
def next_deb(deb: Path) -> Path:
    """The same source built as a later version (``<version>+upgrade1``), for upgrades."""
    return build_deb(version=f"{deb_version(deb)}+upgrade1")


@dataclass
class Installed:
    """A booted container with the package installed, and the port pichat listens on."""

    container: Container
    port: int
    deb: Path


def port_drop_in(container: Container, port: int) -> None:
    """Make the packaged pichat listen on 127.0.0.1:``port`` instead of every interface, 3000.

    The container shares the host's network, where other tests run: a drop-in set
    before installing, so the service's very first start uses the free port.
    """
    container.write(
        "/etc/systemd/system/pichat.service.d/test-port.conf",
        f"[Service]\nEnvironment=PICHAT_HOST=127.0.0.1 PICHAT_PORT={port}\n",
    )


def apt_install(container: Container, deb: Path, inside: str = DIST) -> str:
    """``apt install ./pichat_*.deb`` as a user would; returns apt's output.

    Without Recommends: those of pydantic and pydantic-settings (rich, pygments,
    cryptography...) take a minute to byte-compile, and pichat uses none of them.
    """
    result = container.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", f"{inside}/{deb.name}"],
        timeout=300,
    )
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def installed(deb: Path) -> Iterator[Installed]:
    """A Debian 13 container, booted, with pichat installed on a free port."""
    with boot(BOOT, binds={deb.parent: DIST}) as container:
        port = free_port()
        port_drop_in(container, port)
        apt_install(container, deb)
        container.wait_property("pichat.service", "ActiveState", "active")
        yield Installed(container, port, deb)
