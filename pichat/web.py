"""The HTTP side of the port: static files, ``/healthz``, ``/site.json``, errors.

websockets parses the request head and hands every request to
``process_request``; whatever is not a WebSocket upgrade is answered here. Two
things websockets does not do for a public server are done before its parser
sees the bytes (:class:`RequestHead`): the head is bounded (a few KiB, not a
megabyte per unfinished request), and the method is recorded so that HEAD gets
headers only and other methods a 405 instead of being served as GET.
"""

from __future__ import annotations

import hashlib
import http
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from . import __version__
from .sites import Site
from .static import FileCache, resolve, security_headers
from .webapp import MANIFEST_PATH, WORKER_PATH, manifest_body, worker_body

if TYPE_CHECKING:
    from .metrics import Metrics

__all__ = ["HEAD_LIMIT", "RequestHead", "Web", "plain"]

logger = logging.getLogger(__name__)

#: The largest request head accepted (request line and headers); browsers send ~1 KiB.
HEAD_LIMIT = 16 * 1024
ALLOWED_METHODS = ("GET", "HEAD")

NOT_FOUND = (
    b"<!doctype html><html lang=en><meta charset=utf-8><title>Not found</title>"
    b"<h1>Not found</h1><p>There is nothing at this address.</p></html>\n"
)
TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 24\r\nConnection: close\r\n\r\nRequest head too large.\n"
)


class RequestHead:
    """Watches the bytes of one request head before websockets parses them.

    :meth:`feed` returns the bytes to hand on. The request line is rewritten to
    what websockets accepts: any method becomes ``GET`` (the real one is kept in
    :attr:`method`), and an absolute-form target (``GET http://host/path``,
    RFC 9112 §3.2.2) becomes its origin form. Past :data:`HEAD_LIMIT` bytes
    without the end of the head, :attr:`refusal` holds a 431 response to send.
    """

    __slots__ = ("_line", "_line_done", "_tail", "seen", "done", "method", "refusal")

    def __init__(self) -> None:
        self._line = b""  # the request line, until it is complete
        self._line_done = False
        self._tail = b""  # the last bytes seen, to find a terminator split across reads
        self.seen = 0
        self.done = False
        self.method = "GET"
        self.refusal: bytes | None = None

    def feed(self, data: bytes) -> bytes:
        """Account for ``data``; returns what to pass to the HTTP parser now."""
        if not self._line_done:
            self._line += data
            end = self._line.find(b"\r\n")
            if end == -1:
                if len(self._line) > HEAD_LIMIT:
                    self.refusal = TOO_LARGE
                return b""
            line, self._line = self._line, b""
            self._line_done = True
            data = self._rewrite(line[:end]) + line[end:]
        # ``seen`` counts the bytes handed on so far, i.e. where ``data`` starts.
        window = self._tail + data
        end = window.find(b"\r\n\r\n")
        head_end = self.seen - len(self._tail) + end + 4
        self.seen += len(data)
        if end != -1:
            self.done = True
            if head_end > HEAD_LIMIT:
                self.refusal = TOO_LARGE
                return b""
        elif self.seen > HEAD_LIMIT:
            self.refusal = TOO_LARGE
            return b""
        self._tail = window[-3:]
        return data

    def _rewrite(self, line: bytes) -> bytes:
        parts = line.split(b" ")
        if len(parts) != 3:
            return line  # websockets refuses it: no answer to a non-HTTP client
        method, target, version = parts
        self.method = method.decode("ascii", "replace")
        if target[:7].lower() == b"http://" or target[:8].lower() == b"https://":
            path_start = target.find(b"/", target.find(b"//") + 2)
            target = target[path_start:] if path_start != -1 else b"/"
        return b" ".join((b"GET", target, version))


def _response(
    status: http.HTTPStatus,
    body: bytes,
    content_type: str,
    cache_control: str,
    host: str | None,
    extra: tuple[tuple[str, str], ...] = (),
) -> Response:
    """Every HTTP answer: its own headers plus the security headers."""
    headers = Headers()
    for name, value in security_headers(host):
        headers[name] = value
    headers["Content-Type"] = content_type
    headers["Cache-Control"] = cache_control
    for name, value in extra:
        headers[name] = value
    if status is not http.HTTPStatus.NOT_MODIFIED:
        headers["Content-Length"] = str(len(body))
    return Response(status.value, status.phrase, headers, body)


def plain(status: http.HTTPStatus, text: str, extra: tuple[tuple[str, str], ...] = ()) -> Response:
    """A short text answer (errors, refusals)."""
    return _response(status, text.encode(), "text/plain; charset=utf-8", "no-store", None, extra)


class Web:
    """Answers the plain HTTP requests of every site.

    Args:
        health: what ``/healthz`` reports for the site a request picked.
        limits: what ``/site.json`` reports as the chat's limits.
        metrics: what ``/metrics`` reports, and to whom.
        ban_notice: the ban on a client address, as ``/site.json`` reports it, or
            ``None``: a page cannot read the 403 of a refused WebSocket handshake.
    """

    def __init__(
        self,
        health: Callable[[Site], dict[str, object]],
        limits: Callable[[], dict[str, Any]],
        metrics: Metrics,
        ban_notice: Callable[[str], dict[str, object] | None] = lambda address: None,
    ) -> None:
        self.health = health
        self.limits = limits
        self.metrics = metrics
        self.ban_notice = ban_notice
        self.files = FileCache()
        #: ``Strict-Transport-Security`` for every answer (set when serving TLS).
        self.hsts: str | None = None

    def respond(self, request: Request, site: Site, method: str, address: str = "") -> Response:
        """The answer to a request that is not a WebSocket upgrade.

        Args:
            request: the parsed request (its method rewritten to GET).
            site: the site its Host picked.
            method: the real method.
            address: the client's address (through trusted proxies).
        """
        if method not in ALLOWED_METHODS:
            return plain(
                http.HTTPStatus.METHOD_NOT_ALLOWED,
                "Method not allowed\n",
                (("Allow", ", ".join(ALLOWED_METHODS)),),
            )
        response = self._get(request, site, address)
        if self.hsts is not None:
            response.headers["Strict-Transport-Security"] = self.hsts
        if method == "HEAD":
            # Same headers, Content-Length included, and no body (RFC 9110 §9.3.2).
            response = Response(response.status_code, response.reason_phrase, response.headers, b"")
        return response

    def _json(
        self, value: object, host: str | None, status: http.HTTPStatus = http.HTTPStatus.OK
    ) -> Response:
        body = json.dumps(value).encode()
        return _response(status, body, "application/json", "no-cache", host)

    def _get(self, request: Request, site: Site, address: str) -> Response:
        host = request.headers.get("Host")
        path = request.path.split("?", 1)[0]
        if path == "/metrics":
            if not self.metrics.allows(address):
                return plain(http.HTTPStatus.FORBIDDEN, "Forbidden: see metrics_allowed\n")
            return _response(
                http.HTTPStatus.OK,
                self.metrics.render(),
                self.metrics.content_type,
                "no-store",
                host,
            )
        if path == "/healthz":
            report = self.health(site)
            # A monitor that reads only the status code still sees a full disk.
            ok = report.get("status") == "ok"
            return self._json(
                report, host, http.HTTPStatus.OK if ok else http.HTTPStatus.SERVICE_UNAVAILABLE
            )
        if path == "/site.json":
            about: dict[str, object] = {
                "title": site.title,
                "room": site.room,
                "version": __version__,
                "limits": self.limits(),
            }
            ban = self.ban_notice(address)
            if ban is not None:
                about["banned"] = ban
            return self._json(about, host)
        target = resolve(site.document_root, path)
        if target is None:
            return _response(
                http.HTTPStatus.NOT_FOUND, NOT_FOUND, "text/html; charset=utf-8", "no-cache", host
            )
        if path in (MANIFEST_PATH, WORKER_PATH):
            return self._app_file(request, site, path, target)
        accept = request.headers.get("Accept-Encoding", "")
        try:
            file = self.files.load(target, "gzip" in accept.lower())
        except OSError as exc:
            logger.warning("cannot read %s: %s", target, exc)
            return plain(http.HTTPStatus.INTERNAL_SERVER_ERROR, "Cannot read the file\n")
        extra: tuple[tuple[str, str], ...] = (("ETag", file.etag), ("Vary", "Accept-Encoding"))
        if file.gzip:
            extra += (("Content-Encoding", "gzip"),)
        tags = request.headers.get("If-None-Match", "")
        fresh = file.etag in {tag.strip() for tag in tags.split(",")} or tags.strip() == "*"
        status = http.HTTPStatus.NOT_MODIFIED if fresh else http.HTTPStatus.OK
        return _response(
            status, b"" if fresh else file.body, file.content_type, file.cache_control, host, extra
        )

    def _app_file(self, request: Request, site: Site, path: str, target: Path) -> Response:
        """The manifest with the site's title, or the service worker with its version.

        Made per request (a few hundred bytes, and the version follows the files
        on disk), validated by an ETag of what was made.
        """
        host = request.headers.get("Host")
        try:
            file = self.files.load(target, False)
            if path == MANIFEST_PATH:
                body = manifest_body(file.body, site.title)
            else:
                body = worker_body(file.body, site.document_root)
        except (OSError, ValueError) as exc:
            logger.warning("cannot serve %s: %s", target, exc)
            return plain(http.HTTPStatus.INTERNAL_SERVER_ERROR, "Cannot read the file\n")
        etag = f'"{hashlib.sha256(body).hexdigest()[:20]}"'
        tags = request.headers.get("If-None-Match", "")
        fresh = etag in {tag.strip() for tag in tags.split(",")}
        status = http.HTTPStatus.NOT_MODIFIED if fresh else http.HTTPStatus.OK
        return _response(
            status, b"" if fresh else body, file.content_type, "no-cache", host, (("ETag", etag),)
        )
