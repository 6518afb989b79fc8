"""Every error code a client can get, and the exception that carries one.

Kept apart from :mod:`.protocol` (frames) and :mod:`.validation` (field rules),
which both raise it; ``protocol.ERROR_CODES`` is this table.
"""

from __future__ import annotations

__all__ = ["ERROR_CODES", "ProtocolError"]

#: Every error code the server sends, with what it means (docs/protocol.md).
ERROR_CODES: dict[str, str] = {
    "bad_json": "the frame is not valid JSON",
    "bad_frame": "not a JSON object, or a field has the wrong type",
    "binary_frame": "binary frames are not spoken",
    "unknown_type": "type missing or unknown",
    "not_joined": "say or history before join",
    "already_joined": "a second join on the same connection",
    "bad_name": "name empty or with control characters",
    "name_too_long": "name too long",
    "bad_avatar": "avatar not empty and not an http(s) URL",
    "bad_since": "since not null and not a non-negative integer",
    "bad_epoch": "epoch not null and not a short string",
    "bad_after": "after not a non-negative integer",
    "empty_text": "text empty or only white space",
    "text_too_long": "text too long",
    "bad_text": "text with control characters",
    "rate_limited": "too many messages",
    "unavailable": "the message could not be stored",
    # Moderation (docs/protocol.md, "Moderation").
    "name_reserved": "the name is a moderator's; join with its password",
    "bad_password": "wrong or malformed moderator password",
    "name_banned": "the name is banned",
    "forbidden": "a moderator frame from someone who is not a moderator",
    "muted": "a moderator muted you",
    "room_locked": "only moderators may post in a locked room",
    "bad_id": "id not a message id",
    "no_message": "no retained message has that id",
    "no_member": "nobody of that name is online in the room",
    "bad_target": "moderators cannot be kicked, banned or muted",
    "bad_minutes": "minutes not a whole number within range",
    "bad_seconds": "seconds not a whole number within range",
    "bad_reason": "reason not a string, too long, or with control characters",
    "bad_address": "not an IP address",
    "no_ban": "no ban matches",
}


class ProtocolError(Exception):
    """A client frame broke a rule; becomes an ``error`` frame, never a disconnect."""

    def __init__(self, code: str, detail: str, retry_after: float | None = None) -> None:
        assert code in ERROR_CODES, code
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.retry_after = retry_after
