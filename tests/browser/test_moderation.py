"""A moderator's page and the pages of those it moderates, in real Chromium.

Two browser contexts (two people): the moderator joins with the password the
form asks for, deletes a message from the menu on it and kicks or bans from the
menu on a person, all with the keyboard; the other page loses the message at
once, or says it was removed or banned and does not reconnect by itself.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page

from pichat.passwords import hash_password
from tests.browser.chat import ChatClient
from tests.browser.conftest import Tracked
from tests.browser.pages import (
    cut_off,
    join,
    open_page,
    say,
    shown,
    wait_for_count,
    wait_online,
)
from tests.daemon import Daemon

pytestmark = pytest.mark.browser

Contexts = Callable[..., Tracked]
PASSWORD = "correct horse"
CONFIG: dict[str, Any] = {
    "moderators": [{"name": "alice", "password_hash": hash_password(PASSWORD, n=16)}],
    # Every page connects from 127.0.0.1: bob's context claims another address
    # through the header a trusted proxy would set, so banning him spares alice.
    "trusted_proxies": ["127.0.0.1"],
}
BOB = {"extra_http_headers": {"X-Forwarded-For": "203.0.113.7"}}


def join_as_moderator(page: Page, url: str) -> None:
    """Join as alice: the form asks for the password, then the page is a moderator's."""
    open_page(page, url)
    page.fill("#join-name", "alice")
    page.click("#join-submit")
    page.wait_for_selector("#join-password-field:not([hidden])")
    assert "belongs to a moderator" in page.inner_text("#join-error")
    assert page.evaluate("document.activeElement.id") == "join-password"
    page.fill("#join-password", PASSWORD)
    page.press("#join-password", "Enter")
    wait_online(page)
    assert page.evaluate("localStorage.getItem('pichat.password')") is None


def use_menu(page: Page, menu_label: str, action: str) -> None:
    """Open a moderation menu with the keyboard, pick an action, confirm it."""
    button = page.get_by_role("button", name=menu_label)
    button.focus()
    page.keyboard.press("Enter")
    item = page.locator(f'.mod-panel:not([hidden]) [data-action="{action}"]')
    item.focus()
    page.keyboard.press("Enter")
    confirm = page.locator(".mod-panel:not([hidden]) .mod-confirm")
    assert page.evaluate("document.activeElement.classList.contains('mod-confirm')")
    confirm.wait_for()
    page.keyboard.press("Enter")


def test_moderator_badge_and_delete_reach_the_other_page(
    tmp_path: Path, contexts: Contexts
) -> None:
    """The badge shows on both pages; a message deleted from the menu vanishes on both."""
    with Daemon(tmp_path, config=CONFIG) as d:
        alice = contexts().new_page()
        bob = contexts().new_page()
        join_as_moderator(alice, d.http_url)
        join(bob, d.http_url, "bob")
        say(alice, "I moderate")
        say(bob, "spam spam")
        wait_for_count(alice, 2)
        wait_for_count(bob, 2)
        assert bob.locator("#log .msg").first.locator(".mod-tag").count() == 1
        assert bob.locator("#online-list .person", has_text="alice").locator(".mod-tag").count()
        # Only a moderator gets menus.
        assert bob.locator(".mod-button").count() == 0
        use_menu(alice, "Moderate the message from bob", "delete")
        bob.wait_for_function("() => document.querySelectorAll('#log .msg').length === 1")
        alice.wait_for_function("() => document.querySelectorAll('#log .msg').length === 1")
        assert [m["text"] for m in shown(bob)] == ["I moderate"]
        # A reload of bob's page does not bring it back.
        bob.reload()
        wait_online(bob)
        assert [m["text"] for m in shown(bob)] == ["I moderate"]


def test_kick_from_the_online_list(tmp_path: Path, contexts: Contexts) -> None:
    """Kick: bob's page says why, shows the form to join again, and does not reconnect."""
    with Daemon(tmp_path, config=CONFIG) as d:
        alice = contexts().new_page()
        bob_context = contexts()
        bob = bob_context.new_page()
        join(bob, d.http_url, "bob")
        join_as_moderator(alice, d.http_url)
        alice.wait_for_selector("#online-list .person >> text=bob")
        use_menu(alice, "Moderate bob", "kick")
        bob.wait_for_selector("#join:not([hidden])")
        assert "A moderator removed you from the room" in bob.inner_text("#join-error")
        alice.wait_for_selector("#log .presence-leave >> text=bob")
        sockets = len(bob_context.websockets)
        bob.wait_for_timeout(1500)  # longer than the first reconnection delay
        assert len(bob_context.websockets) == sockets
        bob.click("#join-submit")  # joining again is offered, and works
        wait_online(bob)


def test_ban_from_the_online_list(tmp_path: Path, contexts: Contexts) -> None:
    """Ban for an hour: bob's page says he is banned and stays disconnected."""
    with Daemon(tmp_path, config=CONFIG) as d:
        alice = contexts().new_page()
        bob = contexts(**BOB).new_page()
        join(bob, d.http_url, "bob")
        join_as_moderator(alice, d.http_url)
        alice.wait_for_selector("#online-list .person >> text=bob")
        use_menu(alice, "Moderate bob", "ban-60")
        bob.wait_for_selector("#join:not([hidden])")
        assert "banned you" in bob.inner_text("#join-error")
        alice.wait_for_selector("#log .notice >> text=Done: ban bob")
        # A reload cannot read the handshake's 403 (the browser reports 1006, like
        # a network failure): the page asks site.json and explains instead of
        # reconnecting for ever.
        bob.reload()
        bob.wait_for_selector("#join-error >> text=Your address is banned from this chat until")
        assert "Reconnecting" not in bob.inner_text("#status")
        bob.click("#join-submit")
        bob.wait_for_selector("#join:not([hidden]) #join-error >> text=Your address is banned")
        bob.wait_for_timeout(1500)  # longer than the first reconnection delay
        assert bob.is_visible("#join") and "Reconnecting" not in bob.inner_text("#status")


def test_lock_shows_the_room_state(tmp_path: Path, contexts: Contexts) -> None:
    """The moderator's lock button locks the room: both pages say so, bob cannot post."""
    with Daemon(tmp_path, config=CONFIG) as d:
        alice = contexts().new_page()
        bob = contexts().new_page()
        join(bob, d.http_url, "bob")
        join_as_moderator(alice, d.http_url)
        assert bob.locator("#lock-room").is_hidden()
        alice.click("#lock-room")
        bob.wait_for_selector("#room-state:not([hidden])")
        assert "locked" in bob.inner_text("#room-state")
        assert alice.get_attribute("#lock-room", "aria-pressed") == "true"
        say(bob, "let me in")
        bob.wait_for_selector("#composer-error >> text=The room is locked")
        assert bob.input_value("#composer-text") == "let me in"


def test_a_page_away_during_a_delete_and_a_clear_drops_them_on_resume(
    tmp_path: Path, contexts: Contexts
) -> None:
    """A phone in a pocket misses the deleted frame: its resume says what went."""
    with Daemon(tmp_path, config=CONFIG) as d:
        tracked = contexts()
        bob = tracked.new_page()
        join(bob, d.http_url, "bob")
        with ChatClient(d.ws_url, "carol") as carol:
            sent = [carol.say(f"m{n}") for n in range(4)]
        wait_for_count(bob, 4)
        cut_off(bob, tracked.context, d)  # no reconnection until back online
        with ChatClient(d.ws_url, "alice", password=PASSWORD) as alice:
            alice.send({"type": "delete", "id": sent[1]["id"]})
            alice.expect("done", action="delete")
        tracked.context.set_offline(False)
        bob.wait_for_function("() => document.querySelectorAll('#log .msg').length === 3")
        wait_online(bob)
        assert [m["text"] for m in shown(bob)] == ["m0", "m2", "m3"]
        cut_off(bob, tracked.context, d)
        with ChatClient(d.ws_url, "alice", password=PASSWORD) as alice:
            alice.send({"type": "clear"})
            alice.expect("done", action="clear")
        d.restart()  # the clear is remembered across a restart too
        tracked.context.set_offline(False)
        bob.wait_for_function("() => document.querySelectorAll('#log .msg').length === 0")
        wait_online(bob)
