"""The page over https and its chat over wss, in Chromium trusting only the test key."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Error, Playwright

from tests.browser.chat import ChatClient
from tests.browser.conftest import Tracked, launch
from tests.browser.pages import join, say, shown, wait_for_count
from tests.daemon import Daemon
from tests.tls import TestCA, spki_sha256

pytestmark = pytest.mark.browser

Contexts = Callable[..., Tracked]


@dataclass
class Pki:
    """The test CA, a certificate Chromium is told to trust, and one it is not."""

    ca: TestCA
    trusted: tuple[Path, Path]
    untrusted: tuple[Path, Path]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Two certificates for 127.0.0.1 from one test CA, each with its own key."""
    ca = TestCA(tmp_path_factory.mktemp("ca"))
    return Pki(ca, ca.issue("trusted"), ca.issue("untrusted"))


@pytest.fixture(scope="module")
def browser(playwright: Playwright, pki: Pki) -> Iterator[Browser]:
    """This module's Chromium: it accepts the trusted certificate's key, and only that.

    The CA is in no trust store Chromium reads, so without the SPKI list every
    https page here would be ERR_CERT_AUTHORITY_INVALID; the list names one key.
    """
    spki = spki_sha256(pki.trusted[0])
    browser = launch(playwright, f"--ignore-certificate-errors-spki-list={spki}")
    yield browser
    browser.close()


def tls_daemon(tmp_path: Path, pair: tuple[Path, Path]) -> Daemon:
    """A daemon speaking TLS only, with this certificate and key."""
    certificate, key = pair
    return Daemon(tmp_path, {"tls_certificate": str(certificate), "tls_private_key": str(key)})


def test_page_over_https_chats_over_wss(tmp_path: Path, contexts: Contexts, pki: Pki) -> None:
    """The page loads over https with HSTS, connects with wss: and chats both ways."""
    with tls_daemon(tmp_path, pki.trusted) as d:
        origin = f"https://127.0.0.1:{d.port}"
        tracked = contexts()
        page = tracked.new_page()
        response = page.goto(f"{origin}/")
        assert response is not None and response.ok
        assert response.headers["strict-transport-security"] == "max-age=31536000"
        join(page, f"{origin}/", "alice")
        assert page.evaluate("window.isSecureContext")
        with ChatClient(f"wss://127.0.0.1:{d.port}/", "bob", tls=pki.ca.client_context()) as bob:
            say(page, "hello over wss")
            bob.expect("message", name="alice", text="hello over wss")
            bob.say("hi alice, encrypted")
            wait_for_count(page, 2)
        assert [(m["name"], m["text"]) for m in shown(page)] == [
            ("alice", "hello over wss"),
            ("bob", "hi alice, encrypted"),
        ]
        assert tracked.websockets == [f"wss://127.0.0.1:{d.port}/"]
        assert [url for url in tracked.requests if not url.startswith(origin + "/")] == []


def test_a_certificate_with_another_key_is_refused(
    tmp_path: Path, contexts: Contexts, pki: Pki
) -> None:
    """The SPKI list is no blanket ignore: a certificate with another key is refused."""
    with tls_daemon(tmp_path, pki.untrusted) as d:
        page = contexts().new_page()
        with pytest.raises(Error, match="ERR_CERT_AUTHORITY_INVALID"):
            page.goto(f"https://127.0.0.1:{d.port}/")
        page.close()
