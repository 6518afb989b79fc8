"""The daemon's connection to Redis: one client, whether it works, said once.

Every part of the cluster (history writes, the subscriber, presence) shares one
:class:`RedisLink`. Whoever meets a failure calls :meth:`RedisLink.failed`, the
subscriber's successful round trip calls :meth:`RedisLink.ok`; so an outage is
logged once when it starts and once when it ends, never per message, and
``/healthz`` reads :attr:`RedisLink.up`.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

__all__ = ["COMMAND_TIMEOUT", "RedisLink"]

logger = logging.getLogger(__name__)

#: How long one command may take before Redis counts as unavailable (a stopped
#: or unreachable server answers nothing; the socket alone would wait forever).
COMMAND_TIMEOUT = 2.0


class RedisLink:
    """One Redis client and its state.

    Args:
        url: ``redis_url`` (validated by the settings).
    """

    def __init__(self, url: str) -> None:
        # No retries inside redis-py: a publish retried after a timeout could be
        # stored twice. The subscriber's loop reconnects with its own backoff.
        # Typed Any: with decode_responses every reply is str, which redis-py's
        # annotations (different in 6.1 and 8.x) cannot say.
        self.client: Any = aioredis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=COMMAND_TIMEOUT,
            socket_connect_timeout=COMMAND_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
        )
        #: This run of the daemon, as the other daemons see it (presence entries).
        self.daemon = secrets.token_hex(6)
        #: False from a failure until the next successful round trip.
        self.up = False
        self._failures = 0
        self._ever_up = False

    def ok(self) -> None:
        """A round trip worked: Redis is available (logged when that is news)."""
        if not self.up:
            if self._ever_up:
                logger.warning("redis available again after %d failed calls", self._failures)
            else:
                logger.info("redis connected (daemon id %s)", self.daemon)
            self.up = True
            self._ever_up = True
            self._failures = 0

    def failed(self, exc: BaseException) -> None:
        """A call failed: Redis counts as unavailable until :meth:`ok` (logged once)."""
        self._failures += 1
        if self.up or not self._ever_up and self._failures == 1:
            logger.error("redis unavailable: %s; retrying with backoff", exc or type(exc).__name__)
        self.up = False

    async def ping(self) -> bool:
        """One ``PING``; whether it answered."""
        try:
            await self.client.ping()
        except (RedisError, OSError) as exc:
            self.failed(exc)
            return False
        self.ok()
        return True

    async def close(self) -> None:
        """Close every connection of the client."""
        await self.client.aclose()
