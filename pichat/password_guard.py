"""Checking moderators' passwords without stalling the chat, and without letting guessing pay.

scrypt is meant to be slow: tens of milliseconds and 16 MiB on a Pi for each
check. Run on the event loop, every wrong password from anywhere on the
internet would freeze every room for that long, so the check goes to a
:data:`Verifier` the I/O layer provides (a thread; scrypt releases the GIL),
and answers later. Sans I/O: the default verifier answers at once, which is
what the engine's plain-call tests use.

Guessing is bounded three ways: :data:`PASSWORD_TRIES` wrong passwords per
client address per :data:`PASSWORD_WINDOW`; at most :data:`MAX_PENDING` checks
in flight for the whole daemon (more get ``rate_limited``), so a crowd of
addresses cannot queue unbounded work; and a verified password is remembered as
its SHA-256, so a moderator's reconnecting page does not pay scrypt again.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

from .errors import ProtocolError
from .passwords import PasswordHash, verify_password
from .ratelimit import TokenBucket

__all__ = [
    "MAX_PENDING",
    "PASSWORD_TRIES",
    "PASSWORD_WINDOW",
    "PasswordGuard",
    "Verifier",
    "verify_now",
]

PASSWORD_TRIES = 5
PASSWORD_WINDOW = 60.0
#: scrypt checks in flight for the whole daemon; more are refused for a second.
MAX_PENDING = 4

#: Checks ``password`` against a hash and calls back with the verdict, now or
#: later, on the engine's thread.
Verifier = Callable[[PasswordHash, str, Callable[[bool], None]], None]


def verify_now(stored: PasswordHash, password: str, done: Callable[[bool], None]) -> None:
    """The verifier without I/O: scrypt right here."""
    done(verify_password(password, stored))


class PasswordGuard:
    """Rate limits and the verdict cache around one :data:`Verifier`.

    Args:
        verifier: runs scrypt and calls back (the daemon's runs it in a thread).
    """

    def __init__(self, verifier: Verifier = verify_now) -> None:
        self.verifier = verifier
        self.buckets: dict[str, TokenBucket] = {}
        self._verified: dict[bytes, bytes] = {}
        #: Checks started and not answered yet.
        self.pending = 0

    def check(
        self,
        address: str,
        password: str,
        stored: PasswordHash,
        now: Callable[[], float],
        done: Callable[[ProtocolError | None], None],
    ) -> None:
        """Check ``password``; ``done(None)`` when it is right, else ``done(error)``.

        ``done`` may be called before this returns (a known password, a refusal,
        or the verifier without I/O) or later, from the verifier's callback.

        Raises:
            ProtocolError: ``rate_limited``, before any scrypt runs.
        """
        bucket = self.buckets.get(address)
        if bucket is not None:
            wait = bucket.wait(now())
            if wait > 0:
                raise ProtocolError(
                    "rate_limited", f"too many wrong passwords; wait {wait:.0f} s", wait
                )
        digest = hashlib.sha256(password.encode()).digest()
        known = self._verified.get(stored.key)
        if known is not None and hmac.compare_digest(known, digest):
            done(None)
            return
        if self.pending >= MAX_PENDING:
            raise ProtocolError("rate_limited", "too many password checks at once; retry", 1.0)
        self.pending += 1

        def verdict(right: bool) -> None:
            self.pending -= 1
            if right:
                self._verified[stored.key] = digest
                done(None)
                return
            self._wrong(address, now())
            done(ProtocolError("bad_password", "wrong password for this name"))

        self.verifier(stored, password, verdict)

    def _wrong(self, address: str, now: float) -> None:
        bucket = self.buckets.get(address)
        if bucket is None:
            if len(self.buckets) > 4096:  # forget addresses whose bucket refilled
                self.buckets = {k: b for k, b in self.buckets.items() if b.wait(now) > 0}
            bucket = self.buckets[address] = TokenBucket(PASSWORD_TRIES, PASSWORD_WINDOW, now)
        bucket.take(now)
