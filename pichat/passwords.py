"""Moderators and their passwords: scrypt hashes with a random salt, compared in constant time.

A hash reads ``scrypt$N$r$p$SALT$KEY`` (salt and key in unpadded URL-safe
base64), so the cost can be raised later without breaking old hashes. The
daemon only ever holds hashes; ``pichat hash-password`` makes them.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import secrets
from collections.abc import Iterable

from .validation import name_key

__all__ = ["Moderators", "PasswordHash", "hash_password", "parse_hash", "verify_password"]

PREFIX = "scrypt"
#: 2**14 with r=8 takes 16 MiB and some tens of milliseconds on a Pi 4.
DEFAULT_N = 2**14
DEFAULT_R = 8
DEFAULT_P = 1
SALT_BYTES = 16
KEY_BYTES = 32
#: scrypt needs 128 * N * r bytes; allow up to 64 MiB (N = 2**16).
MAX_MEMORY = 64 * 1024 * 1024 + 1024 * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class PasswordHash:
    """A parsed ``scrypt$...`` hash."""

    n: int
    r: int
    p: int
    salt: bytes
    key: bytes

    def derive(self, password: str) -> bytes:
        """The key ``password`` derives with this hash's salt and cost."""
        return hashlib.scrypt(
            password.encode(),
            salt=self.salt,
            n=self.n,
            r=self.r,
            p=self.p,
            maxmem=MAX_MEMORY,
            dklen=len(self.key),
        )

    def __str__(self) -> str:
        return "$".join(
            (PREFIX, str(self.n), str(self.r), str(self.p), _b64(self.salt), _b64(self.key))
        )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, n: int = DEFAULT_N, salt: bytes | None = None) -> str:
    """A new ``scrypt$...`` hash of ``password`` with a random salt."""
    if salt is None:
        salt = secrets.token_bytes(SALT_BYTES)
    draft = PasswordHash(n, DEFAULT_R, DEFAULT_P, salt, b"\0" * KEY_BYTES)
    return str(dataclasses.replace(draft, key=draft.derive(password)))


def parse_hash(text: str) -> PasswordHash:
    """Parse a hash made by :func:`hash_password`.

    Raises:
        ValueError: naming what is wrong (for the configuration error).
    """
    parts = text.split("$")
    if len(parts) != 6 or parts[0] != PREFIX:
        raise ValueError("not a scrypt$N$r$p$salt$key hash; make one with `pichat hash-password`")
    try:
        n, r, p = (int(part) for part in parts[1:4])
        salt, key = _unb64(parts[4]), _unb64(parts[5])
    except (ValueError, binascii.Error):
        raise ValueError("malformed scrypt hash; make one with `pichat hash-password`") from None
    if n < 2 or n & (n - 1) or not 1 <= r <= 32 or not 1 <= p <= 16 or 128 * n * r > MAX_MEMORY:
        raise ValueError("scrypt cost out of range (N a power of two, 128*N*r at most 64 MiB)")
    if len(salt) < 8 or len(key) < 16:
        raise ValueError("scrypt salt or key too short")
    return PasswordHash(n, r, p, salt, key)


def verify_password(password: str, stored: PasswordHash) -> bool:
    """Whether ``password`` matches; the comparison takes the same time either way."""
    return hmac.compare_digest(stored.derive(password), stored.key)


@dataclasses.dataclass(frozen=True)
class Moderators:
    """The configured moderators: name key -> (name, password hash)."""

    by_key: dict[str, tuple[str, PasswordHash]] = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, entries: Iterable[tuple[str, PasswordHash]]) -> Moderators:
        """The table of ``(name, hash)`` pairs (names unique by key, as settings check)."""
        return cls({name_key(name): (name, hashed) for name, hashed in entries})

    def get(self, name: str) -> PasswordHash | None:
        """The hash of the moderator with this name (by key), if one is configured."""
        entry = self.by_key.get(name_key(name))
        return entry[1] if entry is not None else None
