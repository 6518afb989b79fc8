"""Validation in a child process: the daemon never loads pydantic, and every failure is one line."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pichat import config_child
from pichat.config_child import ChildFailed
from pichat.settings import ConfigError, load
from pichat.settings_values import SettingsValues
from tests.conftest import join, recv_type, say
from tests.daemon import PUBLIC, TIMEOUT, Daemon, modules_after_import
from tests.harness import running
from tests.http import raw_get


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No PICHAT_ variables from the caller: the child reads them as configuration."""
    for name in list(os.environ):
        if name.startswith("PICHAT_"):
            monkeypatch.delenv(name)


def _config(tmp_path: Path, text: str = "") -> Path:
    path = tmp_path / "pichat.toml"
    path.write_text(f'state_dir = "{tmp_path / "state"}"\ndocument_root = "{PUBLIC}"\n{text}')
    return path


def _broken_pydantic(directory: Path) -> None:
    """A ``pydantic`` package that fails to import: only a process that imports it dies."""
    package = directory / "pydantic"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('raise ImportError("pydantic broken on purpose")\n')


def test_the_child_answers_what_load_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child's settings equal load()'s, environment variables included, with the file's path."""
    path = _config(tmp_path, 'title = "Child"\n[[sites]]\nserver_names = ["a.example"]\n')
    monkeypatch.setenv("PICHAT_PORT", "4242")
    settings, found = config_child.start(path).result()
    assert found == path
    assert settings == SettingsValues(load(path).model_dump())
    assert (settings.port, settings.title, settings.sites[0].room) == (4242, "Child", "lobby")


def test_the_child_finds_the_file_in_pichat_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --config the child finds the file as load() callers do, and names it."""
    path = _config(tmp_path)
    monkeypatch.setenv("PICHAT_CONFIG", str(path))
    _, found = config_child.start(None).result()
    assert found == path


def test_the_child_reports_every_bad_key(tmp_path: Path) -> None:
    """An invalid file is the same ConfigError as in-process: same source, same problems."""
    path = _config(tmp_path, 'port = "abc"\ncolour = "red"\n')
    with pytest.raises(ConfigError) as in_process:
        load(path)
    with pytest.raises(ConfigError) as child:
        config_child.start(path).result()
    assert (child.value.source, child.value.problems) == (
        in_process.value.source,
        in_process.value.problems,
    )


def test_a_child_that_hangs_is_killed_after_the_timeout(tmp_path: Path) -> None:
    """A config file that is a FIFO with no writer hangs the child: killed, ChildFailed."""
    fifo = tmp_path / "pichat.toml"
    os.mkfifo(fifo)
    pending = config_child.start(fifo, timeout=0.5)
    with pytest.raises(ChildFailed, match=r"did not answer within 0\.5 s"):
        pending.result()
    assert pending.process.returncode == -signal.SIGKILL


async def test_a_hanging_reload_is_killed_and_the_config_kept(tmp_path: Path) -> None:
    """A reload whose check does not answer in time logs one line and keeps serving as before."""
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    async with running(tmp_path, {"title": "Before"}) as daemon:
        assert daemon.server is not None
        daemon.daemon.config_file = fifo
        daemon.daemon.config_timeout = 0.5
        await daemon.daemon.reload(daemon.server)
        assert (
            "reload failed, keeping the running configuration: "
            "the configuration check did not answer within 0.5 s"
        ) in daemon.log()
        _, _, body = await raw_get(daemon, "/site.json")
        assert json.loads(body)["title"] == "Before"


def test_an_answer_holding_other_objects_is_refused() -> None:
    """Only plain values and paths are unpickled: an object would import its module here."""
    answer = pickle.dumps({"path": None, "settings": {"when": __import__("datetime").date.today()}})
    with pytest.raises(ChildFailed, match="datetime"):
        config_child._decode(0, answer, b"")


def test_modules_of_the_daemon_load_without_pydantic() -> None:
    """Importing the daemon's modules (serve's whole path) loads neither pydantic nor settings."""
    loaded = modules_after_import(
        "pichat.app", "pichat.server", "pichat.cli", "pichat.cluster", "pichat.config_child"
    )
    assert "pichat.server" in loaded
    assert [m for m in loaded if m.startswith("pydantic") or m == "pichat.settings"] == []


async def test_a_serving_daemon_holds_no_pydantic(tmp_path: Path) -> None:
    """A real ``pichat serve``, before and after a reload: no pydantic module imported or mapped."""
    # -X importtime's report (stderr, the daemon's log) names every module the daemon imports;
    # the child's own report goes to the pipe the daemon reads.
    daemon = Daemon(tmp_path, env={"PYTHONPROFILEIMPORTTIME": "1"})
    with daemon:
        assert daemon.process is not None and daemon.notify is not None
        ws, _ = await join(daemon, "alice")
        daemon.config["title"] = "Reloaded"
        daemon.write_config()
        daemon.signal(signal.SIGHUP)
        daemon.notify.wait_for("READY", "1")
        assert "configuration reloaded" in daemon.log()
        maps = Path(f"/proc/{daemon.process.pid}/maps").read_text()
        await ws.close()
    lines = daemon.log().splitlines()
    imported = [line.split("|")[-1].strip() for line in lines if line.startswith("import time:")]
    assert "pichat.app" in imported and "pichat.config_child" in imported
    assert not [name for name in imported if name.startswith("pydantic")]
    assert "pichat.settings" not in imported
    assert "pydantic" not in maps


def test_serve_whose_check_crashes_is_one_line_and_exit_70(tmp_path: Path) -> None:
    """A child that dies without an answer: its last stderr line, exit 70 (EX_SOFTWARE)."""
    _broken_pydantic(tmp_path / "lib")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PICHAT_")}
    result = subprocess.run(
        [sys.executable, "-m", "pichat", "serve", "--config", str(_config(tmp_path))],
        env={**env, "PYTHONPATH": str(tmp_path / "lib")},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 70, result.stderr
    assert result.stderr == (
        "pichat: the configuration check exited with 1: ImportError: pydantic broken on purpose\n"
    )


async def test_a_reload_whose_check_crashes_keeps_the_config(tmp_path: Path) -> None:
    """The child dies at reload (pydantic broken after start): one line, the daemon serves on."""
    lib = tmp_path / "lib"
    lib.mkdir()
    daemon = Daemon(tmp_path, config={"title": "Before"}, env={"PYTHONPATH": str(lib)})
    with daemon:
        assert daemon.notify is not None
        ws, _ = await join(daemon, "alice")
        _broken_pydantic(lib)
        daemon.config["title"] = "After"
        daemon.write_config()
        daemon.signal(signal.SIGHUP)
        daemon.notify.wait_for("RELOADING", "1")
        daemon.notify.wait_for("READY", "1")
        assert (
            "reload failed, keeping the running configuration: the configuration check "
            "exited with 1: ImportError: pydantic broken on purpose"
        ) in daemon.log()
        _, _, body = await raw_get(daemon, "/site.json")
        assert json.loads(body)["title"] == "Before"
        await say(ws, "still here")
        assert (await recv_type(ws, "message"))["text"] == "still here"
        await ws.close()


async def test_what_an_answering_child_writes_to_stderr_reaches_the_log(tmp_path: Path) -> None:
    """A warning the check prints (here from a sitecustomize in the child only) is not lost."""
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "sitecustomize.py").write_text(
        "import sys\n"
        'if "pichat.settings" in sys.orig_argv:\n'
        '    print("DeprecationWarning: an old way, going away", file=sys.stderr)\n'
    )
    daemon = Daemon(tmp_path, config={"title": "Before"}, env={"PYTHONPATH": str(lib)})
    with daemon:
        assert daemon.notify is not None
        said = "pichat: the configuration check said: DeprecationWarning: an old way, going away"
        assert daemon.log().count(said) == 1
        daemon.signal(signal.SIGHUP)  # a reload's check is relayed too
        daemon.notify.wait_for("RELOADING", "1")
        daemon.notify.wait_for("READY", "1")
        assert daemon.log().count(said) == 2
