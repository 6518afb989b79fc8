"""Upgrade, remove and purge of the package in a booted Debian 13 container.

The tests run in order on one container, as an administrator would: install,
edit the conffile and chat; upgrade; remove; purge.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.package.conftest import DIST, apt_install, deb_version, port_drop_in
from tests.system import BOOT, Container, boot, free_port
from tests.system.client import Chat, get_json

# The first test's setup may build the Debian 13 roots and the .deb from nothing.
pytestmark = [pytest.mark.system, pytest.mark.timeout(1200)]

CONFFILE = "/etc/pichat/pichat.toml"
UNIT = "pichat.service"
NEXT = "/mnt/next"
TITLE = "Edited by the administrator"
STATE = "/var/lib/private/pichat/history.sqlite3"


@dataclass
class Lifecycle:
    """The container, pichat's port, and what the first install left behind."""

    container: Container
    port: int
    message: dict[str, object]


async def _history(port: int) -> list[str]:
    chat = Chat(port, "auditor")
    await chat.connect()
    await chat.close()
    return [str(message["text"]) for message in chat.messages]


@pytest.fixture(scope="module")
def lifecycle(deb: Path, next_deb: Path) -> Iterator[Lifecycle]:
    """A container with the first build installed, its conffile edited, one message sent."""
    with boot(BOOT, binds={deb.parent: DIST, next_deb.parent: NEXT}) as container:
        port = free_port()
        port_drop_in(container, port)
        apt_install(container, deb)
        container.wait_property(UNIT, "ActiveState", "active")
        container.run(["sed", "-i", f'0,/^#title = .*/s//title = "{TITLE}"/', CONFFILE])
        container.systemctl("reload", UNIT)
        assert get_json(port, "/site.json")["title"] == TITLE

        async def say() -> dict[str, object]:
            chat = Chat(port, "historian")
            await chat.connect()
            try:
                return await chat.say("written before the upgrade")
            finally:
                await chat.close()

        message = asyncio.run(say())
        yield Lifecycle(container, port, message)


async def test_upgrade_keeps_the_edited_conffile_and_the_history(
    lifecycle: Lifecycle, next_deb: Path
) -> None:
    """apt install of a newer build restarts pichat with the edited conffile and the history."""
    container = lifecycle.container
    pid = container.show(UNIT, "MainPID")
    apt_install(container, next_deb, NEXT)
    container.wait_property(UNIT, "ActiveState", "active")
    assert container.show(UNIT, "MainPID") != pid, "the upgrade did not restart pichat"
    assert get_json(lifecycle.port, "/healthz")["version"] == deb_version(next_deb)
    assert f'\ntitle = "{TITLE}"\n' in container.read(CONFFILE)
    assert container.run("ls /etc/pichat").stdout.split() == ["pichat.toml"]
    assert get_json(lifecycle.port, "/site.json")["title"] == TITLE
    assert "written before the upgrade" in await _history(lifecycle.port)


def test_remove_keeps_the_conffile_and_the_history(lifecycle: Lifecycle) -> None:
    """apt remove stops pichat and keeps /etc/pichat/pichat.toml and the history."""
    container = lifecycle.container
    container.run(["apt-get", "remove", "-y", "-q", "pichat"])
    status = container.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", "pichat"]).stdout
    assert status.strip() == "rc"
    assert container.show(UNIT, "LoadState") == "not-found"
    container.run(["test", "!", "-e", "/usr/bin/pichat"])
    assert f'\ntitle = "{TITLE}"\n' in container.read(CONFFILE)
    container.run(["test", "-s", STATE])


def test_purge_removes_config_and_state(lifecycle: Lifecycle) -> None:
    """apt purge removes the configuration, the history and everything systemd made for it."""
    container = lifecycle.container
    container.run(["apt-get", "purge", "-y", "-q", "pichat"])
    status = container.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", "pichat"], check=False)
    assert status.returncode != 0 or status.stdout.strip() in ("", "un")
    for path in ("/etc/pichat", "/var/lib/pichat", "/var/lib/private/pichat"):
        container.run(["test", "!", "-e", path])
    leftovers = container.run(
        "find /etc /usr /var -name '*pichat*' -not -path '/var/lib/dpkg/*'"
        " -not -path '/var/cache/*' -not -path '/var/log/*'"
    ).stdout.split()
    # The port drop-in is the test's own file; the backups are the owner's, kept on
    # purge like a history copy (docs/debian.md, "Nightly backup").
    assert sorted(leftovers) == ["/etc/systemd/system/pichat.service.d", "/var/backups/pichat"]
