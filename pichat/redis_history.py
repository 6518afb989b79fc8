"""The :class:`~.history.History` of daemons that share their rooms: Redis.

A room is a stream (``XADD`` with the explicit id ``<id>-0``), its id counter and
its epoch; bans, room rules and the moderation log are plain keys. Writes are
queued and sent in order, as one pipeline per event-loop turn (like the SQLite
store's group commit): a member's messages keep their order, and a burst costs
one round trip.

Unlike the SQLite store, this history does not tell its listener that a message
was committed: the id is Redis's, and every daemon, this one included, delivers
the message when the subscriber (:mod:`.redis_bus`) sees it published, in id
order. Only a failure is reported here (the sender gets ``unavailable``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

from .bans import Ban
from .history import Deletion, Entry, HistoryListener, Loaded, LogEntry
from .protocol import Message
from .redis_link import RedisLink
from .redis_scripts import (
    BANS,
    LOG,
    PUBLISH,
    RULES,
    RoomKeys,
    message_fields,
    message_from_fields,
    parse_json,
    stream_id,
)
from .retention import Cut, Retention
from .store import new_epoch

__all__ = ["MAX_LOG", "RedisHistory"]

logger = logging.getLogger(__name__)

#: Moderation log lines kept in Redis (newest first in the list).
MAX_LOG = 10_000

#: One queued write: adds its commands to the batch's pipeline.
Op = Callable[[Any], object]


def _messages(entries: list[tuple[str, dict[str, str]]]) -> list[Message]:
    return [message_from_fields(stream_id(entry_id), fields) for entry_id, fields in entries]


class RedisHistory:
    """History in Redis, shared by every daemon with the same ``redis_url``.

    Args:
        link: the daemon's Redis client and its state.
        retention: the current retention (it changes on reload).
    """

    def __init__(self, link: RedisLink, retention: Callable[[], Retention]) -> None:
        self.link = link
        self.retention = retention
        self._publish = link.client.register_script(PUBLISH)
        self._ops: list[tuple[Op, Entry | None]] = []
        self._wakeup = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._listener: HistoryListener | None = None
        self._closing = False

    @property
    def healthy(self) -> bool:
        """False while Redis is unavailable."""
        return self.link.up

    def start(self, listener: HistoryListener) -> None:
        """Start the writer; failures go to ``listener`` (deliveries come from the bus)."""
        self._listener = listener
        self._writer = asyncio.get_running_loop().create_task(
            self._write_loop(), name="pichat-redis-writer"
        )

    # Reading.

    async def load(self, room: str, limit: int) -> Loaded:
        """The room as Redis holds it, read in one transaction (a consistent snapshot).

        With Redis unavailable (a degraded start) the room is empty under a
        placeholder epoch: once Redis answers, the subscriber sees the real epoch
        differ and starts the room over.
        """
        keys = RoomKeys(room)
        try:
            # SET NX first: a room nobody used yet gets its epoch now, once.
            await self.link.client.set(keys.epoch, new_epoch(), nx=True)
            async with self.link.client.pipeline(transaction=True) as pipe:
                pipe.xrevrange(keys.stream, "+", "-", count=limit)
                pipe.get(keys.counter)
                pipe.get(keys.epoch)
                entries, counter, epoch = await pipe.execute()
        except (RedisError, OSError) as exc:
            self.link.failed(exc)
            return Loaded([], 0, "unavailable-" + new_epoch())
        messages = _messages(entries)
        messages.reverse()
        return Loaded(messages, int(counter or 0), str(epoch))

    async def messages_after(self, room: str, after: int, limit: int) -> list[Message]:
        """Up to ``limit`` retained messages with an id above ``after``, oldest first."""
        entries = await self.link.client.xrange(
            RoomKeys(room).stream, f"{after + 1}-0", "+", count=limit
        )
        return _messages(entries)

    async def trim(self, room: str, cut: Cut) -> int:
        """Apply the age part of a retention cut to the stream, from the front.

        The count part is the publish script's ``MINID``, computed from Redis's own
        counter: ``cut.first_id`` comes from this daemon's idea of the last id,
        which may run ahead of Redis's while its posts are in flight.
        """
        stream = RoomKeys(room).stream
        client = self.link.client
        removed = 0
        try:
            while True:
                first = await client.xrange(stream, "-", "+", count=100)
                old = [entry_id for entry_id, fields in first if int(fields["ms"]) < cut.oldest_ms]
                if not old:
                    return removed
                removed += int(await client.xdel(stream, *old))
        except (RedisError, OSError) as exc:
            self.link.failed(exc)
            return 0

    async def load_bans(self) -> list[Ban]:
        """The shared bans."""
        rows = parse_json(await self.link.client.get(BANS) or "[]")
        bans: list[Ban] = []
        for row in rows if isinstance(rows, list) else ():
            try:
                bans.append(Ban(**row))
            except TypeError:
                logger.warning("skipping a malformed ban in redis: %r", row)
        return bans

    async def load_rules(self) -> object:
        """The shared room rules as saved (``None`` if none)."""
        value = await self.link.client.get(RULES)
        return None if value is None else parse_json(value)

    async def load_log(self, since_ms: int, limit: int) -> list[LogEntry]:
        """The newest ``limit`` log lines from ``since_ms`` on, oldest first."""
        lines = await self.link.client.lrange(LOG, 0, MAX_LOG - 1)
        entries: list[LogEntry] = []
        for line in lines:
            value = parse_json(line)
            try:
                entry = LogEntry(**value) if isinstance(value, dict) else None
            except TypeError:
                entry = None
            if entry is not None and isinstance(entry.ms, int) and entry.ms >= since_ms:
                entries.append(entry)
                if len(entries) >= limit:
                    break
        entries.reverse()
        return entries

    # Writing (queued, in order).

    def _queue(self, op: Op, entry: Entry | None = None) -> None:
        self._ops.append((op, entry))
        self._wakeup.set()

    def append(self, entry: Entry) -> None:
        """Queue a message for the publish script; a failure is told to the listener."""
        keys = RoomKeys(entry.room)
        args = [
            new_epoch(),
            self.retention().max_messages,
            entry.cut.oldest_ms,
            *message_fields(entry.message),
            keys.channel,
        ]

        def publish(pipe: Any) -> None:
            # The pipeline loads the script first when Redis does not know it
            # (a restarted Redis): EVALSHA never meets NOSCRIPT mid-batch.
            pipe.scripts.add(self._publish)
            pipe.evalsha(self._publish.sha, 3, keys.counter, keys.stream, keys.epoch, *args)

        self._queue(publish, entry)

    def delete(self, deletion: Deletion) -> None:
        """Queue the removal of messages from the room's stream."""
        stream = RoomKeys(deletion.room).stream

        def delete(pipe: Any) -> None:
            if deletion.ids:
                pipe.xdel(stream, *[f"{i}-0" for i in deletion.ids])
            if deletion.through:
                pipe.xtrim(stream, minid=f"{deletion.through + 1}-0")

        self._queue(delete)

    def save_bans(self, bans: list[Ban]) -> None:
        """Queue replacing the shared bans."""
        value = json.dumps([dataclasses.asdict(ban) for ban in bans], ensure_ascii=False)
        self._queue(lambda pipe: pipe.set(BANS, value))

    def save_rules(self, rules: dict[str, Any]) -> None:
        """Queue replacing the shared room rules."""
        value = json.dumps(rules, ensure_ascii=False, sort_keys=True)
        self._queue(lambda pipe: pipe.set(RULES, value))

    def record(self, entry: LogEntry) -> None:
        """Queue a line of the moderation log (the newest :data:`MAX_LOG` are kept)."""
        value = json.dumps(dataclasses.asdict(entry), ensure_ascii=False)

        def record(pipe: Any) -> None:
            pipe.lpush(LOG, value)
            pipe.ltrim(LOG, 0, MAX_LOG - 1)

        self._queue(record)

    def publish(self, channel: str, payload: dict[str, Any]) -> None:
        """Queue a ``PUBLISH`` after the writes queued before it (moderation, presence)."""
        value = json.dumps(payload, ensure_ascii=False)
        self._queue(lambda pipe: pipe.publish(channel, value))

    async def _write_loop(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            ops, self._ops = self._ops, []
            if ops:
                await self._write(ops)
            if self._closing and not self._ops:
                return

    async def _write(self, ops: list[tuple[Op, Entry | None]]) -> None:
        try:
            async with self.link.client.pipeline(transaction=False) as pipe:
                for op, _ in ops:
                    op(pipe)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            # After a timeout a write may still have been applied (a stopped Redis
            # runs it when it resumes): then every daemon delivers it, in order.
            self.link.failed(exc)
            failed = [entry for _, entry in ops if entry is not None]
            if failed and self._listener is not None:
                self._listener.failed(failed)
            changes = len(ops) - len(failed)
            if changes:
                logger.error("redis: %d moderation or presence changes not stored", changes)

    async def close(self) -> None:
        """Send what is queued, then stop the writer."""
        if self._writer is not None:
            self._closing = True
            self._wakeup.set()
            await self._writer
            self._writer = None
