"""What the browser tests do with the chat page, in its own words."""

from __future__ import annotations

import json
from typing import Any

from playwright.sync_api import BrowserContext, Page
from playwright.sync_api import Error as PlaywrightError

from tests.daemon import Daemon

SHOWN_MESSAGES = """
() => Array.from(document.querySelectorAll("#log .msg"), (node) => ({
  id: Number(node.dataset.id),
  name: node.querySelector(".msg-name").textContent,
  text: node.querySelector(".msg-text").textContent,
  mine: node.classList.contains("mine"),
}))
"""


def open_page(page: Page, url: str) -> None:
    """Load the chat page and wait until its modules ran (the form is usable)."""
    page.goto(url)
    page.wait_for_selector("#join-name:focus, #status[data-state=online]")


def join(page: Page, url: str, name: str, avatar: str = "") -> None:
    """Open the page, fill the join form and wait until the room says welcome."""
    open_page(page, url)
    page.fill("#join-name", name)
    page.fill("#join-avatar", avatar)
    page.click("#join-submit")
    wait_online(page)


def wait_online(page: Page) -> None:
    """Wait until the status line says the page is joined and connected."""
    page.wait_for_selector("#status[data-state=online]")


def cut_off(page: Page, context: BrowserContext, daemon: Daemon) -> None:
    """Drop the page's connection and keep it from reconnecting until back online.

    The daemon stops first and the test waits until the page has seen the close;
    only then does the context go offline and the daemon start again. Going
    offline first is not the same: Chromium's offline emulation keeps an open
    WebSocket open and drops what arrives on it, the close included, so a page
    cut off that way stayed "online" whenever the daemon's stop came after the
    emulation took hold (seen here under load). New connections do fail offline.
    """
    daemon.stop()
    try:
        page.wait_for_selector("#status[data-state=waiting]")
    except PlaywrightError as error:
        state = page.get_attribute("#status", "data-state")
        raise AssertionError(
            f"the page did not see its connection close (status {state!r});"
            f" the daemon's log ends:\n{daemon.log()[-3000:]}"
        ) from error
    context.set_offline(True)
    daemon.start()


def say(page: Page, text: str) -> None:
    """Type a message and press Enter."""
    page.fill("#composer-text", text)
    page.press("#composer-text", "Enter")


def shown(page: Page) -> list[dict[str, Any]]:
    """The messages in the log, top to bottom: id, name, text and whether it is mine."""
    messages: list[dict[str, Any]] = page.evaluate(SHOWN_MESSAGES)
    return messages


def wait_for_message(page: Page, message_id: int) -> None:
    """Wait until the log shows the message with this id."""
    page.wait_for_selector(f'#log .msg[data-id="{message_id}"]', state="attached")


def wait_for_count(page: Page, count: int) -> None:
    """Wait until the log shows at least ``count`` messages."""
    page.wait_for_function("n => document.querySelectorAll('#log .msg').length >= n", arg=count)


def joins_sent(sent: list[str]) -> list[dict[str, Any]]:
    """The ``join`` frames among the frames a context's pages sent."""
    frames = [json.loads(payload) for payload in sent if isinstance(payload, str)]
    return [frame for frame in frames if frame.get("type") == "join"]
