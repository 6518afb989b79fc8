"""Configuration: defaults, TOML file, environment, every error named; the CLI around it."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pichat import __version__
from pichat.passwords import hash_password, parse_hash, verify_password
from pichat.settings import (
    ConfigError,
    Settings,
    config_path,
    dump_toml,
    load,
)
from tests.daemon import TIMEOUT

SYSTEMD_VARIABLES = (
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "JOURNAL_STREAM",
)


@pytest.fixture(autouse=True)
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean environment (no PICHAT_ variables) in a directory holding ``public/``."""
    for name in list(os.environ):
        if name.startswith("PICHAT_") or name in SYSTEMD_VARIABLES:
            monkeypatch.delenv(name)
    (tmp_path / "public").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(directory: Path, text: str, name: str = "pichat.toml") -> Path:
    """A TOML file with ``text``."""
    path = directory / name
    path.write_text(text)
    return path


def problems(path: Path | None) -> list[str]:
    """The problems ``load`` reports for ``path``."""
    with pytest.raises(ConfigError) as info:
        load(path)
    return info.value.problems


def keys(lines: list[str]) -> list[str]:
    """The key each problem line names (the text before the first colon)."""
    return sorted(line.split(":", 1)[0] for line in lines)


# Sources.


def test_defaults(workdir: Path) -> None:
    """Without file or environment the embedded defaults apply, the page from ./public."""
    s = load(None)
    assert (s.host, s.port, s.state_dir, s.log_level) == ("", 3000, Path("var"), "info")
    assert s.document_root == (workdir / "public").resolve()
    assert (s.title, s.room, s.allowed_origins, s.sites) == ("pichat", "lobby", [], [])
    assert (s.history_replay, s.history_max_messages, s.history_max_age_days) == (100, 1000, 0.0)
    assert (s.max_message_length, s.max_name_length, s.max_frame_bytes) == (2000, 32, 65536)
    assert (s.rate_messages, s.rate_window) == (10, 10.0)
    assert (s.max_connections, s.max_connections_per_ip) == (5000, 100)
    assert (s.send_queue_bytes, s.ping_interval) == (1024 * 1024, 30.0)


def test_defaults_need_a_document_root(workdir: Path) -> None:
    """Run where ./public does not exist, the defaults name document_root as the problem."""
    (workdir / "public").rmdir()
    assert keys(problems(None)) == ["document_root"]


def test_toml_file_values(workdir: Path) -> None:
    """Values in the TOML file replace the defaults, normalised where documented."""
    site_root = workdir / "site"
    site_root.mkdir()
    path = write(
        workdir,
        f"""
port = 8080
host = "127.0.0.1"
title = "Hall"
room = "hall"
history_max_age_days = 7
rate_window = 5
allowed_origins = ["HTTPS://App.Example.com/"]

[[sites]]
server_names = ["Chat.Example.org.", "*.example.net"]
room = "chat"
document_root = "{site_root}"
""",
    )
    s = load(path)
    assert (s.port, s.host, s.title, s.room) == (8080, "127.0.0.1", "Hall", "hall")
    assert (s.history_max_age_days, s.rate_window) == (7.0, 5.0)
    assert s.allowed_origins == ["https://app.example.com"]
    assert len(s.sites) == 1
    assert s.sites[0].server_names == ["chat.example.org", "*.example.net"]
    assert (s.sites[0].room, s.sites[0].title) == ("chat", "pichat")
    assert s.site_document_root(s.sites[0]) == site_root.resolve()
    assert s.history_replay == 100


def test_environment_beats_file(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PICHAT_PORT overrides the file's port; the file's other values still apply."""
    path = write(workdir, 'port = 8080\ntitle = "From file"\n')
    monkeypatch.setenv("PICHAT_PORT", "9090")
    s = load(path)
    assert (s.port, s.title) == (9090, "From file")


def test_environment_without_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """Environment variables apply over the defaults when there is no file."""
    monkeypatch.setenv("PICHAT_PORT", "4000")
    monkeypatch.setenv("PICHAT_ROOM", "hall")
    s = load(None)
    assert (s.port, s.room) == (4000, "hall")


def test_bad_environment_value_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad value in the environment is reported under the key's name."""
    monkeypatch.setenv("PICHAT_PORT", "abc")
    assert keys(problems(None)) == ["port"]


def test_non_json_list_in_environment_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A list setting given as a non-JSON environment variable is a ConfigError naming it."""
    monkeypatch.setenv("PICHAT_ALLOWED_ORIGINS", "https://x.org")
    assert keys(problems(None)) == ["allowed_origins"]


def test_config_path(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--config wins, else PICHAT_CONFIG; PICHAT_CONFIG set but empty means no file."""
    explicit = workdir / "explicit.toml"
    monkeypatch.setenv("PICHAT_CONFIG", str(workdir / "env.toml"))
    assert config_path(explicit) == explicit
    assert config_path(None) == workdir / "env.toml"
    monkeypatch.setenv("PICHAT_CONFIG", "")
    assert config_path(None) is None
    assert config_path(explicit) == explicit


# Errors.


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("prot = 3000\n", "prot"),
        ("[[sites]]\nserver_names = ['a.org']\nroomz = 'x'\n", "sites[0].roomz"),
        ('port = "abc"\n', "port"),
        ("port = 70000\n", "port"),
        ("port = 1.5\n", "port"),
        ('log_level = "verbose"\n', "log_level"),
        ('room = "bad room"\n', "room"),
        ('title = ""\n', "title"),
        ("rate_window = 0\n", "rate_window"),
        ("max_frame_bytes = 10\n", "max_frame_bytes"),
        ('allowed_origins = ["https://x.org/path"]\n', "allowed_origins"),
        ('allowed_origins = ["x.org"]\n', "allowed_origins"),
        ('allowed_origins = "https://x.org"\n', "allowed_origins"),
        ('[[sites]]\nserver_names = "chat.example.org"\n', "sites[0].server_names"),
        ("[[sites]]\nserver_names = []\n", "sites[0].server_names"),
        ('[[sites]]\nserver_names = ["bad_name!"]\n', "sites[0].server_names"),
        ('[[sites]]\nserver_names = ["a.org"]\nroom = "x y"\n', "sites[0].room"),
        (
            '[[sites]]\nserver_names = ["a.org"]\n[[sites]]\nserver_names = 3\n',
            "sites[1].server_names",
        ),
        ("[[sites]]\nroom = 'x'\n", "sites[0].server_names"),
        ('sites = "x"\n', "sites"),
        ('redis_url = "http://redis.example.org"\n', "redis_url"),
        ('redis_url = "localhost:6379"\n', "redis_url"),
        ('redis_url = "unix://"\n', "redis_url"),
        ('redis_url = "redis://"\n', "redis_url"),
        ("redis_presence_ttl = 1\n", "redis_presence_ttl"),
    ],
)
def test_bad_value_names_the_key(workdir: Path, text: str, key: str) -> None:
    """An unknown key or a bad value gives one problem line naming the key."""
    lines = problems(write(workdir, text))
    assert keys(lines) == [key]


@pytest.mark.parametrize(
    "url",
    ["redis://127.0.0.1:6379/0", "rediss://pichat:secret@redis.lan:6380/1", "unix:///run/r.sock"],
)
def test_redis_url_forms(workdir: Path, url: str) -> None:
    """The three URL forms redis.asyncio.from_url takes are accepted as written."""
    assert load(write(workdir, f'redis_url = "{url}"\n')).redis_url == url


def test_duplicate_server_names_across_sites(workdir: Path) -> None:
    """A Host name claimed by two sites (case and final dot ignored) is refused, naming both."""
    path = write(
        workdir,
        '[[sites]]\nserver_names = ["Chat.example.org"]\n'
        '[[sites]]\nserver_names = ["other.org", "chat.example.org."]\n',
    )
    (line,) = problems(path)
    assert "sites[1].server_names" in line and "sites[0]" in line
    assert "'chat.example.org'" in line


def test_history_replay_over_max_messages(workdir: Path) -> None:
    """Replaying more than the history keeps is refused, naming both keys."""
    (line,) = problems(write(workdir, "history_replay = 50\nhistory_max_messages = 10\n"))
    assert "history_replay" in line and "history_max_messages" in line
    s = load(write(workdir, "history_replay = 10\nhistory_max_messages = 10\n"))
    assert s.history_replay == s.history_max_messages == 10


@pytest.mark.parametrize("target", ["missing", "file.txt"])
def test_document_root_must_be_a_directory(workdir: Path, target: str) -> None:
    """A document_root (top level or a site's) that is not a directory names the key."""
    (workdir / "file.txt").write_text("x")
    root = workdir / target
    lines = problems(write(workdir, f'document_root = "{root}"\n'))
    assert keys(lines) == ["document_root"]
    assert str(root) in lines[0]
    lines = problems(
        write(workdir, f'[[sites]]\nserver_names = ["a.org"]\ndocument_root = "{root}"\n')
    )
    assert keys(lines) == ["sites[0].document_root"]


def test_invalid_toml(workdir: Path) -> None:
    """A file that is not valid TOML is one problem saying so, with the file as source."""
    path = write(workdir, "port = \n[[sites]\n")
    with pytest.raises(ConfigError) as info:
        load(path)
    (line,) = info.value.problems
    assert line.startswith("not valid TOML")
    assert info.value.source == str(path)
    assert str(path) in str(info.value)


def test_missing_file(workdir: Path) -> None:
    """A config file that cannot be read is one problem saying why."""
    (line,) = problems(workdir / "nope.toml")
    assert line.startswith("cannot read the file") and "No such file" in line


def test_every_bad_key_is_listed(workdir: Path) -> None:
    """Each bad key gets its own line: two bad keys give two lines, five give five."""
    assert keys(problems(write(workdir, 'port = "abc"\nrate_window = -1\n'))) == [
        "port",
        "rate_window",
    ]
    text = (
        'port = "abc"\ncolour = "red"\nrate_window = -1\nroom = "a b"\n'
        '[[sites]]\nserver_names = "chat.example.org"\n'
    )
    assert keys(problems(write(workdir, text))) == [
        "colour",
        "port",
        "rate_window",
        "room",
        "sites[0].server_names",
    ]


def test_config_error_message_lists_problems(workdir: Path) -> None:
    """str(ConfigError) names the source and has one line per problem."""
    path = write(workdir, 'port = "abc"\ncolour = 1\n')
    with pytest.raises(ConfigError) as info:
        load(path)
    text = str(info.value)
    assert text.splitlines()[0] == f"invalid configuration ({path}):"
    assert text.splitlines()[1:] == info.value.problems


# dump_toml.


def test_dump_toml_loads_back_equal(workdir: Path) -> None:
    """The dump of a full configuration, written to a file, loads to equal settings."""
    site_root = workdir / "site root é"
    site_root.mkdir()
    path = write(
        workdir,
        f"""
port = 8080
title = "The \\"quoted\\" hall \\\\ é 🙂"
room = "hall"
history_max_age_days = 0.5
rate_window = 2.5
allowed_origins = ["https://app.example.com", "http://localhost:5173"]

[[sites]]
server_names = ["chat.example.org", "*.example.net"]
room = "chat"
title = "Chat"
document_root = "{site_root}"
allowed_origins = ["https://other.example.org"]

[[sites]]
server_names = ["x.org"]
""",
    )
    original = load(path)
    dumped = dump_toml(original)
    again = load(write(workdir, dumped, "dumped.toml"))
    assert again == original
    assert again.sites[1].document_root is None
    assert dump_toml(again) == dumped


def test_dump_toml_of_defaults_loads_back_equal(workdir: Path) -> None:
    """The dump of the defaults loads back to the defaults."""
    original = load(None)
    assert load(write(workdir, dump_toml(original))) == original


def test_dump_toml_escapes_delete_character(workdir: Path) -> None:
    """A title containing DEL (written escaped in the file) survives a dump and reload."""
    original = load(write(workdir, 'title = "a\\u007fb"\n'))
    assert original.title == "a\x7fb"
    assert load(write(workdir, dump_toml(original), "dumped.toml")) == original


@settings(
    deadline=None,
    # The autouse fixture only prepares a clean environment and cwd, the same for every example.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.text(
        # Lone surrogates cannot come from a UTF-8 file.
        st.characters(blacklist_categories=("Cs",)),
        min_size=1,
        max_size=120,
    ),
    st.floats(min_value=0.001, max_value=1e6),
)
def test_dump_toml_round_trips_any_title(title: str, window: float) -> None:
    """Any title and rate window survive dump_toml and TOML parsing unchanged."""
    original = Settings(title=title, rate_window=window)
    assert Settings(**tomllib.loads(dump_toml(original))) == original


# The command line.


def pichat(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m pichat`` with extra environment variables."""
    return subprocess.run(
        [sys.executable, "-m", "pichat", *args],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


GOOD = 'port = 8080\ntitle = "CLI"\n[[sites]]\nserver_names = ["chat.example.org"]\nroom = "chat"\n'
BAD = 'port = "abc"\ncolour = "red"\n[[sites]]\nserver_names = "chat.example.org"\n'


def test_check_config_prints_effective_config(workdir: Path) -> None:
    """check-config with a good file exits 0 and prints the configuration in effect as TOML."""
    path = write(workdir, GOOD)
    result = pichat("check-config", "--config", str(path), cwd=workdir)
    assert result.returncode == 0, result.stderr
    header, _, body = result.stdout.partition("\n")
    assert header == f"# pichat {__version__}: configuration in effect ({path})"
    assert Settings(**tomllib.loads(body)) == load(path)
    assert "port = 8080" in body.splitlines()


def test_check_config_bad_file_exits_78(workdir: Path) -> None:
    """check-config with a bad file exits 78 and names each bad key on stderr."""
    path = write(workdir, BAD)
    result = pichat("check-config", "--config", str(path), cwd=workdir)
    assert result.returncode == 78
    assert result.stdout == ""
    assert f"invalid configuration ({path})" in result.stderr
    for key in ("port:", "colour:", "sites[0].server_names:"):
        assert f"  {key}" in result.stderr


def test_check_config_missing_file_exits_78(workdir: Path) -> None:
    """check-config with a file that does not exist exits 78 and says it cannot read it."""
    result = pichat("check-config", "--config", str(workdir / "nope.toml"), cwd=workdir)
    assert result.returncode == 78
    assert "cannot read the file" in result.stderr


def test_check_config_uses_environment(workdir: Path) -> None:
    """check-config reads PICHAT_CONFIG and shows an environment override in effect."""
    path = write(workdir, GOOD)
    result = pichat("check-config", cwd=workdir, PICHAT_CONFIG=str(path), PICHAT_PORT="9191")
    assert result.returncode == 0, result.stderr
    assert f"({path})" in result.stdout.splitlines()[0]
    assert "port = 9191" in result.stdout.splitlines()


def test_check_config_empty_pichat_config_means_no_file(workdir: Path) -> None:
    """With PICHAT_CONFIG empty, check-config uses the defaults and says there is no file."""
    result = pichat("check-config", cwd=workdir, PICHAT_CONFIG="")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].endswith("(no file)")
    assert "port = 3000" in result.stdout.splitlines()


def test_version() -> None:
    """--version prints the package version and exits 0."""
    result = pichat("--version", cwd=Path.cwd())
    assert result.returncode == 0
    assert result.stdout.strip() == f"pichat {__version__}"


def test_serve_with_bad_config_exits_78(workdir: Path) -> None:
    """serve with a bad configuration exits 78 before listening, naming the bad keys.

    Its check runs in a child process; what it prints is check-config's text, to the byte.
    """
    path = write(workdir, BAD)
    result = pichat("serve", "--config", str(path), cwd=workdir)
    assert result.returncode == 78
    assert "  port:" in result.stderr and "  colour:" in result.stderr
    assert result.stderr == pichat("check-config", "--config", str(path), cwd=workdir).stderr
    assert result.stdout == ""


# Moderators.

HASH = hash_password("pw", n=16)


def test_moderators_load_and_round_trip(workdir: Path) -> None:
    """[[moderators]] tables load, and check-config's TOML loads back the same."""
    s = load(write(workdir, f'[[moderators]]\nname = "Alice"\npassword_hash = "{HASH}"\n'))
    assert [(m.name, m.password_hash) for m in s.moderators] == [("Alice", HASH)]
    assert Settings(**tomllib.loads(dump_toml(s))) == s
    assert HASH not in repr(s)


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ('name = "a"\npassword_hash = "hunter2"', "moderators[0].password_hash"),
        (
            'name = "a"\npassword_hash = "scrypt$3$8$1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA"',
            "moderators[0].password_hash",
        ),
        (f'name = "\u200b"\npassword_hash = "{HASH}"', "moderators[0].name"),
        (f'name = "{"x" * 40}"\npassword_hash = "{HASH}"', "moderators[0].name"),
        (f'password_hash = "{HASH}"', "moderators[0].name"),
    ],
)
def test_bad_moderator_is_a_config_error(workdir: Path, body: str, where: str) -> None:
    """A bad hash, an invisible or too long name, a missing name: the key is named."""
    (line,) = problems(write(workdir, f"[[moderators]]\n{body}\n"))
    assert line.startswith(where) or where in line, line


def test_moderator_names_are_unique_by_key(workdir: Path) -> None:
    """Two moderators whose names differ only in case or width are refused."""
    text = "".join(
        f'[[moderators]]\nname = "{name}"\npassword_hash = "{HASH}"\n' for name in ("bob", "ＢＯＢ")
    )
    (line,) = problems(write(workdir, text))
    assert "moderators[1].name" in line and "moderators[0]" in line


def test_hash_password_reads_stdin(workdir: Path) -> None:
    """pichat hash-password hashes one stdin line (no config needed); empty input is 65."""
    run = subprocess.run(
        [sys.executable, "-m", "pichat", "hash-password"],
        input="s3cret\n",
        env={**os.environ, "PICHAT_PORT": "not a port"},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    hashed = run.stdout.strip()
    assert hashed.startswith("scrypt$") and "s3cret" not in hashed
    assert verify_password("s3cret", parse_hash(hashed))
    empty = subprocess.run(
        [sys.executable, "-m", "pichat", "hash-password"],
        input="",
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert empty.returncode == 65 and "empty" in empty.stderr


def test_trusted_proxies_are_networks(workdir: Path) -> None:
    """trusted_proxies takes addresses and networks, normalised; a bad one is named."""
    s = load(write(workdir, 'trusted_proxies = ["127.0.0.1", "10.1.2.3/8", "::1"]\n'))
    assert s.trusted_proxies == ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]
    (line,) = problems(write(workdir, 'trusted_proxies = ["proxy.lan"]\n'))
    assert line.startswith("trusted_proxies") and "'proxy.lan'" in line
