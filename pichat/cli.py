"""The ``pichat`` command: parse arguments, set up logging, hand over.

``pichat serve`` runs the daemon in the foreground (systemd runs it so);
``pichat check-config`` validates a configuration and prints it in effect;
``pichat backup``, ``export`` and ``restore`` work on the history
(:mod:`.backup`, :mod:`.export`);
``pichat hash-password`` makes the ``password_hash`` of a ``[[moderators]]`` entry;
``pichat ctl`` moderates the running daemon through its control socket.
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import json
import logging
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__, config_child
from .addresses import parse_address
from .config_child import ChildFailed
from .control import ControlError, describe, request
from .passwords import hash_password
from .settings_values import ConfigError
from .systemd import JournalFormatter, systemd_environment

if TYPE_CHECKING:
    # pydantic: `pichat serve` validates in a child (config_child) and never loads it.
    from .settings import Settings

__all__ = ["EX_CONFIG", "main"]

EX_CONFIG = 78  # sysexits(3): configuration error
EX_SOFTWARE = 70  # sysexits(3): internal error (the configuration check gave no answer)
EX_DATAERR = 65  # sysexits(3): bad input (an empty or mismatched password, a refused request)
EX_UNAVAILABLE = 69  # sysexits(3): the daemon cannot be reached


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
    parsers = {}
    for name, summary in (
        ("serve", "run the daemon in the foreground"),
        ("check-config", "validate the configuration and print it in effect"),
        ("backup", "copy the history database (also while pichat runs), then check the copy"),
        ("export", "write every stored message, in id order"),
        ("restore", "replace the history with a backup (pichat must be stopped)"),
    ):
        command = parsers[name] = commands.add_parser(name, help=summary, description=summary)
        command.add_argument(
            "--config",
            type=Path,
            metavar="FILE",
            help="TOML file (default: $PICHAT_CONFIG, else /etc/pichat/pichat.toml if present)",
        )
    backup = parsers["backup"]
    backup.add_argument(
        "file", type=Path, metavar="FILE", help="the copy to write (with --keep: a directory)"
    )
    either = backup.add_mutually_exclusive_group()
    either.add_argument("--force", action="store_true", help="overwrite FILE")
    either.add_argument(
        "--keep",
        type=_at_least_one,
        metavar="N",
        help="FILE is a directory: write a dated pichat-DATE.sqlite3 there, keep the newest N",
    )
    parsers["restore"].add_argument("file", type=Path, metavar="FILE", help="a pichat backup")
    export = parsers["export"]
    export.add_argument("--room", metavar="ROOM", help="only this room (default: every room)")
    export.add_argument("--format", choices=("jsonl", "txt", "html"), default="jsonl")
    export.add_argument("--output", type=Path, metavar="FILE", help="default: standard output")
    summary = "print the scrypt hash of a moderator's password (asked twice, or from stdin)"
    commands.add_parser("hash-password", help=summary, description=summary)
    _ctl_parser(commands)
    return parser


def _ctl_parser(commands: Any) -> None:
    summary = "moderate the running daemon through its control socket"
    ctl = commands.add_parser("ctl", help=summary, description=summary)
    ctl.add_argument("--config", type=Path, metavar="FILE", help="TOML file (finds the socket)")
    ctl.add_argument("--json", action="store_true", help="print the answer as JSON")
    sub = ctl.add_subparsers(dest="action", required=True, metavar="ACTION")

    def add(name: str, summary: str, *arguments: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(name, help=summary, description=summary)
        for argument in arguments:
            parser.add_argument(argument)
        return parser

    add("who", "who is online: name, join time, address").add_argument("room", nargs="?")
    add("bans", "the bans in force")
    add("log", "the moderation log").add_argument(
        "--since", help="a date (2026-12-01, UTC) or an age (30m, 12h, 7d)"
    )
    add("delete", "delete a message", "room", "id")
    add("clear", "empty a room's history", "room")
    add("kick", "close someone's connections (4001)", "room", "name").add_argument("--reason")
    ban = add("ban", "ban someone online (by name) or an address", "room", "target")
    ban.add_argument("--minutes", type=int, default=60, help="0: until lifted (default 60)")
    ban.add_argument("--reason")
    add("unban", "lift the bans of an address or a name", "target")
    mute = add("mute", "let someone read but not post", "room", "name")
    mute.add_argument("--minutes", type=int, default=10, help="0 lifts a mute (default 10)")
    add("lock", "only moderators may post", "room")
    add("unlock", "everyone may post again", "room")
    add("slow", "one message per person per SECONDS (0: off)", "room", "seconds")
    add("announce", "a message from the room itself, shown apart", "room", "text")


def _at_least_one(text: str) -> int:
    """``--keep``'s value: a whole number from 1 (argparse turns the error into one line)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: keep at least 1 backup")
    return value


def _since_ms(text: str) -> int:
    age = re.fullmatch(r"(\d+)([mhd])", text)
    now = datetime.datetime.now(datetime.UTC)
    if age:
        unit = {"m": "minutes", "h": "hours", "d": "days"}[age.group(2)]
        moment = now - datetime.timedelta(**{unit: int(age.group(1))})
    else:
        moment = datetime.datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp() * 1000)


def _ctl_request(args: argparse.Namespace) -> dict[str, Any]:
    """The control request for ``pichat ctl`` arguments."""
    payload: dict[str, Any] = {"command": args.action}
    for key in ("room", "name", "reason", "minutes", "text"):
        value = getattr(args, key, None)
        if value is not None:
            payload[key] = value
    if args.action == "delete":
        payload["id"] = int(args.id)
    if args.action == "slow":
        payload["seconds"] = int(args.seconds)
    target = getattr(args, "target", None)
    if target is not None:
        payload["address" if parse_address(target) is not None else "name"] = target
    if args.action == "log" and args.since:
        payload["since_ms"] = _since_ms(args.since)
    return payload


def _ctl(args: argparse.Namespace, settings: Settings) -> int:
    try:
        payload = _ctl_request(args)
    except ValueError as exc:
        print(f"pichat: {exc}", file=sys.stderr)
        return EX_DATAERR
    path = settings.control_path()
    try:
        result = request(path, payload)
    except ControlError as exc:
        print(f"pichat: {exc}", file=sys.stderr)
        refused = str(exc).startswith(("cannot reach", "the daemon did not"))
        return EX_UNAVAILABLE if refused else EX_DATAERR
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        print(describe(args.action, result))
    return 0


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


def _history_command(args: argparse.Namespace, settings: Settings) -> int:
    from .backup import EX_CANTCREAT, BackupError, backup, backup_rotating, restore
    from .export import export

    try:
        if args.command == "backup" and args.keep is not None:
            print(backup_rotating(settings.state_dir, args.file, args.keep), file=sys.stderr)
        elif args.command == "backup":
            print(backup(settings.state_dir, args.file, args.force), file=sys.stderr)
        elif args.command == "restore":
            print(restore(settings.state_dir, args.file), file=sys.stderr)
        elif args.output is None:
            export(settings.state_dir, sys.stdout, args.room, args.format)
        else:
            try:
                output = args.output.open("w", encoding="utf-8")
            except OSError as exc:
                message = f"cannot write {args.output}: {exc.strerror}"
                raise BackupError(EX_CANTCREAT, message) from None
            with output:
                count = export(settings.state_dir, output, args.room, args.format)
            print(f"exported {count} messages to {args.output}", file=sys.stderr)
    except BackupError as exc:
        print(f"pichat {args.command}: {exc}", file=sys.stderr)
        return exc.code
    return 0


def _print_config_error(exc: ConfigError) -> None:
    print(f"pichat: invalid configuration ({exc.source}):", file=sys.stderr)
    for problem in exc.problems:
        print(f"  {problem}", file=sys.stderr)


def _load(path: Path | None) -> Settings | None:
    from .settings import load

    try:
        return load(path)
    except ConfigError as exc:
        _print_config_error(exc)
        return None


def _serve(explicit: Path | None) -> int:
    """Run the daemon; its configuration is validated in a child process.

    The child runs while this process imports the daemon's modules (measured: the
    start to READY=1 takes about 0.1 s longer), and pydantic is never loaded here
    (about 20 MiB of the daemon's idle RSS).
    """
    try:
        pending = config_child.start(explicit)
        from .app import run  # the daemon's imports, while the child validates

        settings, path = pending.result()
    except ConfigError as exc:
        _print_config_error(exc)
        return EX_CONFIG
    except ChildFailed as exc:
        print(f"pichat: {exc}", file=sys.stderr)
        return EX_SOFTWARE
    env = systemd_environment()
    _setup_logging(settings.log_level, env.journal)
    return run(settings, path, env)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pichat`` console script."""
    args = _parser().parse_args(argv)
    if args.command == "hash-password":
        return _hash_password()
    if args.command == "serve":
        return _serve(args.config)
    from .settings import config_path, dump_toml  # the other commands validate in-process

    path = config_path(args.config)
    settings = _load(path)
    if settings is None:
        return EX_CONFIG
    if args.command in ("backup", "export", "restore"):
        return _history_command(args, settings)
    if args.command == "ctl":
        return _ctl(args, settings)
    print(f"# pichat {__version__}: configuration in effect ({path or 'no file'})")
    print(dump_toml(settings), end="")
    return 0
