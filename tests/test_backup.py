"""``pichat backup``, ``export`` and ``restore``: live copies, bad input, resume after restore."""

from __future__ import annotations

import asyncio
import json
import resource
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pichat import cli
from pichat.app import Daemon
from pichat.state_dir import HISTORY_FILE
from pichat.systemd import SystemdEnvironment
from tests.conftest import join, recv_type, say
from tests.daemon import PUBLIC, REPO, TIMEOUT, render_toml
from tests.harness import running, settings_for


def config_for(directory: Path) -> Path:
    """A config file whose state_dir is the harness daemon's of ``directory``."""
    path = directory / "cli.toml"
    path.write_text(
        render_toml({"state_dir": str(directory / "state"), "document_root": str(PUBLIC)})
    )
    return path


async def pichat(*args: str) -> int:
    """``pichat ARGS`` in a thread (the daemon in this loop keeps serving meanwhile)."""
    return await asyncio.to_thread(cli.main, list(args))


def ids(path: Path) -> list[int]:
    """The message ids of a history file, in order."""
    with sqlite3.connect(path) as db:
        return [row[0] for row in db.execute("SELECT id FROM messages ORDER BY room, id")]


async def chat(daemon: Any, count: int, prefix: str = "m") -> tuple[Any, Any]:
    """Join as alice and store ``count`` messages; returns her connection and welcome."""
    ws, welcome = await join(daemon, "alice")
    for index in range(count):
        await say(ws, f"{prefix}{index}")
        await recv_type(ws, "message")
    return ws, welcome


async def test_backup_while_chatting_is_a_consistent_checked_copy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A backup taken while messages are committed holds ids 1..n; no overwrite without --force."""
    async with running(tmp_path, {"rate_messages": 100_000}) as daemon:
        ws, _ = await chat(daemon, 50)
        stop = asyncio.Event()

        async def keep_saying() -> None:
            index = 0
            while not stop.is_set():
                await say(ws, f"during {index}")
                await recv_type(ws, "message")
                index += 1

        writer = asyncio.create_task(keep_saying())
        target = tmp_path / "copy.sqlite3"
        assert await pichat("backup", "--config", str(config_for(tmp_path)), str(target)) == 0
        stop.set()
        await writer
        copied = ids(target)
        assert copied[:50] == list(range(1, 51)) and copied == list(range(1, len(copied) + 1))
        with sqlite3.connect(target) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
            assert db.execute("SELECT last_id FROM rooms").fetchone()[0] >= len(copied)
        assert "backed up 1 rooms" in capsys.readouterr().err
        before = target.read_bytes()
        config = str(config_for(tmp_path))
        assert await pichat("backup", "--config", config, str(target)) == 73
        assert "exists: pass --force" in capsys.readouterr().err
        assert target.read_bytes() == before
        assert await pichat("backup", "--config", config, "--force", str(target)) == 0
        assert len(ids(target)) >= len(copied)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["cli.toml", "copy.sqlite3", "state"]
        await ws.close()


async def test_restore_keeps_ids_and_epochs_so_pages_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused while running; after it, a page resumes without gap or duplicate, ids go on."""
    config = str(config_for(tmp_path))
    backup_file = tmp_path / "backup.sqlite3"
    state = tmp_path / "state"
    async with running(tmp_path) as daemon:
        ws, welcome = await chat(daemon, 3)
        epoch = welcome["epoch"]
        assert await pichat("backup", "--config", config, str(backup_file)) == 0
        for text in ("after backup 1", "after backup 2"):  # ids 4 and 5: not in the backup
            await say(ws, text)
            await recv_type(ws, "message")
        await ws.close()
        before = (state / HISTORY_FILE).read_bytes()
        assert await pichat("restore", "--config", config, str(backup_file)) == 75
        assert "in use by another pichat" in capsys.readouterr().err
        assert (state / HISTORY_FILE).read_bytes() == before
    assert await pichat("restore", "--config", config, str(backup_file)) == 0
    assert "the replaced database is" in capsys.readouterr().err
    (kept,) = [
        p
        for p in state.iterdir()
        if p.name.startswith(f"{HISTORY_FILE}.replaced-") and not p.name.endswith(("-wal", "-shm"))
    ]
    assert ids(kept) == [1, 2, 3, 4, 5]  # the replaced history, intact beside it
    assert ids(state / HISTORY_FILE) == [1, 2, 3]
    async with running(tmp_path) as daemon:
        # Saw everything up to 5: nothing to replay, no gap, same epoch.
        seen, resumed = await join(daemon, "seen", since=5, epoch=epoch)
        assert (resumed["epoch"], resumed["resumed"], resumed["gap"]) == (epoch, True, False)
        assert resumed["history"] == []
        # Saw up to 1: gets 2 and 3 from the backup.
        behind, resumed = await join(daemon, "behind", since=1, epoch=epoch)
        assert [m["id"] for m in resumed["history"]] == [2, 3] and resumed["gap"] is False
        await say(seen, "new")
        assert (await recv_type(seen, "message"))["id"] == 6  # never 4 again
        await seen.close()
        await behind.close()


async def test_daemon_refuses_a_state_directory_in_use(tmp_path: Path) -> None:
    """A second daemon on the same state directory exits 73 with one line."""
    async with running(tmp_path) as daemon:
        second = Daemon(settings_for(tmp_path), None, SystemdEnvironment())
        assert await asyncio.wait_for(second.run(), TIMEOUT) == 73
        ws, _ = await join(daemon, "still served")
        await ws.close()


def _newer(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE messages (x)")
        db.execute("CREATE TABLE rooms (x)")
        db.execute("PRAGMA user_version = 99")


def _foreign(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE notes (x)")


def _damaged(path: Path, good: Path) -> None:
    data = bytearray(good.read_bytes())
    page = 4096
    data[page + 100 : page * 3] = b"\xff" * (page * 2 - 100)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("kind", "code", "says"),
    [
        ("missing", 66, "cannot read"),
        ("directory", 66, "Is a directory"),
        ("not sqlite", 65, "not a pichat database"),
        ("foreign", 65, "no pichat tables"),
        ("newer", 65, "from a newer pichat (schema 99"),
        ("damaged", 65, "damaged"),
    ],
)
async def test_restore_refuses_bad_input_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, code: int, says: str
) -> None:
    """Each bad file gives one line and its exit code; the history stays as it was."""
    config = str(config_for(tmp_path))
    async with running(tmp_path, {"rate_messages": 1000}) as daemon:
        ws, _ = await chat(daemon, 300, prefix="x" * 500)
        await ws.close()
        good = tmp_path / "good.sqlite3"
        assert await pichat("backup", "--config", config, str(good)) == 0
    bad = tmp_path / "bad"
    if kind == "directory":
        bad.mkdir()
    elif kind == "not sqlite":
        bad.write_bytes(b"hello, this is not a database\n" * 200)
    elif kind == "foreign":
        _foreign(bad)
    elif kind == "newer":
        _newer(bad)
    elif kind == "damaged":
        _damaged(bad, good)
    history = tmp_path / "state" / HISTORY_FILE
    before = history.read_bytes()
    capsys.readouterr()
    assert await pichat("restore", "--config", config, str(bad)) == code
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1, err
    assert history.read_bytes() == before
    assert not [p for p in history.parent.iterdir() if "partial" in p.name or "replaced" in p.name]


async def test_backup_on_a_full_disk_keeps_the_old_backup(tmp_path: Path) -> None:
    """A failing write (a file size limit: a full disk to this process) exits 73, harms nothing."""
    config = config_for(tmp_path)
    async with running(tmp_path, {"rate_messages": 1000}) as daemon:
        ws, _ = await chat(daemon, 200, prefix="y" * 1500)
        await ws.close()
    target = tmp_path / "nightly.sqlite3"
    target.write_bytes(b"yesterday's backup")

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))

    result = subprocess.run(
        [sys.executable, "-m", "pichat", "backup", "--config", str(config), "--force", str(target)],
        cwd=REPO,
        preexec_fn=small_files,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 73, result.stderr
    assert (
        result.stderr.startswith("pichat backup: cannot write") and result.stderr.count("\n") == 1
    )
    assert target.read_bytes() == b"yesterday's backup"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cli.toml", "nightly.sqlite3", "state"]


async def test_export_formats_a_live_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """jsonl gives pichat.v1 message objects, txt lines, html an escaped page; --room filters."""
    config = str(config_for(tmp_path))
    sites = [{"server_names": ["club.test"], "room": "club"}]
    async with running(tmp_path, {"sites": sites}) as daemon:
        ws, _ = await chat(daemon, 2)
        await say(ws, "<script>alert(1)</script> & more")
        await recv_type(ws, "message")
        other, _ = await join(daemon, "bob", host="club.test")
        await say(other, "in the club")
        await recv_type(other, "message")
        capsys.readouterr()
        assert await pichat("export", "--config", config) == 0
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [(m["room"], m["id"], m["name"]) for m in lines] == [
            ("club", 1, "bob"),
            ("lobby", 1, "alice"),
            ("lobby", 2, "alice"),
            ("lobby", 3, "alice"),
        ]
        assert set(lines[0]) == {"type", "id", "date", "name", "avatar", "text", "room"}
        assert await pichat("export", "--config", config, "--room", "lobby", "--format", "txt") == 0
        text = capsys.readouterr().out
        assert text.startswith("# lobby\n[") and "] alice: m1\n" in text and "club" not in text
        page = tmp_path / "history.html"
        args = ("--format", "html", "--output", str(page))
        assert await pichat("export", "--config", config, *args) == 0
        assert "exported 4 messages" in capsys.readouterr().err
        body = page.read_text()
        assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in body
        assert "<script>" not in body and body.startswith("<!doctype html>")
        await ws.close()
        await other.close()


async def test_export_and_backup_of_a_missing_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No history yet: one line, exit 66, and no database is created."""
    config = str(config_for(tmp_path))
    assert await pichat("export", "--config", config) == 66
    assert await pichat("backup", "--config", config, str(tmp_path / "b.sqlite3")) == 66
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all("cannot read" in line for line in err)
    assert not (tmp_path / "state" / HISTORY_FILE).exists()
