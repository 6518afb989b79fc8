"""Fixtures shared by the Redis tests: a real redis-server, and daemons sharing it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import Running
from tests.redis_server import RedisServer

__all__ = ["cluster", "cluster_config", "messages", "redis"]


def cluster_config(redis: RedisServer, **config: Any) -> dict[str, Any]:
    """The settings of a daemon sharing ``redis`` (a short presence TTL, a high rate)."""
    return {"redis_url": redis.url, "redis_presence_ttl": 3.0, "rate_messages": 1000, **config}


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server with AOF on, on a Unix socket; killed after the test."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.close()


@pytest.fixture
def cluster(redis: RedisServer, daemon_factory: Any) -> Any:
    """Start in-process daemons that share ``redis`` (``await cluster(n)``)."""

    async def start(count: int, **config: Any) -> list[Running]:
        return [await daemon_factory(cluster_config(redis, **config)) for _ in range(count)]

    return start


async def messages(ws: Any, count: int) -> list[Any]:
    """The next ``count`` message frames (presence and the rest skipped)."""
    from tests.conftest import recv_type

    return [await recv_type(ws, "message") for _ in range(count)]
