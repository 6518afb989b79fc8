"""The ``pichat`` command: parse arguments, set up logging, hand over.

``pichat serve`` runs the daemon in the foreground (systemd runs it so);
``pichat check-config`` validates a configuration and prints it in effect;
``pichat hash-password`` makes the ``password_hash`` of a ``[[moderators]]`` entry.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from pathlib import Path

from . import __version__
from .passwords import hash_password
from .settings import ConfigError, Settings, config_path, dump_toml, load
from .systemd import JournalFormatter, systemd_environment

__all__ = ["EX_CONFIG", "main"]

EX_CONFIG = 78  # sysexits(3): configuration error
EX_DATAERR = 65  # sysexits(3): bad input (an empty or mismatched password)


class _QuietHandshakes(logging.Filter):
    """Demote websockets' "opening handshake failed" (scanners, HEAD requests) to debug."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith("opening handshake failed"):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            record.exc_info = None
            return logging.getLogger("pichat").isEnabledFor(logging.DEBUG)
        return True


def _setup_logging(level: str, journal: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if journal:
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("pichat").setLevel(level.upper())
    logging.getLogger("websockets.server").addFilter(_QuietHandshakes())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pichat", description="A chat-room appliance: WebSocket chat and its page."
    )
    parser.add_argument("--version", action="version", version=f"pichat {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, summary in (
        ("serve", "run the daemon in the foreground"),
        ("check-config", "validate the configuration and print it in effect"),
    ):
        command = commands.add_parser(name, help=summary, description=summary)
        command.add_argument(
            "--config",
            type=Path,
            metavar="FILE",
            help="TOML file (default: $PICHAT_CONFIG, else /etc/pichat/pichat.toml if present)",
        )
    summary = "print the scrypt hash of a moderator's password (asked twice, or from stdin)"
    commands.add_parser("hash-password", help=summary, description=summary)
    return parser


def _hash_password() -> int:
    """Read a password (twice without echo on a terminal, else one stdin line); print its hash."""
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Again: "):
            print("pichat: the passwords differ", file=sys.stderr)
            return EX_DATAERR
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("pichat: empty password", file=sys.stderr)
        return EX_DATAERR
    print(hash_password(password))
    return 0


def _load(path: Path | None) -> Settings | None:
    try:
        return load(path)
    except ConfigError as exc:
        print(f"pichat: invalid configuration ({exc.source}):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pichat`` console script."""
    args = _parser().parse_args(argv)
    if args.command == "hash-password":
        return _hash_password()
    path = config_path(args.config)
    settings = _load(path)
    if settings is None:
        return EX_CONFIG
    if args.command == "check-config":
        print(f"# pichat {__version__}: configuration in effect ({path or 'no file'})")
        print(dump_toml(settings), end="")
        return 0
    env = systemd_environment()
    _setup_logging(settings.log_level, env.journal)
    from .app import run  # the daemon's imports are not needed to check a config

    return run(settings, path, env)
