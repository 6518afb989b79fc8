"""Validated settings as plain read-only values: what the daemon holds instead of pydantic.

pydantic and pydantic-settings cost the daemon about 20 MiB of its idle RSS, for
code that runs only while a configuration is checked. So :mod:`pichat.settings`
validates in a short-lived child process (:mod:`pichat.config_child`), and the
long-running daemon keeps the child's answer, ``Settings.model_dump()``, as a
:class:`SettingsValues`: the same attributes, the same two methods, equality by
value, and no assignment, like the frozen pydantic model.

Nothing here reads a file or the environment, and nothing imports pydantic. The
logic of ``control_path`` and ``site_document_root`` lives here once;
:class:`pichat.settings.Settings` calls the same functions. :class:`ConfigError`
lives here too, so the daemon raises and catches the very class ``settings``
exports without importing it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

__all__ = [
    "ConfigError",
    "SettingsValues",
    "Values",
    "control_path",
    "site_document_root",
]

#: Values a repr must not show (the model marks them ``repr=False``: a Redis URL
#: may carry a password, a hash is the moderator's secret).
SECRET_KEYS = frozenset({"redis_url", "password_hash"})


class ConfigError(Exception):
    """The configuration is invalid; ``problems`` holds one line per bad key."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"invalid configuration ({source}):\n" + "\n".join(problems))


def control_path(control_socket: str, state_dir: Path) -> Path:
    """Where the control socket is: ``control_socket``, else ``control.sock`` in ``state_dir``."""
    return Path(control_socket) if control_socket else state_dir / "control.sock"


def site_document_root(site_root: Path | None, default_root: Path) -> Path:
    """The directory a site serves: its own ``document_root``, else the top-level one."""
    return site_root if site_root is not None else default_root


def _frozen(value: object) -> object:
    """A dumped value as the daemon reads it: tables (dicts) become :class:`Values`."""
    if isinstance(value, Mapping):
        return Values(value)
    if isinstance(value, list):
        return [_frozen(item) for item in value]
    return value


class Values:
    """One validated table (the top level, a ``[[sites]]`` or ``[[moderators]]`` entry).

    Keys are read as attributes; setting or deleting one raises ``AttributeError``,
    as on the frozen pydantic models. Two tables are equal when their values are.

    Args:
        values: a ``model_dump()`` of the table (plain Python values and paths).
    """

    __slots__ = ("_values",)
    _values: dict[str, object]

    def __init__(self, values: Mapping[str, object]) -> None:
        object.__setattr__(self, "_values", {key: _frozen(v) for key, v in values.items()})

    def __getattr__(self, name: str) -> Any:
        # Only reached for names that are not slots or methods.
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no setting {name!r}") from None

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"settings are read-only: cannot set {name!r}")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"settings are read-only: cannot delete {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Values):
            return NotImplemented
        return type(self) is type(other) and self._values == other._values

    __hash__ = None  # type: ignore[assignment]  # lists inside: unhashable, as the models

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._values))

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{key}={'***' if key in SECRET_KEYS else repr(value)}"
            for key, value in self._values.items()
        )
        return f"{type(self).__name__}({shown})"


class SettingsValues(Values):
    """The whole configuration, with the methods of :class:`pichat.settings.Settings`."""

    __slots__ = ()

    def control_path(self) -> Path:
        """Where the control socket is (``control_socket``, else in ``state_dir``)."""
        return control_path(self.control_socket, self.state_dir)

    def site_document_root(self, site: Any) -> Path:
        """The directory a site serves: its own, else the top-level one."""
        return site_document_root(site.document_root, self.document_root)
