"""Configuration: the only module that reads the environment or the config file.

Sources, highest first: environment variables (``PICHAT_`` prefix), the TOML file,
the embedded defaults. The embedded defaults make ``pichat serve`` in a checkout
work with nothing else: port 3000, history in ``./var``, the page from ``./public``.

Invalid configuration never half-applies: :func:`load` either returns a complete,
validated :class:`Settings` or raises :class:`ConfigError` listing every bad key.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import sys
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from .config_values import (
    DocumentRoot,
    Networks,
    Origins,
    RoomName,
    ServerNames,
    Title,
    check_moderator_name,
    check_password_hash,
    check_proxies,
    check_redis_url,
)
from .settings_values import ConfigError, control_path, site_document_root
from .validation import name_key

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "ConfigError",
    "ModeratorConfig",
    "Settings",
    "SiteConfig",
    "child_main",
    "config_path",
    "dump_toml",
    "load",
]

DEFAULT_CONFIG_FILE = Path("/etc/pichat/pichat.toml")


class SiteConfig(BaseModel):
    """One ``[[sites]]`` table as written: which Host names it answers, what it serves.

    :class:`pichat.sites.Site` is the resolved form a request uses.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    server_names: Annotated[ServerNames, Field(min_length=1)]
    document_root: DocumentRoot | None = None
    room: RoomName = "lobby"
    title: Title = "pichat"
    allowed_origins: Origins = []


class ModeratorConfig(BaseModel):
    """One ``[[moderators]]`` table: a reserved name and the hash of its password."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(max_length=256), AfterValidator(check_moderator_name)]
    password_hash: Annotated[str, AfterValidator(check_password_hash)] = Field(repr=False)


class Settings(BaseSettings):
    """Every setting of the daemon, with its embedded default.

    ``docs/configuration.md`` documents each key; the TOML file uses these names.
    """

    model_config = SettingsConfigDict(
        env_prefix="PICHAT_",
        extra="forbid",
        frozen=True,
        validate_default=True,
    )

    # Network. Changing these needs a restart.
    host: str = ""
    port: int = Field(3000, ge=0, le=65535)

    # Files.
    state_dir: Path = Path("var")
    # pichat ctl's Unix socket; "" = control.sock in state_dir.
    control_socket: str = ""
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    # The default site: answers any Host that no [[sites]] entry names.
    document_root: DocumentRoot = Path("public")
    title: Title = "pichat"
    room: RoomName = "lobby"
    allowed_origins: Origins = []
    # Empty: the default site answers any Host (the appliance reached by IP).
    # Set: a WebSocket upgrade for a Host no site names is refused (DNS rebinding).
    server_names: ServerNames = []
    sites: list[SiteConfig] = []

    # Reverse proxies whose forwarded-address header is believed (addresses or CIDR).
    trusted_proxies: Annotated[list[str], AfterValidator(check_proxies)] = []
    proxy_header: Literal["x-forwarded-for", "forwarded"] = "x-forwarded-for"

    # Moderation: reserved names and their password hashes (`pichat hash-password`).
    moderators: list[ModeratorConfig] = []

    # History.
    history_replay: int = Field(100, ge=0, le=100_000)
    history_max_messages: int = Field(1000, ge=1, le=1_000_000)
    history_max_age_days: float = Field(0.0, ge=0)
    # A welcome or history page carries at most this many bytes of messages.
    history_replay_bytes: int = Field(256 * 1024, ge=4096, le=16 * 1024 * 1024)

    # Limits.
    max_message_length: int = Field(2000, ge=1, le=1_000_000)
    max_name_length: int = Field(32, ge=1, le=256)
    max_frame_bytes: int = Field(65536, ge=1024, le=16 * 1024 * 1024)
    rate_messages: int = Field(10, ge=1)
    rate_window: float = Field(10.0, gt=0)
    # All connections from one client address together, per rate_window.
    rate_messages_per_ip: int = Field(30, ge=1)
    max_connections: int = Field(5000, ge=1)
    max_connections_per_ip: int = Field(100, ge=1)
    send_queue_bytes: int = Field(1024 * 1024, ge=16 * 1024)
    ping_interval: float = Field(30.0, ge=0)
    join_timeout: float = Field(10.0, gt=0)

    # TLS on the same port: PEM files, both or neither ("" = plain HTTP).
    tls_certificate: str = ""
    tls_private_key: str = ""
    hsts_max_age: int = Field(31_536_000, ge=0)

    # Scale-out: daemons with the same redis_url share their rooms ("" = this daemon
    # alone, history in SQLite). Changing it needs a restart.
    redis_url: Annotated[str, AfterValidator(check_redis_url)] = Field("", repr=False)
    # How long READY=1 waits for Redis at start before starting degraded.
    redis_start_timeout: float = Field(10.0, ge=0, le=600)
    # A dead daemon's members leave everywhere within this many seconds.
    redis_presence_ttl: float = Field(15.0, ge=3, le=3600)

    # Monitoring: who may read /metrics (addresses or CIDRs; others get 403).
    metrics_allowed: Networks = ["127.0.0.0/8", "::1/128"]

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        seen: dict[str, int] = {}
        for index, site in enumerate(self.sites):
            for name in site.server_names:
                if name in seen:
                    raise ValueError(
                        f"sites[{index}].server_names: {name!r} is already named by "
                        f"sites[{seen[name]}]"
                    )
                seen[name] = index
        if bool(self.tls_certificate) != bool(self.tls_private_key):
            missing = "tls_private_key" if self.tls_certificate else "tls_certificate"
            raise ValueError(f"{missing}: tls_certificate and tls_private_key go together")
        keys: dict[str, int] = {}
        for index, moderator in enumerate(self.moderators):
            key = name_key(moderator.name)
            if key in keys:
                raise ValueError(
                    f"moderators[{index}].name: {moderator.name!r} is the same name as "
                    f"moderators[{keys[key]}]"
                )
            keys[key] = index
            if len(moderator.name) > self.max_name_length:
                raise ValueError(
                    f"moderators[{index}].name: longer than max_name_length "
                    f"({self.max_name_length})"
                )
        if self.history_replay > self.history_max_messages:
            raise ValueError(
                f"history_replay ({self.history_replay}) exceeds history_max_messages "
                f"({self.history_max_messages})"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file's content arrives as init arguments (see load()); the
        # environment must win over it, so it comes first.
        return env_settings, init_settings

    def control_path(self) -> Path:
        """Where the control socket is (``control_socket``, else in ``state_dir``)."""
        return control_path(self.control_socket, self.state_dir)

    def site_document_root(self, site: SiteConfig) -> Path:
        """The directory a site serves: its own, else the top-level one."""
        return site_document_root(site.document_root, self.document_root)


def config_path(explicit: Path | None) -> Path | None:
    """Which TOML file to read: ``--config``, else ``$PICHAT_CONFIG``, else the default.

    ``PICHAT_CONFIG`` set but empty means "no file" (``make run`` uses that so a
    checkout ignores an installed package's configuration).
    """
    if explicit is not None:
        return explicit
    env = os.environ.get("PICHAT_CONFIG")
    if env is not None:
        return Path(env) if env else None
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.exists() else None


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text or "(top level)"


def load(path: Path | None) -> Settings:
    """Read and validate the configuration.

    Args:
        path: the TOML file, or ``None`` for environment and defaults only.

    Raises:
        ConfigError: listing every bad key with the reason.
    """
    source = str(path) if path is not None else "defaults and environment"
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with path.open("rb") as file:
                data = tomllib.load(file)
        except OSError as exc:
            raise ConfigError(source, [f"cannot read the file: {exc.strerror}"]) from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(source, [f"not valid TOML: {exc}"]) from exc
    try:
        return Settings(**data)
    except SettingsError as exc:
        # e.g. PICHAT_ALLOWED_ORIGINS=https://x.org: a list must be given as JSON.
        field = re.search(r'field "(\w+)"', str(exc))
        name = field.group(1) if field else "environment"
        raise ConfigError(
            source,
            [f'{name}: PICHAT_{name.upper()} is not valid JSON (lists look like \'["a", "b"]\')'],
        ) from None
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            message = error["msg"]
            if message.startswith("Value error, "):
                message = message[len("Value error, ") :]
            problems.append(f"{_location(tuple(error['loc']))}: {message}")
        raise ConfigError(source, problems) from None


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str):
        # A JSON string is a valid TOML basic string for everything we produce.
        # TOML wants DEL escaped too; JSON escapes the other controls already.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def dump_toml(settings: Settings) -> str:
    """The effective configuration as a TOML file ``load`` accepts back."""
    lines = []
    tables = []
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if name in ("sites", "moderators"):
            for entry in value:
                tables.append("")
                tables.append(f"[[{name}]]")
                for key in type(entry).model_fields:
                    item = getattr(entry, key)
                    if item is not None:
                        tables.append(f"{key} = {_toml_value(item)}")
        else:
            lines.append(f"{name} = {_toml_value(value)}")
    return "\n".join(lines + tables) + "\n"


def child_main(argv: list[str]) -> int:
    """``python -m pichat.settings``: validate, and answer the daemon on stdout.

    The daemon never imports pydantic (about 20 MiB of an idle Pi's memory), so it
    runs this in a child process (:mod:`pichat.config_child`) at start and on every
    reload. The child inherits the daemon's environment, a configuration source.

    Args:
        argv: nothing (the file ``config_path(None)`` finds), ``--file FILE``
            (that file) or ``--no-file`` (defaults and environment only).

    Returns:
        0 once the answer is written: a pickle of ``{"path": ..., "settings":
        Settings.model_dump()}`` or, for a :class:`ConfigError`, ``{"path": ...,
        "source": ..., "problems": [...]}``; 64 (EX_USAGE) for bad arguments.
        Anything else (a traceback, an exit without an answer) is the daemon's to report.
    """
    if argv == ["--no-file"]:
        path = None
    elif len(argv) == 2 and argv[0] == "--file":
        path = Path(argv[1])
    elif not argv:
        path = config_path(None)
    else:
        print("usage: python -m pichat.settings [--file FILE | --no-file]", file=sys.stderr)
        return 64
    answer: dict[str, object] = {"path": path}
    try:
        answer["settings"] = load(path).model_dump()
    except ConfigError as exc:
        answer.update(source=exc.source, problems=exc.problems)
    sys.stdout.buffer.write(pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL))
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
