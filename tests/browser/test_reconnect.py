"""Dropped connections and daemon restarts: the page comes back and misses nothing."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page
from websockets.exceptions import WebSocketException

from tests.browser.chat import ChatClient, stored_history
from tests.browser.conftest import Tracked
from tests.browser.pages import (
    cut_off,
    join,
    joins_sent,
    say,
    shown,
    wait_for_message,
    wait_online,
)
from tests.daemon import TIMEOUT, Daemon

pytestmark = pytest.mark.browser

Contexts = Callable[..., Tracked]

SET_VISIBILITY = """
(state) => {
  // Headless Chromium keeps every page visible (there is no tab strip to switch),
  // so the platform's signal is reproduced: the property and the real event.
  Object.defineProperty(document, "visibilityState", { configurable: true, get: () => state });
  Object.defineProperty(document, "hidden", { configurable: true, get: () => state === "hidden" });
  document.dispatchEvent(new Event("visibilitychange"));
}
"""


class Sender(threading.Thread):
    """Another client that keeps talking, reconnecting whenever the daemon is gone.

    ``acked`` holds every message the daemon confirmed (sent back with its id).
    """

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.acked: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.stopping = threading.Event()
        self.progress = threading.Condition()

    def run(self) -> None:
        number = 0
        while not self.stopping.is_set():
            try:
                with ChatClient(self.url, "sender") as client:
                    while not self.stopping.is_set():
                        message = client.say(f"sender message {number}")
                        number += 1
                        with self.progress:
                            self.acked.append(message)
                            self.progress.notify_all()
                        # Pace it: a steady trickle, not a flood of a thousand.
                        self.stopping.wait(0.02)
            except (OSError, TimeoutError, WebSocketException) as error:
                # The daemon is down or restarting: try again shortly.
                self.errors.append(repr(error))
                number += 1
                self.stopping.wait(0.05)

    def wait_for(self, count: int) -> None:
        """Block until the daemon has confirmed ``count`` messages in total."""
        with self.progress:
            if not self.progress.wait_for(lambda: len(self.acked) >= count, TIMEOUT):
                raise TimeoutError(f"sender: {len(self.acked)} of {count} confirmed")

    def stop(self) -> None:
        """Stop sending and wait for the thread."""
        self.stopping.set()
        self.join(TIMEOUT)


def set_visibility(page: Page, state: str) -> None:
    """Tell the page it went to the background (``hidden``) or came back (``visible``)."""
    page.evaluate(SET_VISIBILITY, state)


def wait_until_shown(page: Page, ids: list[int]) -> None:
    """Wait until the log shows exactly these message ids, in this order."""
    page.wait_for_function(
        """(ids) => {
          const nodes = document.querySelectorAll("#log .msg");
          const shown = Array.from(nodes, (node) => Number(node.dataset.id));
          return shown.length === ids.length && shown.every((id, i) => id === ids[i]);
        }""",
        arg=ids,
    )


def test_daemon_killed_and_restarted_while_another_client_sends(
    tmp_path: Path, contexts: Contexts
) -> None:
    """After SIGKILL and restart every page shows every stored message once, in order."""
    config = {"rate_messages": 10_000, "rate_window": 1.0}
    with Daemon(tmp_path, config=config) as d:
        tracked = [contexts(), contexts(viewport={"width": 360, "height": 740})]
        pages = [t.new_page() for t in tracked]
        for number, page in enumerate(pages):
            join(page, d.http_url, f"reader {number}")
        say(pages[0], "before the crash")
        sender = Sender(d.ws_url)
        sender.start()
        try:
            sender.wait_for(10)
            d.kill()
            for page in pages:
                page.wait_for_selector("#status[data-state=waiting]")
            confirmed_before = len(sender.acked)
            d.start()
            sender.wait_for(confirmed_before + 20)
            wait_online(pages[1])
            say(pages[1], "after the restart")
            sender.wait_for(len(sender.acked) + 10)
        finally:
            sender.stop()
        history = stored_history(d.ws_url)
        expected = [(m["id"], m["name"], m["text"]) for m in history]
        texts = [text for _, _, text in expected]
        assert "before the crash" in texts and "after the restart" in texts
        for message in sender.acked:
            assert texts.count(message["text"]) == 1, message
        for t, page in zip(tracked, pages, strict=True):
            wait_until_shown(page, [id_ for id_, _, _ in expected])
            assert [(m["id"], m["name"], m["text"]) for m in shown(page)] == expected
            resumes = [frame["since"] for frame in joins_sent(t.sent)[1:]]
            assert resumes and all(isinstance(since, int) for since in resumes)


def test_dropped_connection_resumes_with_since(tmp_path: Path, contexts: Contexts) -> None:
    """Messages sent while a page was cut off arrive after it rejoins with ``since``."""
    with Daemon(tmp_path) as d:
        tracked = contexts()
        page = tracked.new_page()
        join(page, d.http_url, "dora")
        with ChatClient(d.ws_url, "carol") as carol:
            before = [carol.say(f"before {n}") for n in range(3)]
        wait_for_message(page, before[-1]["id"])
        # Offline keeps the page from reconnecting, so the next messages are missed.
        cut_off(page, tracked.context, d)
        with ChatClient(d.ws_url, "carol") as carol:
            missed = [carol.say(f"missed {n}") for n in range(3)]
        assert [m["text"] for m in shown(page)] == ["before 0", "before 1", "before 2"]
        tracked.context.set_offline(False)
        wait_for_message(page, missed[-1]["id"])
        wait_online(page)
        assert [(m["id"], m["text"]) for m in shown(page)] == [
            (m["id"], m["text"]) for m in before + missed
        ]
        joins = joins_sent(tracked.sent)
        assert [join["since"] for join in joins] == [None, before[-1]["id"]]
        assert page.locator("#log .notice").last.inner_text() == (
            "Reconnected: 3 messages you missed are above."
        )


def test_returning_to_the_tab_reconnects_at_once(tmp_path: Path, contexts: Contexts) -> None:
    """A page waiting out its backoff reconnects as soon as it becomes visible again."""
    with Daemon(tmp_path) as d:
        page = contexts().new_page()
        page.clock.install()
        join(page, d.http_url, "phone user")
        # From here the page's timers only run when the test says so: the retry
        # timer can never be what reconnects it.
        page.clock.pause_at(page.evaluate("Date.now()") + 1000)
        d.kill()
        page.wait_for_selector("#status[data-state=waiting]")
        set_visibility(page, "hidden")
        d.start()
        with ChatClient(d.ws_url, "carol") as carol:
            missed = carol.say("while you were away")
        assert page.get_attribute("#status", "data-state") == "waiting"
        set_visibility(page, "visible")
        wait_for_message(page, missed["id"])
        wait_online(page)


def test_retry_button_reconnects_at_once(tmp_path: Path, contexts: Contexts) -> None:
    """While waiting to reconnect, the status offers a button that reconnects now."""
    with Daemon(tmp_path) as d:
        page = contexts().new_page()
        page.clock.install()
        join(page, d.http_url, "impatient")
        assert page.is_hidden("#retry")
        assert page.is_enabled("#composer-send")
        page.clock.pause_at(page.evaluate("Date.now()") + 1000)
        d.kill()
        page.wait_for_selector("#status[data-state=waiting]")
        assert re.fullmatch(r"Reconnecting in \d+ s", page.inner_text("#status").strip())
        assert page.get_attribute("#status-countdown", "aria-hidden") == "true"
        assert page.is_disabled("#composer-send")
        d.start()
        page.click("#retry")
        wait_online(page)
        assert page.is_enabled("#composer-send")
        assert page.is_hidden("#retry")


def test_unread_count_in_the_title_while_hidden(tmp_path: Path, contexts: Contexts) -> None:
    """Messages arriving while the tab is hidden are counted in its title until it returns."""
    with Daemon(tmp_path, config={"title": "Test room"}) as d:
        page = contexts().new_page()
        join(page, d.http_url, "reader")
        set_visibility(page, "hidden")
        with ChatClient(d.ws_url, "carol") as carol:
            for n in range(3):
                last = carol.say(f"unread {n}")
        wait_for_message(page, last["id"])
        assert page.title() == "(3) Test room"
        set_visibility(page, "visible")
        assert page.title() == "Test room"


def test_backoff_is_exponential_jittered_and_capped(tmp_path: Path, contexts: Contexts) -> None:
    """Retry delays double from 0.5 s up to a 15 s cap, each jittered within its upper half."""
    with Daemon(tmp_path) as d:
        page = contexts().new_page()
        page.goto(d.http_url)
        delays = page.evaluate(
            """async () => {
              const { backoffDelay } = await import("./js/transport.js");
              return [0, 1, 2, 3, 4, 5, 6, 10].map((n) => [
                backoffDelay(n, { random: () => 0 }),
                backoffDelay(n, { random: () => 0.999999 }),
              ]);
            }"""
        )
    ceilings = [500, 1000, 2000, 4000, 8000, 15000, 15000, 15000]
    for (low, high), ceiling in zip(delays, ceilings, strict=True):
        assert low == ceiling // 2
        assert high == ceiling


def test_backoff_grows_resets_on_open_and_stops_on_leave(
    tmp_path: Path, contexts: Contexts
) -> None:
    """Failed attempts wait longer each time, an open connection resets that, Leave ends it."""
    with Daemon(tmp_path) as d:
        tracked = contexts()
        page = tracked.new_page()
        page.clock.install()
        join(page, d.http_url, "patient")
        page.clock.pause_at(page.evaluate("Date.now()") + 1000)
        d.kill()
        page.wait_for_selector('#status[data-state=waiting][data-attempt="1"]')
        assert page.inner_text("#status").strip() == "Reconnecting in 1 s"
        for attempt in range(2, 6):
            page.clock.run_for(15_000)
            page.wait_for_selector(f'#status[data-state=waiting][data-attempt="{attempt}"]')
        # The fifth wait is drawn from 4 to 8 s.
        seconds = int(page.inner_text("#status").split()[-2])
        assert 4 <= seconds <= 8
        d.start()
        page.click("#retry")
        wait_online(page)
        d.kill()
        page.wait_for_selector('#status[data-state=waiting][data-attempt="1"]')
        assert page.inner_text("#status").strip() == "Reconnecting in 1 s"
        page.click("#leave")
        page.wait_for_selector("#status[data-state=idle]")
        d.start()
        joins = len(joins_sent(tracked.sent))
        page.clock.run_for(60_000)
        with ChatClient(d.ws_url, "carol") as carol:
            assert [person["name"] for person in carol.welcome["online"]] == ["carol"]
        assert page.get_attribute("#status", "data-state") == "idle"
        assert len(joins_sent(tracked.sent)) == joins
