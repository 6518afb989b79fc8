"""The packaged configuration file, changelog and man page agree with the daemon (no container)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

import pichat
from pichat.settings import ModeratorConfig, Settings, SiteConfig, load

PACKAGING = Path(__file__).resolve().parents[2] / "packaging"
CONFFILE = PACKAGING / "pichat.toml"
# Keys the package must set: the embedded defaults are relative to the working directory.
PACKAGE_VALUES = {
    "state_dir": "/var/lib/pichat",
    "document_root": "/usr/share/pichat/public",
    "control_socket": "/run/pichat/control.sock",
}

_KEY = re.compile(r"^#?(\w+) = ")


def _tables() -> dict[str, list[str]]:
    """The conffile's key lines: top-level ("") and each commented [[table]] example."""
    tables: dict[str, list[str]] = {"": []}
    current = tables[""]
    for line in CONFFILE.read_text().splitlines():
        if line.startswith("#[[") and line.endswith("]]"):
            current = tables.setdefault(line[3:-2], [])
        elif _KEY.match(line):
            current.append(line)
    return tables


def _sections() -> tuple[list[str], list[str]]:
    """The conffile's top-level key lines and its commented [[sites]] example lines."""
    tables = _tables()
    return tables[""], tables["sites"]


def _uncommented(lines: list[str]) -> dict[str, Any]:
    return tomllib.loads("\n".join(line.removeprefix("#") for line in lines))


def _default(field: Any) -> Any:
    value = field.default
    return str(value) if isinstance(value, Path) else value


def test_conffile_lists_every_setting_once() -> None:
    """Every key of pichat.settings.Settings appears in the conffile exactly once."""
    top, _ = _sections()
    keys = [_KEY.match(line).group(1) for line in top]  # type: ignore[union-attr]
    assert sorted(keys) == sorted(set(keys)), "a key is listed twice"
    assert set(keys) == set(Settings.model_fields) - {"sites", "moderators"}
    assert "#[[sites]]" in CONFFILE.read_text().splitlines()
    assert "#[[moderators]]" in CONFFILE.read_text().splitlines()


def test_conffile_commented_values_are_the_defaults() -> None:
    """Each commented key shows the daemon's embedded default as a valid TOML value."""
    top, _ = _sections()
    commented = _uncommented([line for line in top if line.startswith("#")])
    assert commented, "no commented keys found"
    for key, value in commented.items():
        assert value == _default(Settings.model_fields[key]), key


def test_conffile_sets_the_package_paths() -> None:
    """Only state_dir, document_root and control_socket are set, to the package's paths."""
    top, _ = _sections()
    assert _uncommented([line for line in top if not line.startswith("#")]) == PACKAGE_VALUES


def test_conffile_sites_example_lists_every_site_key() -> None:
    """The commented [[sites]] example names every key of a site, with valid values."""
    _, sites = _sections()
    example = _uncommented(sites)
    assert set(example) == set(SiteConfig.model_fields)
    for key in ("room", "title", "allowed_origins"):
        assert example[key] == _default(SiteConfig.model_fields[key]), key


def test_conffile_moderators_example_is_valid() -> None:
    """The commented [[moderators]] example names every key and validates."""
    example = _uncommented(_tables()["moderators"])
    assert set(example) == set(ModeratorConfig.model_fields)
    ModeratorConfig(**example)


def test_conffile_is_accepted_by_the_daemon(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped file validates (its document_root swapped for the checkout's page)."""
    public = PACKAGING.parent / "public"
    monkeypatch.setenv("PICHAT_DOCUMENT_ROOT", str(public))
    settings = load(CONFFILE)
    assert settings.state_dir == Path("/var/lib/pichat")
    assert settings.document_root == public.resolve()
    assert settings.port == 3000


def test_changelog_version_is_the_python_version() -> None:
    """debian/changelog's newest version is pichat.__version__ (a native package)."""
    first = (PACKAGING / "debian/changelog").read_text().splitlines()[0]
    match = re.match(r"^pichat \(([^)]+)\) \w+; urgency=\w+$", first)
    assert match, first
    assert match.group(1) == pichat.__version__


def test_man_page_names_the_python_version() -> None:
    """pichat(8)'s header carries pichat.__version__."""
    header = (PACKAGING / "pichat.8").read_text().splitlines()[0]
    assert header.startswith(".TH PICHAT 8 ")
    assert f'"pichat {pichat.__version__}"' in header
