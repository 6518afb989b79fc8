"""The ``pichat.v1`` wire protocol, sans I/O: parse client frames, validate, build frames.

Nothing here touches a socket, a clock or a file, so every rule of
docs/protocol.md is testable with plain function calls. The validation rules
are shared with the seed tutorial's dialect (:mod:`.legacy`).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import struct
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NewType, TypeGuard

__all__ = [
    "ERROR_CODES",
    "SUBPROTOCOL",
    "Frame",
    "HistoryRequest",
    "Join",
    "Limits",
    "Message",
    "ProtocolError",
    "Say",
    "error_frame",
    "format_date",
    "history_frame",
    "load_object",
    "online_frame",
    "parse_frame",
    "parse_object",
    "people_json",
    "presence_frame",
    "validate_avatar",
    "validate_name",
    "validate_text",
    "welcome_frame",
    "wire_frame",
]

from .errors import ERROR_CODES, ProtocolError
from .validation import validate_avatar, validate_name, validate_text

SUBPROTOCOL = "pichat.v1"
MAX_EPOCH_LENGTH = 64
#: Longer than any password a person types; bounds the scrypt input.
MAX_PASSWORD_LENGTH = 1024

#: A complete WebSocket frame, header included: the only thing a client's queue
#: takes, so that a bare JSON payload cannot be queued by mistake.
Frame = NewType("Frame", bytes)


def wire_frame(payload: bytes) -> Frame:
    """An unmasked, unfragmented WebSocket text frame (RFC 6455 §5.2).

    Server frames are never masked and pichat negotiates no extension, so the
    frame for a message is the same bytes for every client: build it once.
    """
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x81, length)
    elif length < 65536:
        header = struct.pack("!BBH", 0x81, 126, length)
    else:
        header = struct.pack("!BBQ", 0x81, 127, length)
    return Frame(header + payload)


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    """The limits a frame is validated against (from the settings)."""

    text: int = 2000
    name: int = 32
    rate_messages: int = 10
    rate_window: float = 10.0

    def as_dict(self) -> dict[str, float]:
        """The limits as clients see them (``welcome`` and ``/site.json``)."""
        return {
            "text": self.text,
            "name": self.name,
            "rate_messages": self.rate_messages,
            "rate_window": self.rate_window,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class Join:
    """``{"type": "join"}``: enter the room under a name, maybe resuming after an id."""

    name: str
    avatar: str
    since: int | None
    epoch: str | None = None
    #: A moderator's password: needed for a reserved name, ignored for others.
    password: str | None = dataclasses.field(default=None, repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class HistoryRequest:
    """``{"type": "history"}``: the next page of messages after an id (a long resume)."""

    after: int


@dataclasses.dataclass(frozen=True, slots=True)
class Say:
    """``{"type": "say"}``: post a message to the room."""

    text: str


@dataclasses.dataclass(slots=True, eq=False)
class Message:
    """A stored chat message.

    Its encodings are cached (``v1_json`` and, through :meth:`encoded`, each
    dialect's payload and wire frame) so that a broadcast to a thousand clients,
    or a thousand welcomes after a restart, encode the message once.
    """

    id: int
    ms: int
    name: str
    avatar: str
    text: str
    #: Sent by a moderator: the page shows a badge nobody else can get.
    moderator: bool = False
    #: From the room itself (``pichat ctl announce``): shown apart from chat.
    announcement: bool = False
    date: str = dataclasses.field(init=False)
    _cache: dict[str, bytes] = dataclasses.field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.date = format_date(self.ms)

    def as_v1(self) -> dict[str, Any]:
        """The message as a ``pichat.v1`` object."""
        frame: dict[str, Any] = {
            "type": "message",
            "id": self.id,
            "date": self.date,
            "name": self.name,
            "avatar": self.avatar,
            "text": self.text,
        }
        if self.moderator:
            frame["moderator"] = True
        if self.announcement:
            frame["announcement"] = True
        return frame

    def encoded(self, key: str, encode: Callable[[Message], bytes]) -> bytes:
        """``encode(self)``, computed once per ``key`` for the message's lifetime."""
        value = self._cache.get(key)
        if value is None:
            value = self._cache[key] = encode(self)
        return value

    def v1_json(self) -> bytes:
        """The ``pichat.v1`` payload, encoded once."""
        return self.encoded("v1", _v1_payload)

    def v1_frame(self) -> Frame:
        """The ``pichat.v1`` wire frame, built once."""
        return Frame(self.encoded("v1-frame", _v1_frame))


def _v1_payload(message: Message) -> bytes:
    return dumps(message.as_v1())


def _v1_frame(message: Message) -> bytes:
    return wire_frame(message.v1_json())


def format_date(epoch_ms: int) -> str:
    """ISO 8601 UTC with milliseconds and ``Z``, e.g. ``2026-11-26T07:17:06.123Z``."""
    global _last_second  # a one-entry cache, see below
    seconds, millis = divmod(epoch_ms, 1000)
    second, prefix = _last_second
    if seconds != second:
        # Every message is dated, and messages come in bursts within a second:
        # the date-time part is formatted once per second, not per message.
        moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
        prefix = moment.strftime("%Y-%m-%dT%H:%M:%S.")
        _last_second = (seconds, prefix)
    return f"{prefix}{millis:03d}Z"


_last_second: tuple[int, str] = (-1, "")


def _bounded_int(digits: str) -> int | float:
    # Python refuses to parse integers of 4,301+ digits (a ValueError that would
    # read as bad_json); no id has more than 19. A float fails every id check.
    return int(digits) if len(digits) <= 20 else math.inf


#: ``json.loads(data, parse_int=...)`` builds a decoder and its scanner on every
#: call; every frame a client sends goes through this one.
_DECODER = json.JSONDecoder(parse_int=_bounded_int)


def load_object(data: str) -> dict[str, Any]:
    """A frame's JSON object; raises ``bad_json`` or ``bad_frame``."""
    try:
        frame = _DECODER.decode(data)
    except ValueError:
        raise ProtocolError("bad_json", "frame is not valid JSON") from None
    except RecursionError:
        # json.loads recurses per nesting level; no pichat frame nests deeply.
        raise ProtocolError("bad_frame", "frame is nested too deeply") from None
    if not isinstance(frame, dict):
        raise ProtocolError("bad_frame", "frame must be a JSON object")
    return frame


def _is_id(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def parse_frame(data: str, limits: Limits) -> Join | Say | HistoryRequest:
    """Parse and validate one ``pichat.v1`` text frame.

    Raises:
        ProtocolError: with the code the client gets back.
    """
    return parse_object(load_object(data), limits)


def parse_object(frame: dict[str, Any], limits: Limits) -> Join | Say | HistoryRequest:
    """Validate one ``pichat.v1`` frame already decoded (moderation frames aside)."""
    kind = frame.get("type")
    if kind == "say":
        return Say(validate_text(frame.get("text"), limits.text))
    if kind == "join":
        since = frame.get("since")
        if since is not None and not _is_id(since):
            raise ProtocolError("bad_since", "since must be null or a message id")
        epoch = frame.get("epoch")
        if epoch is not None and (not isinstance(epoch, str) or len(epoch) > MAX_EPOCH_LENGTH):
            raise ProtocolError("bad_epoch", "epoch must be null or the epoch of a welcome")
        password = frame.get("password")
        if password is not None and (
            not isinstance(password, str) or not 0 < len(password) <= MAX_PASSWORD_LENGTH
        ):
            raise ProtocolError("bad_password", "password must be a non-empty string")
        return Join(
            name=validate_name(frame.get("name"), limits.name),
            avatar=validate_avatar(frame.get("avatar")),
            since=since,
            epoch=epoch,
            password=password,
        )
    if kind == "history":
        after = frame.get("after")
        if not _is_id(after):
            raise ProtocolError("bad_after", "after must be a message id")
        return HistoryRequest(after)
    if not isinstance(kind, str):
        raise ProtocolError("unknown_type", "frame has no type")
    raise ProtocolError("unknown_type", f"unknown frame type {kind[:40]!r}")


def dumps(value: object) -> bytes:
    """Compact JSON, UTF-8."""
    return _ENCODER.encode(value).encode()


# Compact separators: every byte is paid once per client per message. One
# encoder for every frame: ``json.dumps`` with options builds one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def person(name: str, avatar: str, moderator: bool = False) -> dict[str, Any]:
    """Someone as frames show them; ``moderator`` only when true."""
    entry: dict[str, Any] = {"name": name, "avatar": avatar}
    if moderator:
        entry["moderator"] = True
    return entry


def welcome_frame(
    *,
    name: str,
    avatar: str,
    room: str,
    title: str,
    limits: Limits,
    history: Sequence[Message],
    online: bytes,
    count: int,
    online_more: bool,
    resumed: bool,
    gap: bool,
    epoch: str,
    more: bool,
    moderator: bool = False,
    state: dict[str, Any] | None = None,
) -> bytes:
    """The answer to ``join``.

    The history is spliced in from each message's cached encoding, and the
    online list from the room's cached listing (:func:`people_json`): after a
    restart a thousand clients rejoin at once, and re-encoding the same hundred
    messages and the same hundred people for each of them would dominate the
    reconnect storm.
    """
    head = dumps(
        {
            "type": "welcome",
            "you": person(name, avatar, moderator),
            "room": room,
            "title": title,
            "limits": limits.as_dict(),
            "count": count,
            "online_more": online_more,
            "resumed": resumed,
            "gap": gap,
            "epoch": epoch,
            "more": more,
            **(state or {}),
        }
    )
    history_json = b",".join(m.v1_json() for m in history)
    return head[:-1] + b',"online":' + online + b',"history":[' + history_json + b"]}"


def people_json(people: Iterable[tuple[str, str, bool]]) -> bytes:
    """The JSON array of ``people`` as frames show them (see :func:`person`)."""
    return dumps([person(*entry) for entry in people])


def history_frame(after: int, messages: Sequence[Message], more: bool, gap: bool) -> bytes:
    """The answer to ``history``: the next page after ``after``."""
    head = dumps({"type": "history", "after": after, "more": more, "gap": gap})
    return head[:-1] + b',"messages":[' + b",".join(m.v1_json() for m in messages) + b"]}"


def presence_frame(
    joined: Iterable[tuple[str, str, bool]], left: Iterable[str], count: int
) -> bytes:
    """Who joined and whose name left since the last presence frame, and the count now.

    One frame carries every join and leave of a tick (see :mod:`.presence`);
    a client applies ``left`` first, then ``joined``.
    """
    return dumps(
        {
            "type": "presence",
            "joined": [person(*entry) for entry in joined],
            "left": list(left),
            "count": count,
        }
    )


def online_frame(after: int, people: Iterable[tuple[str, str, bool]], count: int) -> bytes:
    """One page of the online list: the people after the first ``after`` (join order)."""
    listed = [person(*entry) for entry in people]
    return dumps(
        {
            "type": "online",
            "after": after,
            "online": listed,
            "count": count,
            "more": after + len(listed) < count,
        }
    )


def error_frame(error: ProtocolError) -> bytes:
    """The ``error`` frame for a rule a client broke."""
    frame: dict[str, Any] = {"type": "error", "code": error.code, "detail": error.detail}
    if error.retry_after is not None:
        # Round up so that a client waiting exactly this long is let through.
        frame["retry_after"] = math.ceil(error.retry_after * 1000) / 1000
    return dumps(frame)
