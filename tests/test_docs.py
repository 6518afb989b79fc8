"""The documentation keeps up with the code: every key and error code is documented."""

from __future__ import annotations

import json
import re
from pathlib import Path

from pichat.protocol import ERROR_CODES
from pichat.settings import ModeratorConfig, Settings, SiteConfig

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _documented_keys(text: str) -> set[str]:
    return set(re.findall(r"^\| `([a-z_]+)` \|", text, flags=re.MULTILINE))


def test_configuration_md_lists_every_setting() -> None:
    """docs/configuration.md has a row for every Settings, Site and Moderator field."""
    documented = _documented_keys((DOCS / "configuration.md").read_text())
    fields = set(Settings.model_fields) | set(SiteConfig.model_fields)
    assert fields | set(ModeratorConfig.model_fields) <= documented


def test_configuration_md_gives_each_default() -> None:
    """The default column of docs/configuration.md matches the model's defaults."""
    text = (DOCS / "configuration.md").read_text()
    for name, field in Settings.model_fields.items():
        if name in ("sites", "moderators"):
            assert re.search(rf"^\| `{name}` \| `\[\]` \|", text, flags=re.MULTILINE), name
            continue
        row = re.search(rf"^\| `{name}` \| `([^`]*)` \|", text, flags=re.MULTILINE)
        assert row, name
        default = field.default
        shown = row.group(1)
        if isinstance(default, str):
            assert shown == f'"{default}"', name
        elif isinstance(default, Path):
            assert shown == f'"{default}"', name
        elif isinstance(default, list):
            assert json.loads(shown) == default, name
        else:
            assert float(shown) == float(default), name


def test_protocol_md_lists_every_error_code() -> None:
    """docs/protocol.md has a row for every error code the server can send."""
    text = (DOCS / "protocol.md").read_text()
    assert set(ERROR_CODES) <= set(re.findall(r"^\| `([a-z_]+)` \|", text, flags=re.MULTILINE))
