"""The role passes ansible-lint offline, and its variables are declared and documented."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from pichat.config_values import HOSTNAME_RE
from tests.ansible.target import ANSIBLE_DIR, VENV_BIN, ansible_env

ROLE = ANSIBLE_DIR / "roles" / "pichat"


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@pytest.mark.system
def test_ansible_lint_production_profile_passes_offline() -> None:
    """ansible-lint (production profile, offline, no network reachable) finds nothing."""
    with tempfile.TemporaryDirectory() as home:
        result = subprocess.run(
            [str(VENV_BIN / "ansible-lint"), "--offline", "--nocolor"],
            cwd=ANSIBLE_DIR,
            env={**ansible_env(Path(home)), "XDG_CACHE_HOME": f"{home}/cache"},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Profile 'production' was required, and it passed" in output, output


@pytest.mark.parametrize("role", ["pichat", "pichat_redis"])
def test_every_default_is_specified_and_documented(role: str) -> None:
    """Each role's default has an argument spec with the same default and a README entry."""
    path = ANSIBLE_DIR / "roles" / role
    defaults: dict[str, Any] = _load(path / "defaults" / "main.yml")
    options = _load(path / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    readme = (ANSIBLE_DIR / "README.md").read_text()
    assert set(defaults) == set(options)
    for name, value in defaults.items():
        assert name.startswith(f"{role}_"), name
        spec = options[name]
        assert spec.get("description"), name
        if not (isinstance(value, str) and "{{" in value):
            assert spec.get("default") == value, name
        assert f"`{name}: " in readme, f"{name} is not documented as `{name}: default`"


def test_role_filters_server_names_with_the_daemons_pattern() -> None:
    """The role's host-name pattern is pichat's own, so no name it keeps fails check-config."""
    variables = _load(ROLE / "vars" / "main.yml")
    assert variables["__pichat_hostname_pattern"] == HOSTNAME_RE.pattern
