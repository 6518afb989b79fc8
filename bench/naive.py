"""The naive broadcaster `make bench` measures pichat against.

About thirty lines of python-websockets with its defaults (keepalive pings every 20 s,
no per-client queue limit) except ``compression=None``, as pichat negotiates no
compression either. It speaks just enough of ``pichat.v1`` for the load generator to
drive both servers identically: ``join`` gets a welcome-shaped frame with the last 100
messages, ``say`` becomes a ``message`` with an id and a date, sent to every connection.

It broadcasts with :func:`websockets.asyncio.server.broadcast`, the way the library's
documentation says to broadcast: one synchronous write per client per message, no
awaits, no per-send lock. A loop of ``await connection.send(...)`` would be slower and
so an unfairly easy baseline. What it does not do is pichat's real work: no validation,
no storage, no presence, no rate limits, and it encodes the frame once per client.

Run it alone with ``python -m bench.naive PORT``.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import sys

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.typing import Subprotocol

CLIENTS: set[ServerConnection] = set()
MESSAGES: list[dict[str, object]] = []


async def handler(connection: ServerConnection) -> None:
    """Welcome a ``join``; store and broadcast each ``say`` to every connection."""
    name = ""
    CLIENTS.add(connection)
    try:
        async for frame in connection:
            data = json.loads(frame)
            if data["type"] == "join":
                name = data["name"]
                you = {"name": name, "avatar": ""}
                welcome = {"type": "welcome", "you": you, "history": MESSAGES[-100:]}
                await connection.send(json.dumps(welcome))
            elif data["type"] == "say":
                now = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")
                message = {"type": "message", "id": len(MESSAGES) + 1, "date": now}
                message.update(name=name, avatar="", text=data["text"])
                MESSAGES.append(message)
                broadcast(CLIENTS, json.dumps(message))
    finally:
        CLIENTS.discard(connection)


async def main(port: int) -> None:
    """Serve on loopback until killed."""
    async with serve(
        handler, "127.0.0.1", port, subprotocols=[Subprotocol("pichat.v1")], compression=None
    ) as server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
