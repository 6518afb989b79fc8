"""Static files, /healthz and /site.json over real HTTP on the chat's port."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.harness import Running as Daemon
from tests.http import raw_get

TRAVERSALS = [
    "/../pichat.toml",
    "/../../../../etc/passwd",
    "/%2e%2e/pichat.toml",
    "/%2e%2e%2fpichat.toml",
    "/..%2fpichat.toml",
    "/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
    "/%252e%252e/pichat.toml",
    "/..\\pichat.toml",
    "/..%5cpichat.toml",
    "/%5c..%5cpichat.toml",
    "/index.html%00.txt",
    "/%00",
    "//etc/passwd",
    "/./../pichat.toml",
    "/js/../../pichat.toml",
    "/.hidden",
    "/%2ehidden",
    "/sub/.secret",
    "/escape-link",
    "/escape-dir/passwd",
    "/%ff%fe",
    "/nothing-here.html",
    "/sub/",  # a directory without index.html: no listing
]


@pytest.fixture
def site_root(tmp_path: Path) -> Path:
    """A document root with files, a dotfile, and symlinks that point outside it."""
    root = tmp_path / "root"
    (root / "js").mkdir(parents=True)
    (root / "sub").mkdir()
    (root / "index.html").write_text("<!doctype html><title>t</title><h1>index</h1>")
    (root / "js" / "app.js").write_text("console.log('app');\n" * 50)
    (root / "style.css").write_text("body { color: black; }\n")
    (root / "logo.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (root / "blob.weird").write_bytes(b"\x00\x01")
    (root / ".hidden").write_text("secret")
    (root / "sub" / ".secret").write_text("secret")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_text("root:x:0:0")
    os.symlink(outside / "passwd", root / "escape-link")
    os.symlink(outside, root / "escape-dir")
    os.symlink(root / "style.css", root / "inside-link.css")
    big = ("body { margin: 0; }\n" * 400).encode()
    (root / "big.css").write_bytes(big)
    gz = root / "big.css.gz"
    gz.write_bytes(gzip.compress(big))
    return root


@pytest.fixture
async def web(daemon_factory: Any, site_root: Path) -> Daemon:
    """A daemon serving the test document root."""
    result: Daemon = await daemon_factory({"document_root": str(site_root)})
    return result


async def test_root_serves_index_with_security_headers(web: Daemon) -> None:
    """/ is index.html, with CSP, nosniff, Referrer-Policy, ETag and Cache-Control."""
    status, headers, body = await raw_get(web, "/")
    assert status == 200
    assert b"<h1>index</h1>" in body
    assert headers["content-type"] == "text/html; charset=utf-8"
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert f"ws://127.0.0.1:{web.port}" in csp
    assert "img-src 'self' data: http: https:" in csp
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["cache-control"] == "no-cache"
    assert headers["etag"].startswith('"')
    assert int(headers["content-length"]) == len(body)


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/js/app.js", "text/javascript; charset=utf-8"),
        ("/style.css", "text/css; charset=utf-8"),
        ("/logo.svg", "image/svg+xml"),
        ("/blob.weird", "application/octet-stream"),
        ("/inside-link.css", "text/css; charset=utf-8"),
        ("/index.html?v=2", "text/html; charset=utf-8"),
    ],
)
async def test_content_type_by_extension(web: Daemon, path: str, content_type: str) -> None:
    """Each file is served with the Content-Type of its extension."""
    status, headers, _ = await raw_get(web, path)
    assert status == 200
    assert headers["content-type"] == content_type


async def test_etag_revalidation_gives_304(web: Daemon, site_root: Path) -> None:
    """If-None-Match with the current ETag gets 304; a changed file gets a new ETag."""
    _, headers, _ = await raw_get(web, "/style.css")
    etag = headers["etag"]
    status, _, body = await raw_get(web, "/style.css", headers={"If-None-Match": etag})
    assert status == 304 and body == b""
    (site_root / "style.css").write_text("body { color: red; }\n")
    status, headers, body = await raw_get(web, "/style.css", headers={"If-None-Match": etag})
    assert status == 200 and b"red" in body and headers["etag"] != etag


async def test_precompressed_sibling_for_gzip_clients(web: Daemon, site_root: Path) -> None:
    """A client accepting gzip gets the .gz sibling; others get the plain file."""
    status, headers, body = await raw_get(
        web, "/big.css", headers={"Accept-Encoding": "gzip, deflate"}
    )
    assert status == 200
    assert headers["content-encoding"] == "gzip"
    assert headers["content-type"] == "text/css; charset=utf-8"
    assert gzip.decompress(body) == (site_root / "big.css").read_bytes()
    status, headers, body = await raw_get(web, "/big.css")
    assert "content-encoding" not in headers
    assert body == (site_root / "big.css").read_bytes()


@pytest.mark.parametrize("path", TRAVERSALS)
async def test_nothing_outside_the_root_or_hidden_is_served(web: Daemon, path: str) -> None:
    """Traversal, encoded or not, symlinks out, dotfiles and directories all get a small 404."""
    status, headers, body = await raw_get(web, path)
    assert status in (400, 404), (path, status)
    assert b"root:x" not in body and b"secret" not in body and b"port" not in body
    if status == 404:
        assert headers["content-type"] == "text/html; charset=utf-8"
        assert len(body) < 1024


async def test_healthz_reports_status_and_counts(web: Daemon) -> None:
    """/healthz answers 200 JSON with status, version, uptime, connections and rooms."""
    status, headers, body = await raw_get(web, "/healthz")
    assert status == 200 and headers["content-type"] == "application/json"
    health = json.loads(body)
    assert health["status"] == "ok"
    assert health["version"] == "0.1.0"
    assert health["uptime"] >= 0
    assert health["connections"] == 0
    assert health["rooms"] == 1


async def test_site_json_describes_the_site(web: Daemon) -> None:
    """/site.json gives the title, room and limits of the site the Host picks."""
    status, _, body = await raw_get(web, "/site.json")
    assert status == 200
    site = json.loads(body)
    assert site["title"] == "pichat" and site["room"] == "lobby"
    assert site["limits"]["text"] == 2000 and site["limits"]["name"] == 32
