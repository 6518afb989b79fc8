"""HTTP over a raw socket, exactly as written: the one HTTP helper of the test suite.

No client library normalises the path, adds headers or refuses odd methods, so
the tests see what pichat answers to what a scanner or a proxy really sends.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.daemon import TIMEOUT

__all__ = ["http_get", "raw_get", "raw_request"]


async def raw_request(
    port: int, data: bytes, timeout: float = TIMEOUT, source: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` as is (from the loopback address ``source``, if given).

    Returns status, headers (lower-case names) and body.

    Raises:
        ConnectionError: when the server closed without answering.
    """
    local = (source, 0) if source else None
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=local)
    try:
        writer.write(data)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    if not answer:
        raise ConnectionError("closed without an answer")
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    parsed = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), parsed, body


async def raw_get(
    server: Any,
    path: str,
    host: str | None = None,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    source: str | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """A request line and headers exactly as written, to ``server.port``."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host or f'127.0.0.1:{server.port}'}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    return await raw_request(server.port, request, source=source)


async def http_get(
    server: Any, path: str, host: str | None = None, headers: dict[str, str] | None = None
) -> str:
    """The body of a 200 answer to a raw GET."""
    status, _, body = await raw_get(server, path, host, headers)
    assert status == 200, (path, status)
    return body.decode()
