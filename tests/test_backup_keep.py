"""``pichat backup --keep N DIR``: dated copies, rotation, and bad input that harms nothing.

What ``pichat-backup.service`` runs nightly. The history comes from a real
daemon; the backups are real backups under older names, so every file the
rotation keeps or removes is a pichat database.
"""

from __future__ import annotations

import fcntl
import os
import re
import resource
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from pichat.state_dir import HISTORY_FILE
from tests.daemon import REPO, TIMEOUT
from tests.harness import running
from tests.test_backup import _foreign, _newer, chat, config_for, ids, pichat

NAME = re.compile(r"pichat-\d{8}T\d{6}Z(-\d+)?\.sqlite3")


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file of ``directory`` and its bytes."""
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def new_backups(directory: Path, before: dict[str, bytes]) -> list[str]:
    """The dated backups in ``directory`` that were not in ``before``."""
    return [p.name for p in directory.iterdir() if NAME.fullmatch(p.name) and p.name not in before]


@pytest.fixture
async def history(tmp_path: Path) -> Path:
    """A config whose state directory holds a history of 20 messages (daemon stopped)."""
    async with running(tmp_path, {"rate_messages": 1000}) as daemon:
        ws, _ = await chat(daemon, 20)
        await ws.close()
    return config_for(tmp_path)


def pichat_process(config: Path, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """``python -m pichat backup --config CONFIG ARGS`` as a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "pichat", "backup", "--config", str(config), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        **kwargs,  # type: ignore[call-overload]
    )


async def test_keep_writes_a_dated_copy_and_removes_the_oldest(
    tmp_path: Path, history: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--keep 3 with four older backups: a new checked copy, the two newest older ones stay."""
    target = tmp_path / "backups"
    target.mkdir()
    seed = tmp_path / "seed.sqlite3"
    assert await pichat("backup", "--config", str(history), str(seed)) == 0
    for day in (25, 26, 27, 28):
        shutil.copy(seed, target / f"pichat-202611{day:02d}T031500Z.sqlite3")
    (target / "pichat-before-upgrade.sqlite3").write_bytes(b"a copy made by hand")
    (target / "README").write_text("not a backup\n")
    before = snapshot(target)
    capsys.readouterr()
    assert await pichat("backup", "--config", str(history), "--keep", "3", str(target)) == 0
    err = capsys.readouterr().err
    (new,) = new_backups(target, before)
    assert err == f"backed up 1 rooms, 20 messages to {target / new}; removed 2 older\n"
    assert ids(target / new) == list(range(1, 21))
    assert sorted(p.name for p in target.iterdir()) == sorted(
        [
            "README",
            "pichat-before-upgrade.sqlite3",
            "pichat-20261127T031500Z.sqlite3",
            "pichat-20261128T031500Z.sqlite3",
            new,
        ]
    )


async def test_keep_makes_a_private_directory_and_names_two_runs_apart(
    tmp_path: Path, history: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing directory is made mode 0700; two runs in a row give two files, none lost."""
    target = tmp_path / "backups"
    config = str(history)
    assert await pichat("backup", "--config", config, "--keep", "2", str(target)) == 0
    assert target.stat().st_mode & 0o777 == 0o700
    assert await pichat("backup", "--config", config, "--keep", "2", str(target)) == 0
    assert await pichat("backup", "--config", config, "--keep", "2", str(target)) == 0
    kept = sorted(p.name for p in target.iterdir())
    assert len(kept) == 2 and all(NAME.fullmatch(name) for name in kept), kept
    assert "removed 1 older" in capsys.readouterr().err.splitlines()[-1]
    for name in kept:
        assert ids(target / name) == list(range(1, 21))


async def test_keep_while_chatting_is_a_consistent_copy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Taken from a live daemon, the dated copy holds ids 1..n with no hole."""
    target = tmp_path / "backups"
    async with running(tmp_path) as daemon:
        ws, _ = await chat(daemon, 5)
        assert (
            await pichat(
                "backup", "--config", str(config_for(tmp_path)), "--keep", "1", str(target)
            )
            == 0
        )
        await ws.close()
    (name,) = [p.name for p in target.iterdir()]
    assert ids(target / name) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--keep", "0"], "--keep: 0: keep at least 1 backup"),
        (["--keep", "many"], "--keep: 'many' is not a whole number"),
        (["--keep", "2", "--force"], "not allowed with argument --keep"),
    ],
)
def test_bad_keep_values_are_refused(
    tmp_path: Path, args: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --keep that is not a count from 1 is a usage error (exit 2) and makes nothing."""
    config = config_for(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        from pichat import cli

        cli.main(["backup", "--config", str(config), *args, str(tmp_path / "backups")])
    assert exit_.value.code == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "backups").exists()


def _seeded(tmp_path: Path, seed: Path) -> Path:
    target = tmp_path / "backups"
    target.mkdir(exist_ok=True)
    for day in (27, 28):
        shutil.copy(seed, target / f"pichat-202611{day:02d}T031500Z.sqlite3")
    return target


async def test_a_full_disk_removes_no_older_backup(tmp_path: Path, history: Path) -> None:
    """A failing write (a file size limit: a full disk to this process) exits 73; all stays."""
    seed = tmp_path / "seed.sqlite3"
    assert await pichat("backup", "--config", str(history), str(seed)) == 0
    # A bigger history than the limit below: the copy fails halfway.
    with sqlite3.connect(tmp_path / "state" / HISTORY_FILE) as db:
        db.execute("CREATE TABLE padding (x)")
        db.execute("INSERT INTO padding VALUES (zeroblob(300000))")
    target = _seeded(tmp_path, seed)
    before = snapshot(target)

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (131072, 131072))

    result = pichat_process(history, "--keep", "1", str(target), preexec_fn=small_files)
    assert result.returncode == 73, result.stderr
    assert result.stderr.startswith("pichat backup: cannot write") and (
        result.stderr.count("\n") == 1
    ), result.stderr
    assert snapshot(target) == before  # no partial file left, no old backup removed


@pytest.mark.parametrize(
    ("kind", "code", "says"),
    [
        ("not sqlite", 65, "is not a pichat database"),
        ("foreign", 65, "no pichat tables"),
        ("newer", 65, "is from a newer pichat (schema 99"),
        ("missing", 66, "cannot read"),
    ],
)
async def test_a_bad_history_is_one_line_and_changes_nothing(
    tmp_path: Path,
    history: Path,
    capsys: pytest.CaptureFixture[str],
    kind: str,
    code: int,
    says: str,
) -> None:
    """A history that is not a pichat database this pichat reads: one line, no new file."""
    seed = tmp_path / "seed.sqlite3"
    assert await pichat("backup", "--config", str(history), str(seed)) == 0
    target = _seeded(tmp_path, seed)
    path = tmp_path / "state" / HISTORY_FILE
    path.unlink()
    if kind == "not sqlite":
        path.write_bytes(b"hello, this is not a database\n" * 200)
    elif kind == "foreign":
        _foreign(path)
    elif kind == "newer":
        _newer(path)
    state_before = snapshot(path.parent)
    before = snapshot(target)
    capsys.readouterr()
    assert await pichat("backup", "--config", str(history), "--keep", "1", str(target)) == code
    err = capsys.readouterr().err
    assert says in err and str(path) in err and len(err.splitlines()) == 1, err
    assert snapshot(target) == before
    assert snapshot(path.parent) == state_before
    # A plain backup names the history too (not its partial copy), and writes nothing.
    single = tmp_path / "single.sqlite3"
    assert await pichat("backup", "--config", str(history), str(single)) == code
    err = capsys.readouterr().err
    assert says in err and str(path) in err and "partial" not in err, err
    assert not single.exists() and snapshot(path.parent) == state_before


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv"
)
async def test_an_unreadable_history_is_one_line(tmp_path: Path, history: Path) -> None:
    """Root without capabilities cannot read another user's 0600 history: exit 66 naming it."""
    seed = tmp_path / "seed.sqlite3"
    assert await pichat("backup", "--config", str(history), str(seed)) == 0
    target = _seeded(tmp_path, seed)
    path = tmp_path / "state" / HISTORY_FILE
    os.chown(path, 65534, 65534)
    path.chmod(0o600)
    before = snapshot(target)
    argv = [sys.executable, "-m", "pichat", "backup", "--config", str(history)]
    result = subprocess.run(
        ["setpriv", "--bounding-set=-all", "--inh-caps=-all", *argv, "--keep", "1", str(target)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 66, result.stderr
    assert result.stderr == f"pichat backup: cannot read {path}: Permission denied\n"
    assert snapshot(target) == before


async def test_a_target_that_is_a_file_is_refused(
    tmp_path: Path, history: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--keep names a directory: an existing file there is left alone, exit 73."""
    target = tmp_path / "backups"
    target.write_bytes(b"some file")
    assert await pichat("backup", "--config", str(history), "--keep", "3", str(target)) == 73
    assert capsys.readouterr().err == f"pichat backup: {target} is not a directory\n"
    assert target.read_bytes() == b"some file"


async def test_a_cut_off_backup_leaves_nothing_behind_the_next_night(
    tmp_path: Path, history: Path
) -> None:
    """The partial copy of a backup killed midway (a power cut) goes with the next run."""
    target = tmp_path / "backups"
    target.mkdir()
    partial = target / ".pichat-20261201T031500Z.sqlite3.partial-4242"
    partial.write_bytes(b"half a database")
    by_hand = target / ".mine.sqlite3.partial-1"
    by_hand.write_bytes(b"not ours")
    assert await pichat("backup", "--config", str(history), "--keep", "2", str(target)) == 0
    assert not partial.exists() and by_hand.exists()
    assert len(new_backups(target, {})) == 1


async def test_a_second_backup_into_the_same_directory_waits_its_turn(
    tmp_path: Path, history: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """While one rotating backup holds the directory, another exits 75 and touches nothing."""
    target = tmp_path / "backups"
    target.mkdir()
    partial = target / ".pichat-20261201T031500Z.sqlite3.partial-4242"
    partial.write_bytes(b"the other backup's copy in progress")
    fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        code = await pichat("backup", "--config", str(history), "--keep", "2", str(target))
    finally:
        os.close(fd)
    assert code == 75
    assert capsys.readouterr().err == (
        f"pichat backup: another pichat backup --keep into {target} is running\n"
    )
    assert [p.name for p in target.iterdir()] == [partial.name]
