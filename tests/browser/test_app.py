"""The page as an app in real Chromium: manifest, icons, service worker, offline, notifications.

http://127.0.0.1 is a secure context (a loopback address), so Chromium gives the page
its service worker and notifications over the test daemon's plain http; a
``*.pichat.test`` host name is not one, and there all of it is skipped.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, Playwright, Worker

from tests.browser.chat import ChatClient
from tests.browser.conftest import CHROMIUM, CSP_RECORDER, LAUNCH_ARGS, TEST_DOMAIN, Tracked
from tests.browser.pages import join, open_page, say, wait_for_message, wait_online
from tests.browser.test_reconnect import set_visibility
from tests.daemon import TIMEOUT, Daemon

pytestmark = pytest.mark.browser

Contexts = Callable[..., Tracked]


def png_size(body: bytes) -> tuple[int, int]:
    """Width and height of a PNG, from its IHDR chunk."""
    assert body[:8] == b"\x89PNG\r\n\x1a\n", "a PNG signature"
    width, height = struct.unpack(">II", body[16:24])
    return width, height


def worker(context: BrowserContext, page: Page) -> Worker:
    """The page's service worker, once it is active and controls the page."""
    page.wait_for_function(
        "async () => (await navigator.serviceWorker.ready) && navigator.serviceWorker.controller !== null"
    )
    return context.service_workers[0]


@pytest.fixture
def profile(playwright: Playwright, tmp_path: Path) -> Iterator[Tracked]:
    """A context with a profile on disk, fenced like the others.

    Chromium never offers to install from an off-the-record profile (the contexts
    of ``Browser.new_context`` are), so the installability check needs this one.
    """
    context = playwright.chromium.launch_persistent_context(
        str(tmp_path / "profile"), executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True
    )
    context.set_default_timeout(TIMEOUT * 1000)
    tracked = Tracked(context)
    context.add_init_script(CSP_RECORDER)
    context.route("**/*", tracked._guard)
    yield tracked
    problems = [f"page error: {error}" for error in tracked.page_errors]
    problems += [f"dialog opened: {dialog}" for dialog in tracked.dialogs]
    for page in tracked.pages:
        if not page.is_closed():
            problems += page.evaluate("window.__cspViolations || []")
    context.close()
    assert not problems, problems


def test_manifest_and_icons_make_the_page_installable(tmp_path: Path, profile: Tracked) -> None:
    """Chromium's own installability check passes; the manifest names the site; icons are right."""
    with Daemon(tmp_path, config={"title": "Hallway Pi chat"}) as d:
        tracked = profile
        page = tracked.new_page()
        open_page(page, d.http_url)
        worker(tracked.context, page)
        cdp = tracked.context.new_cdp_session(page)
        assert cdp.send("Page.getInstallabilityErrors")["installabilityErrors"] == []
        manifest = cdp.send("Page.getAppManifest")
        assert manifest["errors"] == [], manifest["errors"]
        data = json.loads(manifest["data"])
        assert data["name"] == "Hallway Pi chat" and data["short_name"] == "Hallway"
        assert data["display"] == "standalone"
        assert data["theme_color"] and data["background_color"]
        response = page.request.get(f"{d.http_url}/manifest.webmanifest")
        assert response.headers["content-type"] == "application/manifest+json"
        sizes = {}
        for icon in data["icons"]:
            got = page.request.get(f"{d.http_url}/{icon['src']}")
            assert got.ok, icon
            assert got.headers["content-type"] == icon["type"]
            if icon["type"] == "image/png":
                width, height = png_size(got.body())
                assert f"{width}x{height}" == icon["sizes"]
                sizes[icon["purpose"]] = sizes.get(icon["purpose"], set()) | {width}
        assert {192, 512} <= sizes["any"] and 512 in sizes["maskable"]
        touch = page.get_attribute("link[rel=apple-touch-icon]", "href")
        assert png_size(page.request.get(f"{d.http_url}/{touch}").body()) == (180, 180)
        themes = page.eval_on_selector_all(
            "meta[name=theme-color]", "nodes => nodes.map(n => n.media)"
        )
        assert sorted(themes) == ["(prefers-color-scheme: dark)", "(prefers-color-scheme: light)"]
