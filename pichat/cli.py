"""The ``pichat`` command: parse arguments, set up logging, hand over.

``pichat serve`` runs the daemon in the foreground (systemd runs it so);
``pichat check-config`` validates a configuration and prints it in effect;
``pichat backup``, ``export`` and ``restore`` work on the history
(:mod:`.backup`, :mod:`.export`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import __version__
from .settings import ConfigError, Settings, config_path, dump_toml, load
from .systemd import JournalFormatter, systemd_environment

__all__ = ["EX_CONFIG", "main"]

EX_CONFIG = 78  # sysexits(3): configuration error


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
    parsers["backup"].add_argument("file", type=Path, metavar="FILE", help="the copy to write")
    parsers["backup"].add_argument("--force", action="store_true", help="overwrite FILE")
    parsers["restore"].add_argument("file", type=Path, metavar="FILE", help="a pichat backup")
    export = parsers["export"]
    export.add_argument("--room", metavar="ROOM", help="only this room (default: every room)")
    export.add_argument("--format", choices=("jsonl", "txt", "html"), default="jsonl")
    export.add_argument("--output", type=Path, metavar="FILE", help="default: standard output")
    return parser


def _history_command(args: argparse.Namespace, settings: Settings) -> int:
    from .backup import EX_CANTCREAT, BackupError, backup, restore
    from .export import export

    try:
        if args.command == "backup":
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
    path = config_path(args.config)
    settings = _load(path)
    if settings is None:
        return EX_CONFIG
    if args.command in ("backup", "export", "restore"):
        return _history_command(args, settings)
    if args.command == "check-config":
        print(f"# pichat {__version__}: configuration in effect ({path or 'no file'})")
        print(dump_toml(settings), end="")
        return 0
    env = systemd_environment()
    _setup_logging(settings.log_level, env.journal)
    from .app import run  # the daemon's imports are not needed to check a config

    return run(settings, path, env)
