"""Validate the configuration in a child process, so the daemon never imports pydantic.

pydantic and pydantic-settings are about 20 MiB of the daemon's idle RSS (half of
it), needed only for the moments a configuration is checked. ``pichat serve`` and
every reload therefore run ``python -m pichat.settings`` (:func:`pichat.settings.
child_main`, still the only code that reads the file and the ``PICHAT_*``
variables) and read its answer: the validated settings, which become a read-only
:class:`~pichat.settings_values.SettingsValues`, or the :class:`ConfigError` it
raised. A child that dies without an answer, or takes longer than
:data:`TIMEOUT`, is a :class:`ChildFailed`.

The answer is a pickle from our own interpreter, read with an unpickler that
builds only plain values and paths: anything else (a pydantic object that would
load pydantic here) is refused.
"""

from __future__ import annotations

import asyncio
import io
import pickle
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, cast

from .settings_values import ConfigError, SettingsValues

if TYPE_CHECKING:
    from .settings import Settings

__all__ = ["TIMEOUT", "ChildFailed", "Pending", "start", "validate"]

#: How long a child may take to answer before it is killed (seconds).
TIMEOUT: float = 60.0
#: What the child runs: ``-P`` keeps the working directory off its ``sys.path``.
CHILD = ("-P", "-m", "pichat.settings")


class ChildFailed(Exception):
    """The validating child gave no answer: it crashed, could not start, or took too long."""


def _arguments(path: Path | None, resolved: bool) -> list[str]:
    """The child's command line.

    Args:
        path: the file; with ``resolved`` false, ``None`` lets the child find it
            as ``pichat serve`` without ``--config`` does.
        resolved: whether ``path`` was already found (a reload re-reads the file
            of the start, or again no file at all).
    """
    if path is not None:
        return [sys.executable, *CHILD, "--file", str(path)]
    return [sys.executable, *CHILD, *(["--no-file"] if resolved else [])]


class _PlainUnpickler(pickle.Unpickler):
    """Builds plain values (pickle's own: dict, list, str, numbers) and paths only."""

    def find_class(self, module: str, name: str) -> type:
        if (module == "pathlib" or module.startswith("pathlib.")) and name in (
            "PosixPath",
            "PurePosixPath",
        ):
            return cast(type, super().find_class(module, name))
        raise pickle.UnpicklingError(f"unexpected {module}.{name} in the answer")


def _last_line(stderr: bytes) -> str:
    lines = stderr.decode(errors="replace").strip().splitlines()
    return lines[-1].strip() if lines else "nothing on stderr"


def _relay(stderr: bytes) -> None:
    """Pass on what a child that did answer wrote to stderr (a library's warning, say).

    Dropped, a deprecation that a future pydantic announces there would reach
    nobody; on the daemon's stderr it reaches the journal.
    """
    for line in stderr.decode(errors="replace").splitlines():
        if line.strip():
            print(f"pichat: the configuration check said: {line.rstrip()}", file=sys.stderr)


def _as_settings(values: SettingsValues) -> Settings:
    """The one place the daemon's settings are typed as the pydantic model.

    :class:`SettingsValues` has every attribute and method of ``Settings`` the
    daemon uses, but only dynamically; importing ``Settings`` to say so at runtime
    would load the 20 MiB this module exists to avoid.
    """
    return cast("Settings", values)


def _decode(returncode: int, stdout: bytes, stderr: bytes) -> tuple[Settings, Path | None]:
    """The child's answer: the settings and the file they came from.

    Raises:
        ConfigError: the child found the configuration invalid.
        ChildFailed: there is no answer to read.
    """
    if returncode != 0 or not stdout:
        how = f"exited with {returncode}" if returncode >= 0 else f"killed by signal {-returncode}"
        raise ChildFailed(f"the configuration check {how}: {_last_line(stderr)}")
    _relay(stderr)
    try:
        answer = _PlainUnpickler(io.BytesIO(stdout)).load()
        path = answer["path"]
        if "problems" in answer:
            raise ConfigError(answer["source"], answer["problems"])
        return _as_settings(SettingsValues(answer["settings"])), path
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as exc:
        raise ChildFailed(f"the configuration check answered nonsense: {exc}") from None


class Pending:
    """A child started by :func:`start`, validating while the daemon imports its modules."""

    def __init__(self, process: subprocess.Popen[bytes], timeout: float) -> None:
        self.process = process
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout

    def result(self) -> tuple[Settings, Path | None]:
        """Wait for the answer (until the deadline, then kill the child).

        Returns:
            the settings, and the file they came from (``None``: no file), which
            every reload re-reads.

        Raises:
            ConfigError: the configuration is invalid.
            ChildFailed: no answer in time, or none at all.
        """
        remaining = max(0.0, self.deadline - time.monotonic())
        try:
            stdout, stderr = self.process.communicate(timeout=remaining)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
            raise ChildFailed(
                f"the configuration check did not answer within {self.timeout:g} s"
            ) from None
        return _decode(self.process.returncode, stdout, stderr)


def start(explicit: Path | None, timeout: float = TIMEOUT) -> Pending:
    """Start validating the configuration of ``pichat serve [--config FILE]``.

    Args:
        explicit: ``--config``'s file, or ``None`` to let the child find it
            (``$PICHAT_CONFIG``, else ``/etc/pichat/pichat.toml`` if present).

    Raises:
        ChildFailed: the interpreter cannot be started.
    """
    try:
        process = subprocess.Popen(
            _arguments(explicit, resolved=False),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except OSError as exc:
        raise ChildFailed(f"cannot start the configuration check: {exc}") from None
    return Pending(process, timeout)


async def validate(path: Path | None, timeout: float = TIMEOUT) -> Settings:
    """Validate the configuration again (a reload) without blocking the event loop.

    Args:
        path: the file found at start (``None``: defaults and environment only).
        timeout: seconds before the child is killed.

    Raises:
        ConfigError: the configuration is invalid.
        ChildFailed: no answer in time, or none at all.
    """
    try:
        process = await asyncio.create_subprocess_exec(
            *_arguments(path, resolved=True),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except OSError as exc:
        raise ChildFailed(f"cannot start the configuration check: {exc}") from None
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise ChildFailed(f"the configuration check did not answer within {timeout:g} s") from None
    except asyncio.CancelledError:
        process.kill()  # shutdown during a reload: the child must not outlive the daemon
        raise
    assert process.returncode is not None  # communicate() waited for the exit
    settings, _ = _decode(process.returncode, stdout, stderr)
    return settings
