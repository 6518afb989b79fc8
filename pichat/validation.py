"""Field rules, sans I/O: names, avatars, texts, and the form names are compared in.

Shared by both dialects and by moderation. :func:`name_key` is what makes
``Alice``, ``alice``, ``ａｌｉｃｅ`` and ``Alice\u200b`` one name: uniqueness in a
room and moderators' reserved names both compare keys, never raw names.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import urlsplit

from .errors import ProtocolError

__all__ = [
    "MAX_AVATAR_LENGTH",
    "has_control",
    "name_key",
    "validate_avatar",
    "validate_name",
    "validate_text",
]

MAX_AVATAR_LENGTH = 500

# Unicode's Default_Ignorable_Code_Point ranges (DerivedCoreProperties.txt, 15.1):
# invisible when rendered, so two names differing only in them look the same.
_IGNORABLE_RANGES: tuple[tuple[int, int], ...] = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)


def is_ignorable(char: str) -> bool:
    """Whether ``char`` is a default-ignorable code point (zero-width space, joiners…)."""
    point = ord(char)
    return any(low <= point <= high for low, high in _IGNORABLE_RANGES)


def name_key(name: str) -> str:
    """The form two names are compared in: NFKC, case-folded, without ignorables.

    NFKC maps compatibility forms (full-width letters, ligatures) to plain ones;
    case folding may produce text that is no longer NFKC, so normalise again.
    An empty key means a name made only of invisible characters.
    """
    if name.isascii():
        # The common case, and the same answer: ASCII is its own NFKC, folds
        # to ASCII, and holds no ignorable. A join computes several keys, and
        # the general path was a twentieth of a reconnect storm's time.
        return name.casefold().strip()
    folded = unicodedata.normalize("NFKC", name).casefold()
    visible = "".join(char for char in folded if not is_ignorable(char))
    return unicodedata.normalize("NFKC", visible).strip()


def has_control(text: str, allowed: str = "") -> bool:
    """Whether ``text`` holds a character no name or message may carry.

    Those are the controls (Cc), lone surrogates (Cs), the line and paragraph
    separators (Zl, Zp) and the bidi overrides; ``allowed`` lets some through
    (a message's newline and tab). Every one of those categories is a fixed set
    of code points (Unicode's stability policy), so one regular expression in C
    gives the answer a per-character ``unicodedata.category`` loop gave at a
    tenth of the cost: every message is checked once.
    """
    pattern = _FORBIDDEN.get(allowed)
    if pattern is None:
        pattern = _FORBIDDEN[allowed] = _forbidden(allowed)
    return pattern.search(text) is not None


# Cc: U+0000-U+001F and U+007F-U+009F. Cs: U+D800-U+DFFF. Zl: U+2028. Zp: U+2029.
_CONTROL_RANGES = ((0x00, 0x1F), (0x7F, 0x9F), (0xD800, 0xDFFF), (0x2028, 0x2029))


def _forbidden(allowed: str) -> re.Pattern[str]:
    codes = {code for low, high in _CONTROL_RANGES for code in range(low, high + 1)}
    codes |= {ord(char) for char in _BIDI_CONTROLS}
    codes -= {ord(char) for char in allowed}
    ranges: list[list[int]] = []
    for code in sorted(codes):
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    body = "".join(
        re.escape(chr(low)) + ("-" + re.escape(chr(high)) if high > low else "")
        for low, high in ranges
    )
    return re.compile(f"[{body}]")


_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_FORBIDDEN: dict[str, re.Pattern[str]] = {}


def validate_name(value: object, limit: int) -> str:
    """A display name, trimmed; raises ``bad_name`` or ``name_too_long``."""
    if not isinstance(value, str):
        raise ProtocolError("bad_name", "name must be a string")
    name = value.strip()
    if not name:
        raise ProtocolError("bad_name", "name is empty")
    if has_control(name):
        raise ProtocolError("bad_name", "name contains control characters")
    if not name_key(name):
        raise ProtocolError("bad_name", "name has no visible characters")
    if len(name) > limit:
        raise ProtocolError("name_too_long", f"name is longer than {limit} characters")
    return name


def validate_avatar(value: object) -> str:
    """An avatar URL: empty, or http(s) with a host; raises ``bad_avatar``."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ProtocolError("bad_avatar", "avatar must be a string")
    avatar = value.strip()
    if not avatar:
        return ""
    if len(avatar) > MAX_AVATAR_LENGTH:
        raise ProtocolError("bad_avatar", f"avatar URL is longer than {MAX_AVATAR_LENGTH}")
    if has_control(avatar) or any(char.isspace() for char in avatar):
        raise ProtocolError("bad_avatar", "avatar URL contains spaces or control characters")
    try:
        parts = urlsplit(avatar)
        host = parts.hostname
    except ValueError:
        raise ProtocolError("bad_avatar", "avatar is not a URL") from None
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise ProtocolError("bad_avatar", "avatar must be an http or https URL")
    return avatar


def validate_text(value: object, limit: int) -> str:
    """Message text; raises ``empty_text``, ``text_too_long`` or ``bad_text``."""
    if not isinstance(value, str):
        raise ProtocolError("bad_frame", "text must be a string")
    if not value.strip():
        raise ProtocolError("empty_text", "text is empty")
    if len(value) > limit:
        raise ProtocolError("text_too_long", f"text is longer than {limit} characters")
    if has_control(value, allowed="\n\t"):
        raise ProtocolError("bad_text", "text contains control characters")
    return value
