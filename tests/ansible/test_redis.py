"""Scale-out provisioning: the pichat_redis role's Redis server, and pichat pointed at it.

One booted Debian 13 target in both inventory groups (``pichat_redis`` and ``pichat``),
provisioned once by ``ansible/site.yml`` over SSH: the first play installs and hardens
redis-server, the second installs pichat with ``pichat_redis_url`` naming that server.
Redis listens on 127.0.0.2 (a loopback address nothing else uses) on a free port, so
the shared host network sees nothing on 127.0.0.1 or Redis's usual port. The tests
run in file order, the ones that change the target last.
"""

from __future__ import annotations

import hashlib
import subprocess
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.ansible.conftest import http_get, record_timing
from tests.ansible.target import PlaybookRun, Target, provision_target
from tests.system import free_port

pytestmark = pytest.mark.system

CONFIG = "/etc/pichat/pichat.toml"
REDIS_CONFIG = "/etc/redis/redis.conf"
REDIS_USERS = "/etc/redis/users.acl"
FACT = "/etc/ansible/facts.d/pichat.fact"
REDIS_HOST = "127.0.0.2"
PASSWORD = "pichat-test-5d1f0c9a"
ADMIN_PASSWORD = "admin-test-8e2b7a41"
# How the users file keeps the password: Redis's "#<sha256>" form.
DIGEST = hashlib.sha256(PASSWORD.encode()).hexdigest()


class ScaleOut:
    """The target after its first run, the variables it used, and redis-cli on it."""

    def __init__(self, target: Target, variables: dict[str, Any], first: PlaybookRun) -> None:
        self.target = target
        self.variables = variables
        self.first = first

    @property
    def redis_port(self) -> int:
        """The port redis-server was asked to listen on."""
        return int(self.variables["pichat_redis_port"])

    def redis_cli(
        self, *command: str, user: str | None = None, password: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``redis-cli`` in the target against the provisioned server, as ``user``."""
        argv = ["redis-cli", "-h", REDIS_HOST, "-p", str(self.redis_port), "--no-raw"]
        if user is not None:
            argv += ["--user", user]
        env = {"REDISCLI_AUTH": password} if password is not None else None
        return self.target.container.run([*argv, *command], env=env, check=False)

    def admin(self, *command: str) -> str:
        """A command's reply as the administrator."""
        return self.redis_cli(*command, user="admin", password=ADMIN_PASSWORD).stdout

    def pichat(self, *command: str) -> str:
        """A command's reply as pichat's user."""
        return self.redis_cli(*command, user="pichat", password=PASSWORD).stdout


def listening(target: Target, address: str, port: int) -> bool:
    """Whether a TCP socket listens on ``address:port`` (IPv4), by the kernel's table."""
    octets = address.split(".")
    hex_address = "".join(f"{int(octet):02X}" for octet in reversed(octets))
    table = target.container.read("/proc/net/tcp")
    return f"{hex_address}:{port:04X} 00000000:0000 0A" in table


@pytest.fixture(scope="module")
def scale_out(deb: Path) -> Iterator[ScaleOut]:
    """A target provisioned once as the Redis host and a pichat host using it."""
    groups: Sequence[str] = ("pichat_redis", "pichat")
    with provision_target(deb, groups=groups) as target:
        redis_port = free_port()
        variables: dict[str, Any] = {
            "pichat_redis_bind": [REDIS_HOST],
            "pichat_redis_port": redis_port,
            "pichat_redis_password": PASSWORD,
            "pichat_redis_admin_password": ADMIN_PASSWORD,
            "pichat_host": "127.0.0.1",
            "pichat_port": free_port(),
            "pichat_redis_url": f"redis://pichat:{PASSWORD}@{REDIS_HOST}:{redis_port}/0",
        }
        first = target.playbook(variables).check()
        record_timing("first provisioning run (Redis host and pichat on it)", first.seconds)
        yield ScaleOut(target, variables, first)


def test_redis_server_is_installed_enabled_and_running(scale_out: ScaleOut) -> None:
    """The Redis play installs Debian's redis-server and leaves it enabled and active."""
    container = scale_out.target.container
    status = container.run(["dpkg-query", "-W", "-f=${Status}", "redis-server"]).stdout
    assert status == "install ok installed"
    assert container.show("redis-server.service", "ActiveState") == "active"
    assert container.show("redis-server.service", "UnitFileState") == "enabled"
    for path in (REDIS_CONFIG, REDIS_USERS):
        mode = container.run(["stat", "-c", "%a %U:%G", path]).stdout.strip()
        assert mode == "640 redis:redis", path
        assert PASSWORD not in container.read(path), path
    assert f"#{DIGEST} " in container.read(REDIS_USERS)


def test_live_server_has_the_aof_and_the_hardening(scale_out: ScaleOut) -> None:
    """CONFIG GET on the running server: AOF on, fsync every second, protected, no eviction."""
    expected = {
        "appendonly": "yes",
        "appendfsync": "everysec",
        "protected-mode": "yes",
        "maxmemory-policy": "noeviction",
        "bind": REDIS_HOST,
        "port": str(scale_out.redis_port),
    }
    for key, value in expected.items():
        reply = scale_out.admin("CONFIG", "GET", key).split("\n")
        assert reply[:2] == [f'1) "{key}"', f'2) "{value}"'], (key, reply)
    assert "aof_enabled:1" in scale_out.admin("INFO", "persistence")


def test_redis_listens_only_where_asked(scale_out: ScaleOut) -> None:
    """redis-server listens on 127.0.0.2 as bound, not on 127.0.0.1 (Debian's default)."""
    assert listening(scale_out.target, REDIS_HOST, scale_out.redis_port)
    assert not listening(scale_out.target, "127.0.0.1", scale_out.redis_port)


def test_every_client_must_authenticate(scale_out: ScaleOut) -> None:
    """Without a password, or with a wrong one, Redis refuses; pichat's user gets in."""
    assert "NOAUTH" in scale_out.redis_cli("PING").stdout
    assert "NOAUTH" in scale_out.redis_cli("GET", "anything").stdout
    wrong = scale_out.redis_cli("PING", user="pichat", password="not-the-password")
    assert "WRONGPASS" in wrong.stdout + wrong.stderr
    assert scale_out.pichat("PING").strip() == "PONG"


def test_pichat_user_runs_what_pichat_needs_and_not_the_admin_commands(
    scale_out: ScaleOut,
) -> None:
    """pichat's user may script, stream, publish and count; FLUSHALL and CONFIG are refused."""
    pichat = scale_out.pichat
    assert pichat("EVAL", "return redis.call('INCR', KEYS[1])", "1", "test:counter") == (
        "(integer) 1\n"
    )
    assert "-" in pichat("XADD", "test:stream", "MAXLEN", "~", "100", "*", "text", "hi")
    assert "hi" in pichat("XRANGE", "test:stream", "-", "+")
    assert pichat("HSET", "test:hash", "field", "value") == "(integer) 1\n"
    assert pichat("PUBLISH", "test:channel", "hello") == "(integer) 0\n"
    assert "NOPERM" in pichat("FLUSHALL")
    assert "NOPERM" in pichat("CONFIG", "GET", "appendonly")
    assert pichat("EXISTS", "test:stream") == "(integer) 1\n"
    assert scale_out.admin("DEL", "test:counter", "test:stream", "test:hash") == "(integer) 3\n"


def test_pichat_host_gets_python3_redis_and_redis_url(scale_out: ScaleOut) -> None:
    """The pichat play installs python3-redis and writes redis_url, which check-config accepts."""
    container = scale_out.target.container
    status = container.run(["dpkg-query", "-W", "-f=${Status}", "python3-redis"]).stdout
    assert status == "install ok installed"
    config = tomllib.loads(container.read(CONFIG))
    assert config["redis_url"] == scale_out.variables["pichat_redis_url"]
    result = container.run(["pichat", "check-config", "--config", CONFIG], check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    _, health = http_get(f"http://127.0.0.1:{scale_out.variables['pichat_port']}/healthz")
    assert health["status"] == "ok"


def test_password_stays_out_of_the_output_and_the_fact(scale_out: ScaleOut) -> None:
    """Neither the play's output nor the world-readable local fact shows the password."""
    assert PASSWORD not in scale_out.first.output
    assert ADMIN_PASSWORD not in scale_out.first.output
    assert PASSWORD not in scale_out.target.container.read(FACT)


def test_second_run_changes_nothing(scale_out: ScaleOut) -> None:
    """Running both plays again on the converged host reports changed=0."""
    run = scale_out.target.playbook(scale_out.variables).check()
    assert run.recap()["changed"] == 0, run.changed_tasks()
    assert PASSWORD not in run.output


def test_changes_restart_redis_and_pichat(scale_out: ScaleOut) -> None:
    """A new memory cap restarts redis-server; a new redis_url restarts pichat, out of the diff."""
    container = scale_out.target.container
    redis_pid = container.show("redis-server.service", "MainPID")
    pichat_pid = container.show("pichat.service", "MainPID")
    url = scale_out.variables["pichat_redis_url"].removesuffix("/0") + "/1"
    variables = {**scale_out.variables, "pichat_redis_maxmemory": "64mb", "pichat_redis_url": url}
    # --diff would print the changed lines of pichat.toml, of the fact and of the users
    # file: no_log and the fact's digest keep the password out.
    run = scale_out.target.playbook(variables, "--diff").check()
    assert {"Restart redis-server", "Restart pichat"} <= set(run.changed_tasks()), run.output
    assert "Reload pichat" not in run.changed_tasks()
    assert PASSWORD not in run.output and DIGEST not in run.output
    assert "maxmemory 64mb" in run.output  # the Redis file's diff is shown: no secret there
    scale_out.variables = variables
    assert container.show("redis-server.service", "MainPID") != redis_pid
    assert container.show("pichat.service", "MainPID") != pichat_pid
    assert scale_out.admin("CONFIG", "GET", "maxmemory").split("\n")[1] == f'2) "{64 << 20}"'
    assert tomllib.loads(container.read(CONFIG))["redis_url"] == url


def test_open_bind_without_password_fails_before_any_change(scale_out: ScaleOut) -> None:
    """Binding every interface with no password stops the play, naming the variable."""
    container = scale_out.target.container
    before = container.read(REDIS_CONFIG)
    variables = {
        **scale_out.variables,
        "pichat_redis_bind": ["0.0.0.0"],
        "pichat_redis_password": "",
    }
    run = scale_out.target.playbook(variables)
    assert run.returncode != 0
    assert "pichat_redis_password is not set" in run.output, run.output
    assert "0.0.0.0" in run.output
    assert run.recap()["changed"] == 0
    assert container.read(REDIS_CONFIG) == before
