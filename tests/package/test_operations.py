"""The installed package's operations under real systemd: nightly backups, TLS by credential.

One booted Debian 13 container for the module, the package installed on a free
port. The backup tests start the shipped ``pichat-backup.service`` as the timer
would and read what it wrote; the TLS test hands a key that only root can read to
the dynamic-user daemon with the ``LoadCredential=`` drop-in docs/debian.md shows.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from tests.package.conftest import Installed
from tests.system import TIMEOUT, Container
from tests.system.client import Chat, round_trip
from tests.system.roots import REPO
from tests.tls import TestCA

pytestmark = [pytest.mark.system, pytest.mark.timeout(1200)]

UNIT = "pichat.service"
BACKUP = "pichat-backup.service"
TIMER = "pichat-backup.timer"
BACKUPS = "/var/backups/pichat"
CONFFILE = "/etc/pichat/pichat.toml"
DROP_IN = "/etc/systemd/system/pichat.service.d/tls.conf"
KEEP_DROP_IN = "/etc/systemd/system/pichat-backup.service.d/keep.conf"

# Run inside the container with its python3: the backup's verdict and contents.
_CHECK = """
import json, sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
print(json.dumps({
    "integrity": db.execute("PRAGMA integrity_check").fetchone()[0],
    "journal_mode": db.execute("PRAGMA journal_mode").fetchone()[0],
    "texts": [row[0] for row in db.execute("SELECT text FROM messages ORDER BY id")],
}))
"""


def backups(container: Container) -> list[str]:
    """The names in /var/backups/pichat, sorted."""
    return sorted(container.run(["ls", "-A", BACKUPS]).stdout.split())


def check_backup(container: Container, name: str) -> dict[str, object]:
    """integrity_check, journal mode and the message texts of one backup, read in the container."""
    out = container.run(["python3", "-c", _CHECK, f"{BACKUPS}/{name}"]).stdout
    result: dict[str, object] = json.loads(out)
    return result


def start_backup(container: Container) -> str:
    """``systemctl start pichat-backup.service`` (a oneshot: returns when done); its journal."""
    cursor = container.journal_cursor()
    container.systemctl("start", BACKUP)
    assert container.show(BACKUP, "Result") == "success"
    return container.journal(BACKUP, since_cursor=cursor)


def exposure(container: Container, unit: str) -> float:
    """``systemd-analyze security``'s overall exposure of ``unit``."""
    out = container.run(["systemd-analyze", "security", "--no-pager", unit], check=False).stdout
    match = re.search(rf"Overall exposure level for {re.escape(unit)}: (\d+\.\d+)", out)
    assert match, out
    return float(match.group(1))


@pytest.fixture
def empty_backups(installed: Installed) -> Iterator[Container]:
    """The container with /var/backups/pichat emptied before and after, pichat running after."""
    container = installed.container
    container.run(f"rm -f {BACKUPS}/*")
    yield container
    container.run(f"rm -f {BACKUPS}/* {KEEP_DROP_IN}")
    container.systemctl("daemon-reload")
    container.systemctl("start", UNIT)


def test_backup_timer_ships_disabled_and_nightly(installed: Installed) -> None:
    """The timer is installed off; nightly, persistent, spread; the backup directory is root's."""
    container = installed.container
    state = container.systemctl("is-enabled", TIMER, check=False).stdout.strip()
    assert state == "disabled"
    assert container.show(TIMER, "ActiveState") == "inactive"
    assert container.show(BACKUP, "ActiveState") == "inactive"
    assert container.show(TIMER, "Persistent") == "yes"
    assert container.show(TIMER, "RandomizedDelayUSec") == "1h"
    assert "OnCalendar=*-*-* 03:00:00" in container.show(TIMER, "TimersCalendar")
    mode = container.run(["stat", "-c", "%a %U:%G", BACKUPS]).stdout.strip()
    assert mode == "700 root:root"
    verify = container.run(["systemd-analyze", "verify", TIMER, BACKUP], check=False)
    assert verify.returncode == 0 and verify.stdout + verify.stderr == "", verify.stderr


async def test_backup_service_writes_a_valid_backup_while_pichat_runs(
    installed: Installed, empty_backups: Container
) -> None:
    """Started as the timer would, the service writes one checked copy holding what was said."""
    container = empty_backups
    welcome, message = await round_trip(installed.port)
    assert message["text"] == "hello from the round trip"
    journal = start_backup(container)
    (name,) = backups(container)
    assert re.fullmatch(r"pichat-\d{8}T\d{6}Z\.sqlite3", name), name
    assert f"to {BACKUPS}/{name}" in journal, journal
    stat = container.run(["stat", "-c", "%a %U:%G", f"{BACKUPS}/{name}"]).stdout.strip()
    assert stat == "600 root:root"
    checked = check_backup(container, name)
    assert (checked["integrity"], checked["journal_mode"]) == ("ok", "delete")
    assert "hello from the round trip" in checked["texts"]  # type: ignore[operator]
    assert container.show(UNIT, "SubState") == "running"
    print(f"pichat-backup.service exposure: {exposure(container, BACKUP)}")
    assert exposure(container, BACKUP) <= 3.0


async def test_backup_service_keeps_the_newest_and_spares_a_stopped_history(
    installed: Installed, empty_backups: Container
) -> None:
    """BACKUP_KEEP=2: three runs leave two; run while pichat is stopped, pichat then writes on."""
    container = empty_backups
    container.write(KEEP_DROP_IN, "[Service]\nEnvironment=BACKUP_KEEP=2\n")
    container.systemctl("daemon-reload")
    container.run(["rm", "-rf", BACKUPS])  # deleted by hand: made again, private
    start_backup(container)
    mode = container.run(["stat", "-c", "%a %U:%G", BACKUPS]).stdout.strip()
    assert mode == "700 root:root"
    container.write(f"{BACKUPS}/notes.txt", "kept by hand\n")
    start_backup(container)
    # Stopped: SQLite's -wal and -shm made by the root backup must stay the daemon's.
    container.systemctl("stop", UNIT)
    journal = start_backup(container)
    assert "removed 1 older" in journal, journal
    names = backups(container)
    assert len(names) == 3 and "notes.txt" in names, names
    container.systemctl("start", UNIT)
    container.wait_property(UNIT, "SubState", "running")
    chat = Chat(installed.port, "after the backup")
    await chat.connect()
    said = await chat.say("written after a backup of the stopped history")
    await chat.close()
    assert said["text"] == "written after a backup of the stopped history"
    owners = container.run("stat -c '%U %n' /var/lib/private/pichat/history.sqlite3*").stdout
    assert "root" not in owners, owners


def deploy_hook(containing: str) -> str:
    """The certbot deploy hook of docs/debian.md that contains ``containing``, as written."""
    text = (REPO / "docs" / "debian.md").read_text()
    hooks = []
    for block in text.split("\n    #!/bin/sh\n")[1:]:
        lines = []
        for line in block.splitlines():
            if line and not line.startswith("    "):
                break
            lines.append(line[4:])
        hooks.append("\n".join(lines).strip() + "\n")
    (hook,) = [hook for hook in hooks if containing in hook]
    return hook


def served_name(port: int, context: ssl.SSLContext) -> str:
    """The CN of the certificate a new TLS handshake on ``port`` gets."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls_socket:
            subject = dict(item[0] for item in tls_socket.getpeercert()["subject"])
            return str(subject["commonName"])


def https_json(port: int, path: str, context: ssl.SSLContext) -> tuple[dict[str, str], object]:
    """GET ``https://127.0.0.1:PORT/PATH`` verified by ``context``: the headers and JSON body."""
    request = urllib.request.Request(f"https://127.0.0.1:{port}{path}")
    with urllib.request.urlopen(request, timeout=TIMEOUT, context=context) as response:
        return dict(response.headers), json.load(response)


@pytest.fixture
def tls(installed: Installed, tmp_path: Path) -> Iterator[tuple[Container, TestCA]]:
    """A test CA; after the test, the drop-in and the conffile put back, pichat restarted plain."""
    container = installed.container
    original = container.read(CONFFILE)
    yield container, TestCA(tmp_path / "ca")
    container.write(CONFFILE, original)
    container.run(["rm", "-rf", DROP_IN, "/etc/pichat-test-tls"])
    container.systemctl("daemon-reload")
    container.systemctl("reset-failed", UNIT)
    container.systemctl("restart", UNIT)


async def test_tls_with_a_root_only_key_through_load_credential(
    installed: Installed, tls: tuple[Container, TestCA]
) -> None:
    """The drop-in hands a 0600 root key to the dynamic user: https and wss verify; score kept."""
    container, ca = tls
    certificate, key = ca.issue("pichat-in-container")
    container.write("/etc/pichat-test-tls/chat.pem", certificate.read_bytes(), mode=0o644)
    container.write("/etc/pichat-test-tls/chat.key", key.read_bytes(), mode=0o600)
    container.run(["chmod", "0700", "/etc/pichat-test-tls"])
    container.write(
        DROP_IN,
        "[Service]\n"
        "LoadCredential=chat.pem:/etc/pichat-test-tls/chat.pem\n"
        "LoadCredential=chat.key:/etc/pichat-test-tls/chat.key\n",
    )
    config = container.read(CONFFILE)
    container.write(
        CONFFILE,
        'tls_certificate = "/run/credentials/pichat.service/chat.pem"\n'
        'tls_private_key = "/run/credentials/pichat.service/chat.key"\n' + config,
    )
    container.systemctl("daemon-reload")
    container.systemctl("restart", UNIT)
    container.wait_property(UNIT, "SubState", "running")
    # The service's user really could not read the key itself.
    user = container.show(UNIT, "User") or "pichat"
    assert container.run(["stat", "-c", "%a %U", "/etc/pichat-test-tls/chat.key"]).stdout == (
        "600 root\n"
    ), user
    context = ca.client_context()
    headers, health = https_json(installed.port, "/healthz", context)
    assert health["status"] == "ok"  # type: ignore[index]
    assert headers["Strict-Transport-Security"].startswith("max-age=")
    async with connect(
        f"wss://127.0.0.1:{installed.port}/",
        ssl=context,
        subprotocols=[Subprotocol("pichat.v1")],
        open_timeout=TIMEOUT,
    ) as ws:
        await ws.send(json.dumps({"type": "join", "name": "secure"}))
        while json.loads(await ws.recv())["type"] != "welcome":
            pass
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        https_json(installed.port, "/healthz", ssl.create_default_context())  # no test CA
    # Renewal: the documented hook restarts; a reload alone would keep the old copy.
    renewed, renewed_key = ca.issue("renewed")
    container.write("/etc/pichat-test-tls/chat.pem", renewed.read_bytes(), mode=0o644)
    container.write("/etc/pichat-test-tls/chat.key", renewed_key.read_bytes(), mode=0o600)
    container.systemctl("reload", UNIT)
    # systemd 257 copies credentials at start only (docs/debian.md says so; if this
    # fails, systemd refreshes them on reload and the doc's hook could reload).
    assert served_name(installed.port, context) == "pichat-in-container"
    container.run(["sh", "-c", deploy_hook("LoadCredential")])
    container.wait_property(UNIT, "SubState", "running")
    assert served_name(installed.port, context) == "renewed"
    score = exposure(container, UNIT)
    print(f"pichat.service exposure with the credential drop-in: {score}")
    assert score <= 1.5


async def test_deploy_hook_copy_in_the_state_directory_renews_on_reload(
    installed: Installed, tls: tuple[Container, TestCA]
) -> None:
    """The reload hook of docs/debian.md: new handshakes get the renewed pair, a client stays."""
    container, ca = tls
    live = "/etc/pichat-test-tls/live"
    hook = deploy_hook("install -m 0600")

    def renew(name: str) -> None:
        certificate, key = ca.issue(name)
        container.write(f"{live}/fullchain.pem", certificate.read_bytes(), mode=0o644)
        container.write(f"{live}/privkey.pem", key.read_bytes(), mode=0o600)
        container.run(["sh", "-c", hook], env={"RENEWED_LINEAGE": live})

    renew("first")  # by hand, once, as the doc says; then TLS on with a restart
    config = container.read(CONFFILE)
    container.write(
        CONFFILE,
        'tls_certificate = "/var/lib/pichat/tls-chain.pem"\n'
        'tls_private_key = "/var/lib/pichat/tls-key.pem"\n' + config,
    )
    container.systemctl("restart", UNIT)
    container.wait_property(UNIT, "SubState", "running")
    listing = container.run("stat -c '%a %U %n' /var/lib/private/pichat/tls-*").stdout
    assert listing.count("600 ") == 2 and "root" not in listing, listing
    context = ca.client_context()
    assert served_name(installed.port, context) == "first"
    pid = container.show(UNIT, "MainPID")
    async with connect(
        f"wss://127.0.0.1:{installed.port}/",
        ssl=context,
        subprotocols=[Subprotocol("pichat.v1")],
        open_timeout=TIMEOUT,
    ) as ws:
        await ws.send(json.dumps({"type": "join", "name": "stays"}))
        while json.loads(await ws.recv())["type"] != "welcome":
            pass
        renew("second")
        assert served_name(installed.port, context) == "second"
        await ws.send(json.dumps({"type": "say", "text": "still here"}))
        while (frame := json.loads(await ws.recv()))["type"] != "message":
            pass
        assert frame["text"] == "still here"
    assert container.show(UNIT, "MainPID") == pid
