"""The Redis key layout and the Lua scripts the daemons share it through, sans I/O.

Every write that must be atomic across daemons is one Lua script, because Redis
runs a script without interleaving any other command:

- :data:`PUBLISH`: create the room's epoch if it is missing, take the next id
  (``INCR``), store the message in the room's stream under the explicit id
  ``<id>-0`` (trimming by count with ``MINID``, by age from the front), and
  ``PUBLISH`` it with its id and epoch. A message is therefore published only
  once it is stored, and ids are strictly increasing per room across daemons.
- :data:`CLAIM`: take the first free name of a list of candidates (``HSETNX``),
  so that two daemons joining the same name at once give it to one of them.
- :data:`RELEASE`: remove a presence entry only if it is still the one we wrote.
- :data:`REAP`: remove every presence entry of a daemon whose heartbeat expired,
  returning them, so exactly one surviving daemon announces each leave.

Keys (``{room}`` is the room's name): ``pichat:room:{room}:id`` (the counter),
``…:stream``, ``…:epoch``, ``…:online`` (a hash: name key -> JSON of daemon, name,
avatar, moderator), the channel ``…:messages``; and the shared ``pichat:bans``,
``pichat:rules``, ``pichat:log``, ``pichat:daemons`` (a set) with one heartbeat key
``pichat:daemon:<id>`` each, and the channel ``pichat:control``.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from .protocol import Message

__all__ = [
    "BANS",
    "CLAIM",
    "CONTROL",
    "DAEMONS",
    "LOG",
    "PUBLISH",
    "REAP",
    "RELEASE",
    "RULES",
    "RoomKeys",
    "daemon_key",
    "message_fields",
    "message_from_fields",
    "message_from_payload",
]

PREFIX = "pichat:"
BANS = PREFIX + "bans"
RULES = PREFIX + "rules"
LOG = PREFIX + "log"
DAEMONS = PREFIX + "daemons"
CONTROL = PREFIX + "control"


def daemon_key(daemon: str) -> str:
    """The heartbeat key of one daemon (it expires when the daemon stops beating)."""
    return f"{PREFIX}daemon:{daemon}"


@dataclasses.dataclass(frozen=True, slots=True)
class RoomKeys:
    """The keys and the channel of one room."""

    room: str

    @property
    def counter(self) -> str:
        """The last id given (``INCR``)."""
        return f"{PREFIX}room:{self.room}:id"

    @property
    def stream(self) -> str:
        """The retained messages, stream id ``<message id>-0``."""
        return f"{PREFIX}room:{self.room}:stream"

    @property
    def epoch(self) -> str:
        """The identity of this history; gone after a flush, so a new one is made."""
        return f"{PREFIX}room:{self.room}:epoch"

    @property
    def online(self) -> str:
        """Who is online on any daemon: name key -> JSON of the entry."""
        return f"{PREFIX}room:{self.room}:online"

    @property
    def channel(self) -> str:
        """Where stored messages are published."""
        return f"{PREFIX}room:{self.room}:messages"


#: KEYS: counter, stream, epoch. ARGV: a fresh epoch (used only if none exists),
#: max messages, oldest ms kept, ms, name, avatar, text, moderator, announcement,
#: channel. Returns {id, epoch}.
PUBLISH = """
local epoch = redis.call('GET', KEYS[3])
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[3], epoch)
end
local id = redis.call('INCR', KEYS[1])
local minid = id - tonumber(ARGV[2]) + 1
if minid < 1 then minid = 1 end
redis.call('XADD', KEYS[2], 'MINID', minid, id .. '-0',
  'ms', ARGV[4], 'name', ARGV[5], 'avatar', ARGV[6], 'text', ARGV[7],
  'mod', ARGV[8], 'ann', ARGV[9])
-- Age retention from the front, a bounded amount per publish.
local oldest = tonumber(ARGV[3])
for _ = 1, 50 do
  local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]
  if not first or tonumber(first[2][2]) >= oldest then break end
  redis.call('XDEL', KEYS[2], first[1])
end
redis.call('PUBLISH', ARGV[10], cjson.encode({
  id = id, epoch = epoch, ms = ARGV[4], name = ARGV[5], avatar = ARGV[6],
  text = ARGV[7], mod = ARGV[8], ann = ARGV[9]}))
return {id, epoch}
"""

#: KEYS: the online hash. ARGV: pairs of (name key, entry JSON), in order of
#: preference. Returns the 1-based index of the pair taken, 0 if none was free.
CLAIM = """
for i = 1, #ARGV, 2 do
  if redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) == 1 then
    return (i + 1) / 2
  end
end
return 0
"""

#: KEYS: the online hash. ARGV: name key, the entry JSON we wrote.
RELEASE = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""

#: KEYS: the daemons set, then every room's online hash. ARGV: the dead daemon.
#: Returns a flat list of (hash index, entry JSON) it removed.
REAP = """
local removed = {}
for k = 2, #KEYS do
  local entries = redis.call('HGETALL', KEYS[k])
  for i = 1, #entries, 2 do
    local ok, entry = pcall(cjson.decode, entries[i + 1])
    if ok and type(entry) == 'table' and entry.d == ARGV[1] then
      redis.call('HDEL', KEYS[k], entries[i])
      table.insert(removed, k - 1)
      table.insert(removed, entries[i + 1])
    end
  end
end
redis.call('SREM', KEYS[1], ARGV[1])
return removed
"""


def message_fields(message: Message) -> list[str]:
    """ARGV 4-9 of :data:`PUBLISH`: the message's fields as strings."""
    return [
        str(message.ms),
        message.name,
        message.avatar,
        message.text,
        "1" if message.moderator else "0",
        "1" if message.announcement else "0",
    ]


def _flag(value: object) -> bool:
    return value == "1"


def message_from_fields(message_id: int, fields: dict[str, str]) -> Message:
    """A message from its stream entry."""
    return Message(
        message_id,
        int(fields["ms"]),
        fields["name"],
        fields["avatar"],
        fields["text"],
        moderator=_flag(fields.get("mod")),
        announcement=_flag(fields.get("ann")),
    )


def message_from_payload(payload: dict[str, Any]) -> Message:
    """A message from its published JSON (the same fields, plus id and epoch)."""
    return message_from_fields(int(payload["id"]), payload)


def stream_id(entry_id: str) -> int:
    """The message id of a stream id ``<id>-0``."""
    return int(entry_id.split("-", 1)[0])


def parse_json(data: str) -> Any:
    """JSON from Redis, ``None`` for anything that is not (a hand-edited key)."""
    try:
        return json.loads(data)
    except ValueError:
        return None
