"""Two people chatting through the page, and what each of them sees."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.browser.chat import ChatClient, Crowd
from tests.browser.conftest import Tracked
from tests.browser.pages import join, open_page, say, shown, wait_for_count, wait_online
from tests.daemon import Daemon

pytestmark = pytest.mark.browser

Contexts = Callable[..., Tracked]


def test_two_visitors_chat_both_ways(tmp_path: Path, contexts: Contexts) -> None:
    """Two browsers join, each sees the other's messages and its own marked as its own."""
    with Daemon(tmp_path, config={"title": "Test room"}) as d:
        alice = contexts().new_page()
        bob = contexts(viewport={"width": 360, "height": 740}).new_page()
        join(alice, d.http_url, "alice")
        join(bob, d.http_url, "bob")
        alice.wait_for_selector("#log .presence-join >> text=bob")
        say(alice, "hello bob")
        wait_for_count(bob, 1)
        say(bob, "hi alice")
        wait_for_count(alice, 2)
        wait_for_count(bob, 2)
        for page, me in ((alice, "alice"), (bob, "bob")):
            messages = shown(page)
            assert [(m["name"], m["text"]) for m in messages] == [
                ("alice", "hello bob"),
                ("bob", "hi alice"),
            ]
            assert [m["mine"] for m in messages] == [m["name"] == me for m in messages]
            assert messages[0]["id"] < messages[1]["id"]
            assert page.title() == "Test room"
            assert page.inner_text("#title") == "Test room"
            assert page.inner_text("#online-count") == "2"
            names = page.locator("#online-list .person-name").all_text_contents()
            assert sorted(names) == ["alice", "bob"]
        bob.close()
        alice.wait_for_selector("#log .presence-leave >> text=bob")
        assert alice.inner_text("#online-count") == "1"
        assert alice.locator("#online-list .person-name").all_text_contents() == ["alice"]


def test_a_big_room_lists_a_hundred_online_then_everyone_on_request(
    tmp_path: Path, contexts: Contexts
) -> None:
    """Past 100 online: the exact count, 100 listed plus you, *and 1 more*; the button pages."""
    config = {"max_connections_per_ip": 200}
    with Daemon(tmp_path, config=config) as d, ExitStack() as stack:
        for number in range(101):
            stack.enter_context(ChatClient(d.ws_url, f"p{number:03}"))
        page = contexts().new_page()
        join(page, d.http_url, "zed")
        page.wait_for_selector("#online-count >> text=102")
        names = page.locator("#online-list .person-name")
        assert names.count() == 101
        assert "zed" in names.all_text_contents()
        assert page.inner_text("#online-list .more-count") == "and 1 more"
        page.click("#online-list .show-everyone")
        page.wait_for_function(
            "() => document.querySelectorAll('#online-list .person-name').length === 102"
        )
        assert page.locator("#online-list .person-more").count() == 0
        assert "p100" in names.all_text_contents()
        with ChatClient(d.ws_url, "late"):
            page.wait_for_selector("#log .presence-join >> text=late")
            page.wait_for_selector("#online-count >> text=103")
        page.wait_for_selector("#log .presence-leave >> text=late")
        assert page.inner_text("#online-count") == "102"


#: The texts of the log's notices, and of its join and leave lines.
NOTICES = "() => Array.from(document.querySelectorAll('#log .notice'), (n) => n.textContent)"
PRESENCE_LINES = (
    "() => Array.from(document.querySelectorAll('#log .presence'), (n) => n.textContent)"
)


def test_six_joining_at_once_show_one_summary_line_and_leaving_another(
    tmp_path: Path, contexts: Contexts
) -> None:
    """Six others in one presence frame: one line "6 people joined.", 7 online; then "6 left."."""
    names = [f"guest{number}" for number in range(6)]
    with Daemon(tmp_path) as d:
        page = contexts().new_page()
        join(page, d.http_url, "alice")
        with Crowd(d, names) as crowd:
            crowd.join()
            # The count and the log's lines come from the same frame, in one go.
            page.wait_for_selector("#online-count >> text=7")
            assert page.evaluate(NOTICES).count("6 people joined.") == 1
            assert page.evaluate(PRESENCE_LINES) == []
            listed = page.locator("#online-list .person-name").all_text_contents()
            assert sorted(listed) == ["alice", *names]
            crowd.leave()
            page.wait_for_selector("#online-count >> text=1")
            assert page.evaluate(NOTICES).count("6 left.") == 1
            assert page.evaluate(PRESENCE_LINES) == []
            assert page.locator("#online-list .person-name").all_text_contents() == ["alice"]


def test_two_joining_at_once_show_a_line_each(tmp_path: Path, contexts: Contexts) -> None:
    """Two others in one presence frame get a join line each, and a leave line each."""
    with Daemon(tmp_path) as d:
        page = contexts().new_page()
        join(page, d.http_url, "alice")
        with Crowd(d, ["bob", "carol"]) as crowd:
            crowd.join()
            page.wait_for_selector("#online-count >> text=3")
            assert sorted(page.evaluate(PRESENCE_LINES)) == ["bob joined", "carol joined"]
            crowd.leave()
            page.wait_for_selector("#online-count >> text=1")
            assert sorted(page.evaluate(PRESENCE_LINES)[2:]) == ["bob left", "carol left"]
        assert not [n for n in page.evaluate(NOTICES) if "joined" in n or " left" in n]


def test_messages_show_the_local_time(tmp_path: Path, contexts: Contexts) -> None:
    """A message's time is the server's UTC date shown in the reader's own time zone."""
    with Daemon(tmp_path) as d:
        with ChatClient(d.ws_url, "carol") as carol:
            message = carol.say("what time is it?")
        page = contexts(timezone_id="Asia/Kolkata", locale="en-GB").new_page()
        join(page, d.http_url, "dave")
        time = page.locator(f'#log .msg[data-id="{message["id"]}"] time')
        sent = datetime.fromisoformat(message["date"].replace("Z", "+00:00"))
        local = sent.astimezone(ZoneInfo("Asia/Kolkata"))
        assert time.inner_text() == local.strftime("%H:%M")
        assert time.get_attribute("datetime") == sent.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        # The full date is the tooltip, made when the time is first pointed at.
        time.hover()
        title = time.get_attribute("title") or ""
        assert str(local.year) in title and local.strftime("%H:%M:%S") in title


def test_reload_keeps_the_name_and_rejoins(tmp_path: Path, contexts: Contexts) -> None:
    """A reload rejoins with the remembered name; a new tab offers it in the form."""
    with Daemon(tmp_path) as d:
        context = contexts()
        page = context.new_page()
        avatar = f"{d.http_url}/favicon.svg"
        join(page, d.http_url, "Erin Example", avatar)
        page.reload()
        wait_online(page)
        assert page.locator("#online-list .person-name").all_text_contents() == ["Erin Example"]
        with ChatClient(d.ws_url, "frank") as frank:
            names = [person["name"] for person in frank.welcome["online"]]
            assert sorted(names) == ["Erin Example", "frank"]
        second = context.new_page()
        open_page(second, d.http_url)
        assert second.input_value("#join-name") == "Erin Example"
        assert second.input_value("#join-avatar") == avatar
        assert second.is_visible("#join-form")


def test_enter_sends_and_shift_enter_adds_a_line(tmp_path: Path, contexts: Contexts) -> None:
    """Enter sends the message; Shift+Enter puts a newline into it instead."""
    with Daemon(tmp_path) as d, ChatClient(d.ws_url, "reader") as reader:
        page = contexts().new_page()
        join(page, d.http_url, "writer")
        page.click("#composer-text")
        page.keyboard.type("first line")
        page.keyboard.press("Shift+Enter")
        page.keyboard.type("second line")
        assert page.input_value("#composer-text") == "first line\nsecond line"
        page.keyboard.press("Enter")
        message = reader.expect("message", name="writer")
        assert message["text"] == "first line\nsecond line"
        assert page.input_value("#composer-text") == ""
        wait_for_count(page, 1)
        assert shown(page)[0]["text"] == "first line\nsecond line"


def test_a_taken_name_gets_a_suffix_and_the_page_says_so(
    tmp_path: Path, contexts: Contexts
) -> None:
    """Joining with a name someone online has shows the server's suffixed name and why."""
    with Daemon(tmp_path) as d, ChatClient(d.ws_url, "Alice"):
        page = contexts().new_page()
        join(page, d.http_url, "alice")
        assert page.locator("#log .notice").last.inner_text() == (
            "Someone here is already called alice, so you are alice (2)."
        )
        say(page, "which alice am I?")
        wait_for_count(page, 1)
        assert shown(page)[0]["name"] == "alice (2)" and shown(page)[0]["mine"]
        names = page.locator("#online-list .person-name").all_text_contents()
        assert sorted(names) == ["Alice", "alice (2)"]
