"""The seed tutorial's page still works against pichat's ``echo-protocol`` mode."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.browser.chat import ChatClient
from tests.browser.conftest import TEST_DOMAIN, Tracked
from tests.browser.pages import join, shown, wait_for_message
from tests.daemon import PUBLIC, Daemon

pytestmark = pytest.mark.browser

Contexts = Callable[..., Tracked]
LEGACY = Path(__file__).parent / "fixtures" / "legacy"
# The tutorial loaded jQuery; Debian's libjs-jquery (in HOST_PACKAGES) provides it.
JQUERY = Path("/usr/share/javascript/jquery/jquery.min.js")


def test_legacy_page_renders_history_and_talks_to_the_room(
    tmp_path: Path, contexts: Contexts
) -> None:
    """The tutorial's jQuery page shows pichat's history as text and its messages reach v1 pages."""
    if not JQUERY.is_file():
        pytest.fail(f"{JQUERY} is missing: `make host-packages` installs libjs-jquery")
    root = tmp_path / "legacy"
    shutil.copytree(LEGACY, root)
    shutil.copy(JQUERY, root / "jquery.min.js")
    modern = f"modern.{TEST_DOMAIN}"
    config = {
        "document_root": str(root),
        "sites": [{"server_names": [modern], "document_root": str(PUBLIC), "room": "lobby"}],
    }
    with Daemon(tmp_path, config=config) as d:
        hostile = '<img src=x onerror="window.__xss=1"> & "quotes"'
        with ChatClient(d.ws_url, "<b>alice</b>", avatar=f"{d.http_url}/a.png?x=1&y=2") as alice:
            sent = [alice.say(hostile), alice.say("plain hello")]
            tracked = contexts()
            legacy = tracked.new_page()
            legacy.goto(d.http_url)
            legacy.wait_for_function("() => document.querySelectorAll('#chat li').length === 2")
            rows = legacy.evaluate(
                """() => Array.from(document.querySelectorAll("#chat li"), (li) => ({
                  name: li.querySelector("b").textContent,
                  text: li.lastChild.textContent,
                  avatar: li.querySelector("img").getAttribute("src"),
                  elements: li.querySelectorAll("*").length,
                }))"""
            )
            assert [row["name"] for row in rows] == ["<b>alice</b>", "<b>alice</b>"]
            assert [row["text"] for row in rows] == [": " + hostile, ": plain hello"]
            assert {row["avatar"] for row in rows} == {f"{d.http_url}/a.png?x=1&y=2"}
            # img, b and i: nothing from the data became an element.
            assert {row["elements"] for row in rows} == {3}
            assert legacy.evaluate("window.__xss ?? null") is None

            # A v1 page in the same room sees what the tutorial's page sends.
            page = contexts().new_page()
            join(page, f"http://{modern}:{d.port}/", "modern reader")
            legacy.fill("#name", "old timer")
            legacy.click("#join button")
            legacy.fill("#message", "hello from 2014 <3")
            legacy.click("#send button")
            echoed = alice.expect("message", name="old timer")
            assert echoed["text"] == "hello from 2014 <3"
            wait_for_message(page, echoed["id"])
            assert [m["text"] for m in shown(page)] == [m["text"] for m in sent] + [
                "hello from 2014 <3"
            ]
            legacy.wait_for_function("() => document.querySelectorAll('#chat li').length === 3")
            assert legacy.locator("#chat li").last.text_content().endswith(": hello from 2014 <3")
