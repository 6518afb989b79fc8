"""Long resumes and replaced histories: the page pages in what it missed, forgets a dead epoch."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page

from tests.browser.chat import ChatClient
from tests.browser.conftest import Tracked
from tests.browser.pages import join, shown, wait_for_message
from tests.daemon import Daemon

pytestmark = pytest.mark.browser

Contexts = Callable[..., Tracked]


def go_away(page: Page, daemon: Daemon) -> None:
    """Freeze the page's timers, then take the daemon down: it waits to reconnect."""
    page.clock.pause_at(page.evaluate("Date.now()") + 1000)
    daemon.stop()
    page.wait_for_selector("#status[data-state=waiting]")


def test_a_long_absence_is_paged_in_whole(tmp_path: Path, contexts: Contexts) -> None:
    """Away for more than a page of history: every missed message shows once, in order."""
    config = {"history_replay": 5, "rate_messages": 1000}
    with Daemon(tmp_path, config=config) as d:
        page = contexts().new_page()
        page.clock.install()
        join(page, d.http_url, "traveller")
        with ChatClient(d.ws_url, "carol") as carol:
            first = carol.say("before you left")
        wait_for_message(page, first["id"])
        go_away(page, d)
        d.start()
        with ChatClient(d.ws_url, "carol") as carol:
            missed = [carol.say(f"missed {number}") for number in range(23)]
            page.click("#retry")
            wait_for_message(page, missed[-1]["id"])
            live = carol.say("live again")
            wait_for_message(page, live["id"])
        ids = [message["id"] for message in shown(page)]
        assert ids == [first["id"]] + [m["id"] for m in missed] + [live["id"]]
        # The page asked for the pages itself, and nothing was lost on the way.
        assert "missed 22" in [message["text"] for message in shown(page)]


def test_a_replaced_database_replaces_what_the_page_shows(
    tmp_path: Path, contexts: Contexts
) -> None:
    """A history database swapped under a restart: the page shows the new history only."""
    config = {"rate_messages": 1000}
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    with Daemon(first, config=config) as d:
        page = contexts().new_page()
        page.clock.install()
        join(page, d.http_url, "reader")
        with ChatClient(d.ws_url, "old") as old:
            before = [old.say(f"old history {number}") for number in range(5)]
        wait_for_message(page, before[-1]["id"])
        go_away(page, d)
        with Daemon(second, config=config) as other:
            with ChatClient(other.ws_url, "new") as new:
                replaced = [new.say(f"new history {number}") for number in range(12)]
        for suffix in ("", "-wal", "-shm"):
            target = first / "state" / f"history.sqlite3{suffix}"
            target.unlink(missing_ok=True)
            source = second / "state" / f"history.sqlite3{suffix}"
            if source.exists():
                shutil.copy(source, target)
        d.start()
        page.click("#retry")
        wait_for_message(page, replaced[-1]["id"])
        texts = [message["text"] for message in shown(page)]
        assert texts == [message["text"] for message in replaced]
        with ChatClient(d.ws_url, "new") as new:
            after = new.say("after the swap")
        wait_for_message(page, after["id"])
        assert [message["text"] for message in shown(page)][-1] == "after the swap"
        assert "history was reset" in page.inner_text("#log")
