"""TLS on the one port: the server's ``SSLContext``, and swapping its certificate live.

``websockets.serve(ssl=context)`` wraps every accepted connection with this one
context, so loading a new chain into it (``load_cert_chain`` on the live
context) changes what new handshakes present while open connections keep the
session they have. A new chain is tried on a scratch context first: a missing
or mismatched key must leave the running certificate in place, never half of a
new one.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .settings import Settings

__all__ = ["TLSError", "hsts_header", "reload_context", "server_context"]


class TLSError(Exception):
    """The certificate or key cannot be used; the message names the setting."""


def _load(context: ssl.SSLContext, certificate: Path, key: Path) -> None:
    for name, path in (("tls_certificate", certificate), ("tls_private_key", key)):
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise TLSError(f"{name}: cannot read {path}: {exc.strerror}") from None
    try:
        context.load_cert_chain(certificate, key)
    except ssl.SSLError as exc:
        raise TLSError(
            f"tls_private_key: {key} does not match tls_certificate {certificate}, or one "
            f"of them is not PEM ({exc.reason or exc})"
        ) from None


def _new_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # no TLS 1.0 / 1.1
    context.set_alpn_protocols(["http/1.1"])
    return context


def server_context(settings: Settings) -> ssl.SSLContext | None:
    """The context for ``serve``, or ``None`` when TLS is off.

    Raises:
        TLSError: naming the setting whose file cannot be used.
    """
    if not settings.tls_certificate:
        return None
    context = _new_context()
    _load(context, Path(settings.tls_certificate), Path(settings.tls_private_key))
    return context


def reload_context(context: ssl.SSLContext, settings: Settings) -> None:
    """Load the configured chain into the live ``context`` (at reload).

    Raises:
        TLSError: the new files cannot be used; ``context`` is unchanged then.
    """
    certificate, key = Path(settings.tls_certificate), Path(settings.tls_private_key)
    _load(_new_context(), certificate, key)  # a bad pair fails here, harmlessly
    _load(context, certificate, key)


def hsts_header(settings: Settings) -> str | None:
    """The ``Strict-Transport-Security`` value, or ``None`` (TLS off, or hsts_max_age 0)."""
    if not settings.tls_certificate or settings.hsts_max_age == 0:
        return None
    return f"max-age={settings.hsts_max_age}"
