"""The page as a whole: its origin, its look, its title per site, its composer."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Page

from tests.browser.chat import ChatClient
from tests.browser.conftest import TEST_DOMAIN, Tracked
from tests.browser.pages import join, say, shown, wait_for_count, wait_for_message
from tests.daemon import PUBLIC, Daemon

pytestmark = pytest.mark.browser

Contexts = Callable[..., Tracked]
FIXTURES = Path(__file__).parent / "fixtures"
PHONE = {"width": 360, "height": 740}
DESKTOP = {"width": 1280, "height": 800}


def site_with_avatars(tmp_path: Path) -> Path:
    """A document root: the repository's page plus two avatar pictures under /avatars/."""
    root = tmp_path / "site"
    shutil.copytree(PUBLIC, root)
    shutil.copytree(FIXTURES / "avatars", root / "avatars")
    return root


@contextmanager
def conversation(d: Daemon, page: Page) -> Iterator[None]:
    """A small, realistic conversation, the page's user taking part; the others stay online."""
    with (
        ChatClient(d.ws_url, "Ada Lovelace", avatar=f"{d.http_url}/avatars/ada.svg") as ada,
        ChatClient(d.ws_url, "grace") as grace,
    ):
        ada.say("Morning! The Pi in the hall is back online.")
        grace.say("Nice. Did the history survive the power cut?")
        join(page, d.http_url, "Pi admin", f"{d.http_url}/avatars/pi.svg")
        say(page, "Every message, checked by id. Notes: https://example.org/pichat/notes.")
        ada.expect("message", name="Pi admin")
        # A broken picture falls back to initials.
        with ChatClient(d.ws_url, "Linus T", avatar=f"{d.http_url}/avatars/missing.png") as linus:
            linus.say("Could we get a dark mode?\nMy eyes at 2 am would say thanks.")
            last = grace.say("It follows your system's setting already.")
            wait_for_message(page, last["id"])
            yield


def test_page_requests_nothing_from_other_origins(tmp_path: Path, contexts: Contexts) -> None:
    """A whole session (load, join, chat, links, avatars, reload) stays on the daemon's origin."""
    with Daemon(tmp_path, config={"document_root": str(site_with_avatars(tmp_path))}) as d:
        tracked = contexts()
        page = tracked.new_page()
        with conversation(d, page):
            page.wait_for_load_state("networkidle")
        page.reload()
        wait_for_count(page, 5)
        page.wait_for_load_state("networkidle")
        assert page.locator("#log a.msg-link").count() == 1
        assert tracked.blocked == []
        assert tracked.requests, "no request was recorded"
        others = [url for url in tracked.requests if not url.startswith(d.http_url + "/")]
        assert others == []
        assert tracked.websockets and set(tracked.websockets) == {d.ws_url}
        assert f"{d.http_url}/avatars/ada.svg" in tracked.requests
        # A picture that loads is shown; a broken one and none at all become initials.
        avatars = page.evaluate(
            """() => Object.fromEntries(Array.from(document.querySelectorAll("#log .msg"), (m) => {
                 const avatar = m.querySelector(".avatar");
                 return [m.querySelector(".msg-name").textContent,
                         `${avatar.tagName} ${avatar.textContent}`];
               }))"""
        )
        assert avatars == {
            "Ada Lovelace": "IMG ",
            "grace": "SPAN G",
            "Pi admin": "IMG ",
            "Linus T": "SPAN LT",
        }


@pytest.mark.parametrize(
    ("name", "viewport", "scheme"),
    [
        ("phone", PHONE, "light"),
        ("desktop", DESKTOP, "light"),
        ("phone-dark", PHONE, "dark"),
        ("desktop-dark", DESKTOP, "dark"),
    ],
)
def test_screenshot(
    tmp_path: Path,
    contexts: Contexts,
    artifacts: Path,
    name: str,
    viewport: dict[str, int],
    scheme: str,
) -> None:
    """The page renders a conversation readably at 360x740 and at 1280x800, light and dark."""
    root = site_with_avatars(tmp_path)
    with Daemon(tmp_path, config={"title": "Hallway Pi", "document_root": str(root)}) as d:
        page = contexts(viewport=viewport, color_scheme=scheme).new_page()
        with conversation(d, page):
            page.wait_for_load_state("networkidle")
            page.wait_for_function(
                "() => document.getElementById('online-count').textContent === '4'"
            )
            # Nothing sticks out sideways at this width, and the composer is on screen.
            assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
            composer_box = page.locator("#composer").bounding_box()
            assert composer_box is not None
            assert composer_box["y"] + composer_box["height"] <= viewport["height"]
            assert [m["name"] for m in shown(page)][-1] == "grace"
            background = page.evaluate("getComputedStyle(document.body).backgroundColor")
            red = int(background.split("(")[1].split(",")[0])
            assert (red < 64) if scheme == "dark" else (red > 192), background
            page.screenshot(path=str(artifacts / f"screenshot-{name}.png"))


def test_title_comes_from_the_site(tmp_path: Path, contexts: Contexts) -> None:
    """Each virtual host's page carries that site's title, in the tab and in the heading."""
    sites = [{"server_names": [f"kitchen.{TEST_DOMAIN}"], "title": "Kitchen", "room": "kitchen"}]
    with Daemon(tmp_path, config={"title": "Hallway", "sites": sites}) as d:
        for host, title in ((f"kitchen.{TEST_DOMAIN}", "Kitchen"), ("127.0.0.1", "Hallway")):
            page = contexts().new_page()
            join(page, f"http://{host}:{d.port}/", "cook")
            assert page.title() == title
            assert page.inner_text("#title") == title
            assert page.get_attribute("#log", "aria-labelledby") == "title"


def test_server_errors_are_shown_in_words(tmp_path: Path, contexts: Contexts) -> None:
    """A rate-limit answer is explained and the unsent text is given back."""
    with Daemon(tmp_path, config={"rate_messages": 2, "rate_window": 60.0}) as d:
        page = contexts().new_page()
        join(page, d.http_url, "chatty")
        say(page, "one")
        say(page, "two")
        wait_for_count(page, 2)
        say(page, "three")
        page.wait_for_selector("#composer-error:not(:empty)")
        assert page.inner_text("#composer-error").startswith("You are sending too fast. Wait ")
        assert page.input_value("#composer-text") == "three"
        assert [m["text"] for m in shown(page)] == ["one", "two"]


def test_name_refused_by_the_server_returns_to_the_form(tmp_path: Path, contexts: Contexts) -> None:
    """A remembered name the room no longer accepts brings back the form with the reason."""
    with Daemon(tmp_path, config={"max_name_length": 8}) as d:
        context = contexts()
        page = context.new_page()
        page.goto(d.http_url)
        page.evaluate(
            """() => {
              localStorage.setItem("pichat.name", "a name far too long for this room");
              sessionStorage.setItem("pichat.joined", "1");
            }"""
        )
        page.reload()
        page.wait_for_selector("#join-error:not(:empty)")
        assert page.inner_text("#join-error") == "That name is too long: at most 8 characters."
        assert page.is_visible("#join-form")
        assert page.evaluate("document.activeElement.id") == "join-name"


def test_counter_follows_the_servers_limit(tmp_path: Path, contexts: Contexts) -> None:
    """The character counter shows the site's limit and an over-long text is not sent."""
    with Daemon(tmp_path, config={"max_message_length": 20}) as d:
        page = contexts().new_page()
        join(page, d.http_url, "counter")
        assert page.inner_text("#composer-count") == "0 / 20"
        page.fill("#composer-text", "🙂" * 5)
        assert page.inner_text("#composer-count") == "5 / 20"
        page.fill("#composer-text", "x" * 21)
        assert page.inner_text("#composer-count") == "21 / 20"
        assert page.get_attribute("#composer-text", "aria-invalid") == "true"
        page.press("#composer-text", "Enter")
        assert page.inner_text("#composer-error") == (
            "That message is too long: at most 20 characters."
        )
        assert page.input_value("#composer-text") == "x" * 21
        page.fill("#composer-text", "x" * 20)
        page.press("#composer-text", "Enter")
        wait_for_count(page, 1)


def test_log_follows_new_messages_unless_scrolled_up(tmp_path: Path, contexts: Contexts) -> None:
    """At the bottom the log follows; scrolled up it stays put and offers a button down."""
    with Daemon(tmp_path, config={"rate_messages": 10_000}) as d:
        with ChatClient(d.ws_url, "talker") as talker:
            for number in range(60):
                talker.say(f"backlog {number}")
            page = contexts(viewport=PHONE).new_page()
            join(page, d.http_url, "reader")
            at_bottom = "() => { const l = document.getElementById('log');"
            at_bottom += " return l.scrollHeight - l.scrollTop - l.clientHeight < 2; }"
            assert page.evaluate(at_bottom)
            wait_for_message(page, talker.say("follow me")["id"])
            assert page.evaluate(at_bottom)
            page.hover("#log")
            page.mouse.wheel(0, -100_000)
            page.wait_for_function("() => document.getElementById('log').scrollTop < 100")
            top = page.evaluate("document.getElementById('log').scrollTop")
            wait_for_message(page, talker.say("you scrolled up")["id"])
            assert page.evaluate("document.getElementById('log').scrollTop") == top
            assert page.inner_text("#new-messages") == "1 new message ↓"
            page.click("#new-messages")
            assert page.evaluate(at_bottom)
            assert page.is_hidden("#new-messages")


def test_keyboard_only_visitor_can_join_and_send(tmp_path: Path, contexts: Contexts) -> None:
    """Tab, typing and Enter are enough to join and send, with a visible focus ring."""
    with Daemon(tmp_path) as d:
        page = contexts().new_page()
        page.goto(d.http_url)
        page.wait_for_selector("#join-name:focus")
        page.keyboard.type("keys only")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == "join-avatar"
        outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert outline != "none"
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == "join-submit"
        page.keyboard.press("Enter")
        page.wait_for_selector("#status[data-state=online]")
        assert page.evaluate("document.activeElement.id") == "composer-text"
        page.keyboard.type("sent without a mouse")
        page.keyboard.press("Enter")
        wait_for_count(page, 1)
        labels = page.evaluate(
            """() => Array.from(document.querySelectorAll("input, textarea"),
                 (field) => field.labels.length)"""
        )
        assert labels and all(count == 1 for count in labels)
