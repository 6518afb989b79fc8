"""redis_url in the installed package: python3-redis is only recommended, so its absence is clear.

The package is installed the way the other package tests (and the Ansible role) do,
without Recommends, so python3-redis is missing. The tests run in file order on one
container: the configuration error first, then ``apt install python3-redis`` from
the Debian mirror fixes it.
"""

from __future__ import annotations

import pytest

from tests.package.conftest import Installed
from tests.system import TIMEOUT

pytestmark = [pytest.mark.system, pytest.mark.timeout(1200)]

CONFFILE = "/etc/pichat/pichat.toml"
UNIT = "pichat.service"
# Nothing needs to listen there: check-config validates, it does not connect.
REDIS_URL = "redis://127.0.0.1:6379/0"
# EX_CONFIG, which pichat.service's RestartPreventExitStatus= names.
EX_CONFIG = 78


def test_installed_without_recommends_has_no_python3_redis(installed: Installed) -> None:
    """apt without Recommends leaves python3-redis out (the package only recommends it)."""
    container = installed.container
    fields = container.run(["dpkg-query", "-W", "-f=${Recommends}", "pichat"]).stdout
    assert "python3-redis (>= 6.1)" in fields
    status = container.run(["dpkg-query", "-W", "-f=${Status}", "python3-redis"], check=False)
    assert "install ok installed" not in status.stdout
    missing = container.run(["python3", "-c", "import redis"], check=False)
    assert missing.returncode != 0


def test_redis_url_without_python3_redis_is_a_config_error(installed: Installed) -> None:
    """check-config exits 78 naming redis_url and python3-redis; the service will not start."""
    container = installed.container
    container.run(f"printf '\\nredis_url = \"{REDIS_URL}\"\\n' >> {CONFFILE}")
    result = container.run(["pichat", "check-config", "--config", CONFFILE], check=False)
    output = result.stdout + result.stderr
    assert result.returncode == EX_CONFIG, output
    assert "redis_url" in output, output
    assert "python3-redis" in output, output
    # The service refuses the same file with the same code, and systemd does not
    # restart it (RestartPreventExitStatus=78).
    cursor = container.journal_cursor()
    container.systemctl("restart", UNIT, check=False)
    container.wait_property(UNIT, "ActiveState", "failed")
    assert container.show(UNIT, "ExecMainStatus") == str(EX_CONFIG)
    assert container.show(UNIT, "NRestarts") == "0"
    journal = container.journal(UNIT, since_cursor=cursor)
    assert "redis_url" in journal and "python3-redis" in journal, journal


def test_installing_python3_redis_makes_the_config_valid(installed: Installed) -> None:
    """After apt install python3-redis (Debian 13's, >= 6.1) the same file passes check-config."""
    container = installed.container
    container.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "python3-redis"],
        timeout=5 * TIMEOUT,
    )
    version = container.run(["dpkg-query", "-W", "-f=${Version}", "python3-redis"]).stdout
    compare = container.run(["dpkg", "--compare-versions", version, "ge", "6.1"], check=False)
    assert compare.returncode == 0, version
    assert f'redis_url = "{REDIS_URL}"' in container.read(CONFFILE)
    result = container.run(["pichat", "check-config", "--config", CONFFILE], check=False)
    assert result.returncode == 0, result.stdout + result.stderr
