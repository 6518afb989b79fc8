"""Fixtures for the browser tests: one Chromium per session, a fresh context per page.

Chromium is Debian's (``make test`` installs it); Playwright only drives it, so no
browser is ever downloaded. Every context is fenced to loopback twice over:
Chromium resolves no host name except ``*.pichat.test`` (mapped to 127.0.0.1, for
the virtual-host tests), and a route aborts any request to a non-loopback address,
recording it so a test can assert there were none.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, Route, sync_playwright

from tests.daemon import REPO, TIMEOUT

CHROMIUM = Path(os.environ.get("PICHAT_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = REPO / "tests" / "artifacts"
#: Host names the tests may use for virtual hosts; Chromium maps them to 127.0.0.1.
TEST_DOMAIN = "pichat.test"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    # Containers often give /dev/shm only 64 MB, too little for several pages.
    "--disable-dev-shm-usage",
    "--disable-features=MediaRouter,OptimizationHints,Translate",
    f"--host-resolver-rules=MAP *.{TEST_DOMAIN} 127.0.0.1, MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
# Collects what the page's Content-Security-Policy blocked: any entry means the page
# (or injected data) tried something the daemon's policy forbids.
CSP_RECORDER = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


def is_loopback_url(url: str) -> bool:
    """True for data:/blob:/about: URLs and http(s)/ws(s) URLs to a loopback host."""
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return True
    host = (parts.hostname or "").lower()
    if host == "localhost" or host.endswith("." + TEST_DOMAIN):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Tracked:
    """A browser context with what its pages did: requests, errors, dialogs."""

    def __init__(self, context: BrowserContext) -> None:
        self.context = context
        self.pages: list[Page] = []
        self.requests: list[str] = []
        self.blocked: list[str] = []
        self.page_errors: list[str] = []
        self.dialogs: list[str] = []
        self.websockets: list[str] = []
        self.sent: list[str] = []

    def new_page(self) -> Page:
        """Open a page whose activity is recorded."""
        page = self.context.new_page()
        page.set_default_timeout(TIMEOUT * 1000)
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        page.on("dialog", self._on_dialog)
        page.on("websocket", self._on_websocket)
        self.pages.append(page)
        return page

    def _on_dialog(self, dialog: Any) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def _on_websocket(self, socket: Any) -> None:
        self.websockets.append(socket.url)
        socket.on("framesent", lambda payload: self.sent.append(payload))

    def _guard(self, route: Route) -> None:
        url = route.request.url
        if is_loopback_url(url):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort("blockedbyclient")


# Package scope: one browser for all browser tests, gone before the asyncio tests in
# other packages run (the sync driver keeps an event loop of its own while alive).
@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    """The Playwright driver (no browser download: Debian's Chromium is used)."""
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """One headless Chromium for all the browser tests."""
    browser = launch(playwright)
    yield browser
    browser.close()


def launch(playwright: Playwright, *extra_args: str) -> Browser:
    """Debian's Chromium, headless, fenced to loopback, with ``extra_args`` added."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make host-packages` installs Debian's chromium")
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=[*LAUNCH_ARGS, *extra_args], headless=True
    )


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the test item, so fixtures can tell a failure."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def contexts(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Callable[..., Tracked]]:
    """A factory of fresh, fenced browser contexts; checks them when the test ends.

    Keyword arguments go to ``Browser.new_context`` (viewport, locale, timezone_id,
    color_scheme, ...). At teardown every page must have raised no uncaught error,
    opened no dialog and triggered no Content-Security-Policy violation.
    """
    made: list[Tracked] = []

    def factory(**options: Any) -> Tracked:
        options.setdefault("viewport", {"width": 1280, "height": 800})
        options.setdefault("locale", "en-GB")
        context = browser.new_context(**options)
        context.set_default_timeout(TIMEOUT * 1000)
        tracked = Tracked(context)
        context.add_init_script(CSP_RECORDER)
        context.route("**/*", tracked._guard)
        made.append(tracked)
        return tracked

    yield factory
    call = getattr(request.node, "report_call", None)
    failed = call is not None and call.failed
    problems = []
    for number, tracked in enumerate(made):
        for index, page in enumerate(tracked.pages):
            if page.is_closed():
                continue
            if failed:
                # What each page looked like when the test failed, for the CI log reader.
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                name = f"failed-{request.node.name}-{number}-{index}.png"
                page.screenshot(path=str(ARTIFACTS / name))
            violations = page.evaluate("window.__cspViolations || []")
            problems += [f"CSP violation on {page.url}: {v}" for v in violations]
        problems += [f"page error: {error}" for error in tracked.page_errors]
        problems += [f"dialog opened: {dialog}" for dialog in tracked.dialogs]
        tracked.context.close()
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """``tests/artifacts/`` (gitignored): screenshots and logs the tests leave behind."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
