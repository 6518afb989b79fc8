"""Resuming across a history that changed under the page, and resumes that come in pages."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, WebSocketRoute

from pichat.state_dir import HISTORY_FILE
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
from tests.browser.test_reconnect import wait_until_shown
from tests.daemon import TIMEOUT, Daemon

pytestmark = pytest.mark.browser

Contexts = Callable[..., Tracked]

RESET_NOTICE = "The chat history was reset on the server; showing the current history."
#: Enough for a test to post a few dozen messages at once.
FAST = {"rate_messages": 1000, "rate_window": 1.0}


class SocketTap:
    """Playwright's WebSocket route between the page and the daemon.

    Every frame is passed on and recorded, parsed, in ``to_server`` and ``to_page``.
    While ``hold`` is set, the page's ``history`` requests wait in ``held`` until
    :meth:`release`, so a test decides what reaches the page before the next page.
    """

    def __init__(self) -> None:
        self.to_server: list[dict[str, Any]] = []
        self.to_page: list[dict[str, Any]] = []
        self.hold = False
        self.held: list[tuple[WebSocketRoute, str | bytes]] = []

    def __call__(self, route: WebSocketRoute) -> None:
        server = route.connect_to_server()

        def from_page(data: str | bytes) -> None:
            frame = json.loads(data)
            self.to_server.append(frame)
            if self.hold and frame.get("type") == "history":
                self.held.append((server, data))
            else:
                server.send(data)

        def from_server(data: str | bytes) -> None:
            self.to_page.append(json.loads(data))
            route.send(data)

        route.on_message(from_page)
        server.on_message(from_server)

    def sent(self, kind: str) -> list[dict[str, Any]]:
        """The frames of this type the page sent."""
        return [frame for frame in self.to_server if frame.get("type") == kind]

    def received(self, kind: str) -> list[dict[str, Any]]:
        """The frames of this type the page received."""
        return [frame for frame in self.to_page if frame.get("type") == kind]

    def release(self) -> None:
        """Pass on the held requests and stop holding."""
        self.hold = False
        held, self.held = self.held, []
        for server, data in held:
            server.send(data)


def pump_until(page: Page, condition: Callable[[], bool], what: str) -> None:
    """Let Playwright deliver its events until ``condition`` holds (at most TIMEOUT)."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"still waiting for {what}")
        page.wait_for_timeout(20)


def replace_history(source: Path, target: Path) -> None:
    """Put the database of state directory ``source`` into ``target`` (the daemon is stopped)."""
    for suffix in ("", "-wal", "-shm"):
        (target / (HISTORY_FILE + suffix)).unlink(missing_ok=True)
        if (source / (HISTORY_FILE + suffix)).exists():
            shutil.copy2(source / (HISTORY_FILE + suffix), target / (HISTORY_FILE + suffix))


def test_history_replaced_under_a_restart_is_shown_afresh(
    tmp_path: Path, contexts: Contexts
) -> None:
    """A database from another history replaces the page's log: the new messages, only them."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with Daemon(tmp_path / "a", config=FAST) as a:
        tracked = contexts()
        page = tracked.new_page()
        join(page, a.http_url, "reader")
        with ChatClient(a.ws_url, "carol") as carol:
            old = [carol.say(f"old {n}") for n in range(1, 6)]
            old_epoch = carol.welcome["epoch"]
        assert [m["id"] for m in old] == [1, 2, 3, 4, 5]
        wait_until_shown(page, [1, 2, 3, 4, 5])
        # Another Pi's history of the same room, with ids past the page's cursor.
        with Daemon(tmp_path / "b", config=FAST) as b:
            with ChatClient(b.ws_url, "erin") as erin:
                new = [erin.say(f"new {n}") for n in range(1, 13)]
                new_epoch = erin.welcome["epoch"]
        assert [m["id"] for m in new] == list(range(1, 13))
        assert new_epoch != old_epoch
        a.stop()
        page.wait_for_selector("#status[data-state=waiting]")
        replace_history(Path(b.config["state_dir"]), Path(a.config["state_dir"]))
        a.start()
        wait_online(page)
        wait_until_shown(page, list(range(1, 13)))
        assert [(m["id"], m["name"], m["text"]) for m in shown(page)] == [
            (m["id"], "erin", m["text"]) for m in new
        ]
        assert RESET_NOTICE in page.locator("#log .notice").all_inner_texts()
        joins = joins_sent(tracked.sent)
        assert [(j["since"], j.get("epoch")) for j in joins] == [(None, None), (5, old_epoch)]

        # The page lives on in the new history: live messages, its own, a later resume.
        with ChatClient(a.ws_url, "carol") as carol:
            later = carol.say("after the swap")
        assert later["id"] == 13
        wait_for_message(page, 13)
        say(page, "me too")
        wait_for_message(page, 14)
        a.restart()
        pump_until(page, lambda: len(joins_sent(tracked.sent)) == 3, "the page's third join")
        wait_online(page)
        since, epoch = joins_sent(tracked.sent)[-1]["since"], joins_sent(tracked.sent)[-1]["epoch"]
        assert (since, epoch) == (14, new_epoch)
        expected = [(m["id"], m["text"]) for m in stored_history(a.ws_url)]
        assert [m["text"] for m in new] + ["after the swap", "me too"] == [t for _, t in expected]
        wait_until_shown(page, [id_ for id_, _ in expected])
        assert [(m["id"], m["text"]) for m in shown(page)] == expected


def test_an_older_copy_of_the_same_history_is_shown_afresh(
    tmp_path: Path, contexts: Contexts
) -> None:
    """A copy from before the page's cursor put back by hand: no cursor past it, no id lost."""
    with Daemon(tmp_path, config=FAST) as d:
        state = Path(d.config["state_dir"])
        copy = tmp_path / "copy"
        copy.mkdir()
        tracked = contexts()
        page = tracked.new_page()
        join(page, d.http_url, "reader")
        with ChatClient(d.ws_url, "carol") as carol:
            kept = [carol.say(f"kept {n}") for n in range(1, 4)]
        d.stop()
        replace_history(state, copy)
        d.start()
        with ChatClient(d.ws_url, "carol") as carol:
            lost = [carol.say(f"lost {n}") for n in range(4, 6)]
        wait_until_shown(page, [1, 2, 3, 4, 5])
        # The same epoch, but its ids end at 3: the server cannot resume from 5.
        d.stop()
        page.wait_for_selector("#status[data-state=waiting]")
        replace_history(copy, state)
        d.start()
        wait_until_shown(page, [1, 2, 3])
        assert [m["text"] for m in shown(page)] == [m["text"] for m in kept]
        assert joins_sent(tracked.sent)[-1]["since"] == lost[-1]["id"]
        assert RESET_NOTICE in page.locator("#log .notice").all_inner_texts()
        # Ids 4 and 5 are given out again, to other messages: the page shows them.
        with ChatClient(d.ws_url, "carol") as carol:
            again = [carol.say(f"again {n}") for n in range(4, 6)]
        assert [m["id"] for m in again] == [4, 5]
        wait_until_shown(page, [1, 2, 3, 4, 5])
        assert [m["text"] for m in shown(page)] == [m["text"] for m in kept + again]


def test_long_resume_comes_in_pages_with_live_messages_in_between(
    tmp_path: Path, contexts: Contexts
) -> None:
    """A page away for 23 messages (5 per page) shows each once, in order, with live ones."""
    with Daemon(tmp_path, config={"history_replay": 5, **FAST}) as d:
        tracked = contexts()
        page = tracked.new_page()
        tap = SocketTap()
        page.route_web_socket(d.ws_url, tap)
        join(page, d.http_url, "reader")
        with ChatClient(d.ws_url, "carol") as carol:
            before = [carol.say(f"before {n}") for n in range(3)]
        wait_until_shown(page, [m["id"] for m in before])
        # Offline keeps the page from reconnecting while it misses messages.
        cut_off(page, tracked.context, d)
        with ChatClient(d.ws_url, "carol") as carol:
            missed = [carol.say(f"missed {n}") for n in range(23)]
            tap.hold = True
            tracked.context.set_offline(False)
            # The welcome brings the oldest 5 missed; the page asks for the next page.
            wait_for_message(page, missed[4]["id"])
            pump_until(page, lambda: bool(tap.held), "the page's first history request")
            welcome = tap.received("welcome")[-1]
            assert (welcome["resumed"], welcome["more"], welcome["gap"]) == (True, True, False)
            assert [m["id"] for m in welcome["history"]] == [m["id"] for m in missed[:5]]
            # Live messages reach the page before any page of the catch-up.
            live = [carol.say(f"live {n}") for n in range(2)]
            live_ids = {m["id"] for m in live}
            pump_until(
                page,
                lambda: live_ids <= {f.get("id") for f in tap.received("message")},
                "the live messages at the page",
            )
            assert tap.received("history") == []
            tap.release()
            everything = before + missed + live
            wait_until_shown(page, [m["id"] for m in everything])
            wait_online(page)
            assert [(m["id"], m["text"]) for m in shown(page)] == [
                (m["id"], m["text"]) for m in everything
            ]
            assert [r["after"] for r in tap.sent("history")] == [
                missed[index]["id"] for index in (4, 9, 14, 19)
            ]
            assert [page_["more"] for page_ in tap.received("history")] == [True] * 3 + [False]
            assert page.locator("#log .notice").last.inner_text() == (
                "Reconnected: 23 messages you missed are above."
            )
            # Caught up: live messages show at once, and the cursor is the newest id.
            after = carol.say("after the catch-up")
            wait_for_message(page, after["id"])
        d.restart()
        pump_until(page, lambda: len(tap.sent("join")) == 3, "the page's third join")
        wait_online(page)
        assert tap.sent("join")[-1]["since"] == after["id"]
        expected = [(m["id"], m["text"]) for m in stored_history(d.ws_url)]
        assert expected == [(m["id"], m["text"]) for m in everything + [after]]
        assert [(m["id"], m["text"]) for m in shown(page)] == expected


def test_a_drop_during_the_catch_up_resumes_after_the_last_page(
    tmp_path: Path, contexts: Contexts
) -> None:
    """Cut off mid-way through the pages, the page resumes after the last one it got."""
    with Daemon(tmp_path, config={"history_replay": 5, **FAST}) as d:
        tracked = contexts()
        page = tracked.new_page()
        tap = SocketTap()
        page.route_web_socket(d.ws_url, tap)
        join(page, d.http_url, "reader")
        cut_off(page, tracked.context, d)
        with ChatClient(d.ws_url, "carol") as carol:
            missed = [carol.say(f"missed {n}") for n in range(12)]
            tap.hold = True
            tracked.context.set_offline(False)
            wait_for_message(page, missed[4]["id"])
            pump_until(page, lambda: bool(tap.held), "the page's first history request")
            live = carol.say("live while catching up")
            pump_until(
                page,
                lambda: live["id"] in {f.get("id") for f in tap.received("message")},
                "the live message at the page",
            )
        # The daemon goes before the next page comes: the held request dies with it.
        tap.held.clear()
        tap.hold = False
        d.restart()
        pump_until(page, lambda: len(tap.sent("join")) == 3, "the page's third join")
        # Not the live message's id: the page never had 6..12.
        assert tap.sent("join")[-1]["since"] == missed[4]["id"]
        everything = missed + [live]
        wait_until_shown(page, [m["id"] for m in everything])
        wait_online(page)
        assert [(m["id"], m["text"]) for m in shown(page)] == [
            (m["id"], m["text"]) for m in everything
        ]
