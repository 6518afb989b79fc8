"""The daemon's plain settings: the same values and methods as the pydantic model, read-only."""

from __future__ import annotations

from pathlib import Path

import pytest

from pichat.passwords import hash_password
from pichat.settings import Settings
from pichat.settings_values import SettingsValues, Values
from tests.daemon import PUBLIC

HASH = hash_password("pw", n=16)


def _settings(tmp_path: Path, **values: object) -> Settings:
    (tmp_path / "site").mkdir(exist_ok=True)
    config: dict[str, object] = {
        "state_dir": tmp_path / "state",
        "document_root": PUBLIC,
        "sites": [
            {"server_names": ["a.example"], "document_root": tmp_path / "site", "room": "a"},
            {"server_names": ["b.example"], "title": "B"},
        ],
        "moderators": [{"name": "Mod", "password_hash": HASH}],
        "allowed_origins": ["https://chat.example.org"],
    }
    config.update(values)
    return Settings(**config)  # type: ignore[arg-type]


def test_every_setting_reads_as_on_the_model(tmp_path: Path) -> None:
    """Each top-level key, and each key of every [[sites]] and [[moderators]] entry, is equal."""
    settings = _settings(tmp_path)
    values = SettingsValues(settings.model_dump())
    for name in Settings.model_fields:
        if name in ("sites", "moderators"):
            continue
        assert getattr(values, name) == getattr(settings, name), name
    for table in ("sites", "moderators"):
        for entry, model in zip(getattr(values, table), getattr(settings, table), strict=True):
            for key in type(model).model_fields:
                assert getattr(entry, key) == getattr(model, key), (table, key)
    assert isinstance(values.state_dir, Path) and isinstance(values.sites[0].document_root, Path)


def test_methods_answer_as_the_model_does(tmp_path: Path) -> None:
    """control_path() and site_document_root() answer as the model's, with and without overrides."""
    for settings in (_settings(tmp_path), _settings(tmp_path, control_socket="/run/x.sock")):
        values = SettingsValues(settings.model_dump())
        assert values.control_path() == settings.control_path()
        for entry, site in zip(values.sites, settings.sites, strict=True):
            assert values.site_document_root(entry) == settings.site_document_root(site)
    assert values.site_document_root(values.sites[0]) == tmp_path / "site"
    assert values.site_document_root(values.sites[1]) == PUBLIC


def test_values_are_read_only(tmp_path: Path) -> None:
    """Setting or deleting a key raises, at the top level and in an entry, as on frozen models."""
    values = SettingsValues(_settings(tmp_path).model_dump())
    with pytest.raises(AttributeError, match="read-only"):
        values.port = 1
    with pytest.raises(AttributeError, match="read-only"):
        del values.port
    with pytest.raises(AttributeError, match="read-only"):
        values.sites[0].room = "other"
    with pytest.raises(AttributeError, match="no setting 'colour'"):
        _ = values.colour
    assert values.port == 3000 and values.sites[0].room == "a"


def test_equality_is_by_value(tmp_path: Path) -> None:
    """Two dumps of the same configuration are equal; a changed key makes them differ."""
    first = SettingsValues(_settings(tmp_path).model_dump())
    assert first == SettingsValues(_settings(tmp_path).model_dump())
    assert first != SettingsValues(_settings(tmp_path, title="Other").model_dump())
    assert first.sites[1] == Values(
        {
            "server_names": ["b.example"],
            "document_root": None,
            "room": "lobby",
            "title": "B",
            "allowed_origins": [],
        }
    )
    assert first != first.sites[1]


def test_repr_hides_secrets(tmp_path: Path) -> None:
    """Like the model's repr=False: neither a password hash nor a Redis URL is shown."""
    values = SettingsValues(_settings(tmp_path).model_dump())
    assert HASH not in repr(values)
    assert "password_hash=***" in repr(values.moderators[0]) and "redis_url=***" in repr(values)
