"""The page as an app: the manifest per site, the versioned worker, what the worker caches."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from pichat import __version__
from pichat.webapp import (
    VERSION_MARK,
    manifest_body,
    short_name,
    tree_digest,
    worker_body,
)
from tests.daemon import PUBLIC
from tests.harness import Running as Daemon
from tests.http import raw_get

# pure


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("pichat", "pichat"),
        ("Kitchen chat", "Kitchen chat"),
        ("Hallway Pi chat", "Hallway"),
        ("Supercalifragilistic room", "Supercalifr…"),
    ],
)
def test_short_name_fits_a_launcher(title: str, expected: str) -> None:
    """The home-screen label is the title when short, else its first word, else cut."""
    assert short_name(title) == expected
    assert len(short_name(title)) <= 12


def test_manifest_takes_the_title_and_keeps_the_rest() -> None:
    """name and short_name come from the site; icons and colours stay the template's."""
    template = (PUBLIC / "manifest.webmanifest").read_bytes()
    made = json.loads(manifest_body(template, "Küche & Flur"))
    original = json.loads(template)
    assert made["name"] == "Küche & Flur" and made["short_name"] == "Küche & Flur"
    assert made["icons"] == original["icons"] and made["theme_color"] == original["theme_color"]
    with pytest.raises(ValueError):
        manifest_body(b"[1, 2]", "x")


def test_worker_version_follows_the_package_and_the_files(tmp_path: Path) -> None:
    """The version is the package's plus a digest that any edit of a served file changes."""
    root = tmp_path / "root"
    shutil.copytree(PUBLIC, root)
    script = (root / "sw.js").read_bytes()
    assert script.count(VERSION_MARK) == 1
    first = worker_body(script, root, now=1000.0)
    assert VERSION_MARK not in first
    assert f'"{__version__}-{tree_digest(root)}"'.encode() in first
    assert worker_body(script, root, now=2000.0) == first, "stable while nothing changes"
    (root / ".hidden").write_text("never served")
    assert worker_body(script, root, now=3000.0) == first
    (root / "style.css").write_text((root / "style.css").read_text() + "/* edited */\n")
    assert worker_body(script, root, now=4000.0) != first


def test_a_document_root_is_not_walked_again_at_once(tmp_path: Path) -> None:
    """sw.js asked for again right away reuses the digest: no walk of the whole root each time."""
    root = tmp_path / "root"
    shutil.copytree(PUBLIC, root)
    script = (root / "sw.js").read_bytes()
    first = worker_body(script, root, now=5000.0)
    (root / "style.css").write_text("/* edited */\n")
    assert worker_body(script, root, now=5000.0) == first
    assert worker_body(script, root, now=6000.0) != first


def test_the_worker_caches_every_file_of_the_page() -> None:
    """Every file in public/ is in the worker's lists, and every listed file exists."""
    script = (PUBLIC / "sw.js").read_text()
    lists = {}
    for name in ("PAGE_FILES", "LIVE_FILES"):
        match = re.search(name + r" = \[(.*?)\];", script, re.S)
        assert match, name
        lists[name] = set(re.findall(r'"([^"]+)"', match.group(1)))
    listed = lists["PAGE_FILES"] | lists["LIVE_FILES"]
    on_disk = {
        str(path.relative_to(PUBLIC))
        for path in PUBLIC.rglob("*")
        if path.is_file() and not path.name.endswith(".gz")
    }
    # index.html is cached as "./" (what a visit asks for); the worker never caches itself.
    assert on_disk - {"index.html", "sw.js"} == listed - {"./", "site.json"}
    assert lists["LIVE_FILES"] == {"site.json", "manifest.webmanifest"}


# over HTTP


@pytest.fixture
async def sites(daemon_factory: Any) -> Daemon:
    """A daemon with the repository's page, a default site and a virtual host."""
    result: Daemon = await daemon_factory(
        {
            "title": "Hallway Pi chat",
            "sites": [{"server_names": ["kitchen.example"], "title": "Kitchen", "room": "k"}],
        }
    )
    return result


async def test_each_site_gets_its_own_manifest(sites: Daemon) -> None:
    """The manifest carries the title of the site the Host picked, as a web app manifest."""
    status, headers, body = await raw_get(sites, "/manifest.webmanifest")
    assert status == 200
    assert headers["content-type"] == "application/manifest+json"
    assert headers["cache-control"] == "no-cache"
    assert "content-security-policy" in headers
    manifest = json.loads(body)
    assert (manifest["name"], manifest["short_name"]) == ("Hallway Pi chat", "Hallway")
    _, _, body = await raw_get(sites, "/manifest.webmanifest", host="kitchen.example")
    assert json.loads(body)["name"] == "Kitchen"
    etag = headers["etag"]
    status, _, body = await raw_get(sites, "/manifest.webmanifest", headers={"If-None-Match": etag})
    assert status == 304 and body == b""
    status, head_headers, body = await raw_get(sites, "/manifest.webmanifest", method="HEAD")
    assert status == 200 and body == b"" and head_headers["etag"] == etag


async def test_the_worker_is_served_with_its_version_and_revalidated(sites: Daemon) -> None:
    """sw.js: JavaScript, no-cache (an upgrade is seen on the next visit), the version in it."""
    status, headers, body = await raw_get(sites, "/sw.js", headers={"Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["content-type"] == "text/javascript; charset=utf-8"
    assert headers["cache-control"] == "no-cache"
    assert "content-encoding" not in headers
    assert VERSION_MARK not in body
    assert f'const VERSION = "{__version__}-'.encode() in body
    status, _, _ = await raw_get(sites, "/sw.js", headers={"If-None-Match": headers["etag"]})
    assert status == 304


async def test_a_broken_manifest_is_an_error_not_a_crash(
    daemon_factory: Any, tmp_path: Path
) -> None:
    """An operator's manifest that is not JSON gets a 500; the next request is served."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "index.html").write_text("<!doctype html><title>t</title>")
    (root / "manifest.webmanifest").write_text("{not json")
    web: Daemon = await daemon_factory({"document_root": str(root)})
    status, _, _ = await raw_get(web, "/manifest.webmanifest")
    assert status == 500
    status, _, _ = await raw_get(web, "/sw.js")
    assert status == 404
    status, _, _ = await raw_get(web, "/")
    assert status == 200
