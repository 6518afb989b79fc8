"""The page as an app in real Chromium: manifest, icons, service worker, offline, notifications.

http://127.0.0.1 is a secure context (a loopback address), so Chromium gives the page
its service worker and notifications over the test daemon's plain http; a
``*.pichat.test`` host name is not one, and there all of it is skipped.
"""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, Playwright, Worker

from tests.browser.chat import ChatClient
from tests.browser.conftest import CHROMIUM, CSP_RECORDER, LAUNCH_ARGS, TEST_DOMAIN, Tracked
from tests.browser.pages import join, open_page, say, wait_for_message, wait_online
from tests.browser.test_reconnect import set_visibility
from tests.daemon import PUBLIC, TIMEOUT, Daemon
from tests.tls import TestCA

pytestmark = pytest.mark.browser

Contexts = Callable[..., Tracked]


def png_size(body: bytes) -> tuple[int, int]:
    """Width and height of a PNG, from its IHDR chunk."""
    assert body[:8] == b"\x89PNG\r\n\x1a\n", "a PNG signature"
    width, height = struct.unpack(">II", body[16:24])
    return width, height


def worker(context: BrowserContext, page: Page) -> Worker:
    """The page's service worker, once it is active and controls the page."""
    page.wait_for_function(
        "async () => (await navigator.serviceWorker.ready)"
        " && navigator.serviceWorker.controller !== null"
    )
    return context.service_workers[0]


@pytest.fixture
def profiles(playwright: Playwright, tmp_path: Path) -> Iterator[Callable[..., Tracked]]:
    """Contexts with a profile on disk, fenced like the others (``args`` adds flags).

    Chromium never offers to install from an off-the-record profile (the contexts
    of ``Browser.new_context`` are), so the installability check needs these; and
    ``--ignore-certificate-errors-spki-list`` is honoured only with a profile.
    """
    made: list[Tracked] = []

    def factory(args: tuple[str, ...] = ()) -> Tracked:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / f"profile-{len(made)}"),
            executable_path=str(CHROMIUM),
            args=[*LAUNCH_ARGS, *args],
            headless=True,
        )
        context.set_default_timeout(TIMEOUT * 1000)
        tracked = Tracked(context)
        context.add_init_script(CSP_RECORDER)
        context.route("**/*", tracked._guard)
        made.append(tracked)
        return tracked

    yield factory
    problems = []
    for tracked in made:
        problems += [f"page error: {error}" for error in tracked.page_errors]
        problems += [f"dialog opened: {dialog}" for dialog in tracked.dialogs]
        for page in tracked.pages:
            if not page.is_closed():
                problems += page.evaluate("window.__cspViolations || []")
        tracked.context.close()
    assert not problems, problems


@pytest.fixture
def profile(profiles: Callable[..., Tracked]) -> Tracked:
    """One context with a profile on disk."""
    return profiles()


def test_manifest_and_icons_make_the_page_installable(tmp_path: Path, profile: Tracked) -> None:
    """Chromium's own installability check passes; the manifest names the site; icons are right."""
    with Daemon(tmp_path, config={"title": "Hallway Pi chat"}) as d:
        tracked = profile
        page = tracked.new_page()
        open_page(page, d.http_url)
        worker(tracked.context, page)
        cdp = tracked.context.new_cdp_session(page)
        assert cdp.send("Page.getInstallabilityErrors")["installabilityErrors"] == []
        manifest = cdp.send("Page.getAppManifest")
        assert manifest["errors"] == [], manifest["errors"]
        data = json.loads(manifest["data"])
        assert data["name"] == "Hallway Pi chat" and data["short_name"] == "Hallway"
        assert data["display"] == "standalone"
        assert data["theme_color"] and data["background_color"]
        response = page.request.get(f"{d.http_url}/manifest.webmanifest")
        assert response.headers["content-type"] == "application/manifest+json"
        sizes = {}
        for icon in data["icons"]:
            got = page.request.get(f"{d.http_url}/{icon['src']}")
            assert got.ok, icon
            assert got.headers["content-type"] == icon["type"]
            if icon["type"] == "image/png":
                width, height = png_size(got.body())
                assert f"{width}x{height}" == icon["sizes"]
                sizes[icon["purpose"]] = sizes.get(icon["purpose"], set()) | {width}
        assert {192, 512} <= sizes["any"] and 512 in sizes["maskable"]
        touch = page.get_attribute("link[rel=apple-touch-icon]", "href")
        assert png_size(page.request.get(f"{d.http_url}/{touch}").body()) == (180, 180)
        themes = page.eval_on_selector_all(
            "meta[name=theme-color]", "nodes => nodes.map(n => n.media)"
        )
        assert sorted(themes) == ["(prefers-color-scheme: dark)", "(prefers-color-scheme: light)"]


def test_the_page_opens_offline_and_reconnects_when_the_pi_is_back(
    tmp_path: Path, contexts: Contexts
) -> None:
    """With the daemon stopped the worker serves the page, which says so and rejoins later."""
    with Daemon(tmp_path, config={"title": "Hallway"}) as d:
        tracked = contexts()
        page = tracked.new_page()
        join(page, d.http_url, "reader")
        worker(tracked.context, page)
        with ChatClient(d.ws_url, "carol") as carol:
            before = carol.say("before the power cut")
        wait_for_message(page, before["id"])
        d.stop()
        page.wait_for_selector("#status[data-state=waiting]")
        page.reload()
        # Nothing answers on the port: what is shown came from the service worker.
        page.wait_for_selector("#status[data-state=waiting]")
        page.wait_for_function(
            "() => document.getElementById('status-text').textContent === 'Offline, retrying'"
        )
        assert page.title() == "Hallway" and page.inner_text("#title") == "Hallway"
        assert page.is_visible("#composer") and page.is_disabled("#composer-send")
        d.start()
        wait_online(page)
        wait_for_message(page, before["id"])
        with ChatClient(d.ws_url, "carol") as carol:
            after = carol.say("the Pi is back")
        wait_for_message(page, after["id"])


def typing_line(page: Page) -> str:
    """What the line above the composer says about who is typing."""
    return page.inner_text("#typing").strip()


def test_typing_in_one_page_shows_in_the_other_until_the_message(
    tmp_path: Path, contexts: Contexts
) -> None:
    """Typing shows "ada is typing…" to the others, once per 3.5 s, and the message hides it."""
    with Daemon(tmp_path) as d:
        ada_context = contexts()
        ada, bob = ada_context.new_page(), contexts().new_page()
        join(ada, d.http_url, "ada")
        join(bob, d.http_url, "bob")
        ada.locator("#composer-text").press_sequentially("hello there, bob")
        bob.wait_for_function("() => document.getElementById('typing').textContent !== ''")
        assert typing_line(bob) == "ada is typing…"
        assert typing_line(ada) == ""
        typing = [f for f in ada_context.sent if json.loads(f).get("type") == "typing"]
        assert len(typing) == 1, "one frame for a burst of keystrokes"
        ada.press("#composer-text", "Enter")
        wait_for_message(bob, 1)
        assert typing_line(bob) == ""


def test_the_page_sends_typing_again_only_after_its_interval(
    tmp_path: Path, contexts: Contexts
) -> None:
    """Typing on and on sends one frame per 3.5 s of the page's clock, none for an empty box."""
    with Daemon(tmp_path) as d:
        tracked = contexts()
        page = tracked.new_page()
        page.clock.install()
        join(page, d.http_url, "ada")
        # Frozen: only the test moves the page's time.
        page.clock.pause_at(page.evaluate("Date.now()") + 1000)

        def frames() -> int:
            return sum(1 for f in tracked.sent if json.loads(f).get("type") == "typing")

        box = page.locator("#composer-text")
        box.press_sequentially("abc")
        assert frames() == 1
        page.clock.run_for(3_400)
        box.press_sequentially("def")
        assert frames() == 1
        page.clock.run_for(200)
        box.press_sequentially("g")
        page.wait_for_function("() => true")
        assert frames() == 2
        page.clock.run_for(4_000)
        page.fill("#composer-text", "")
        page.fill("#composer-text", "   ")
        assert frames() == 2, "clearing the box or white space is not typing"


def test_typing_disappears_without_new_frames_and_counts_people(
    tmp_path: Path, contexts: Contexts
) -> None:
    """A name goes after 5 s without a frame; three typists are "3 people are typing…"."""
    with Daemon(tmp_path) as d:
        page = contexts().new_page()
        page.clock.install()
        join(page, d.http_url, "reader")
        with (
            ChatClient(d.ws_url, "Ada") as ada,
            ChatClient(d.ws_url, "Bob") as bob,
            ChatClient(d.ws_url, "Cy") as cy,
        ):
            ada.send({"type": "typing"})
            page.wait_for_function("() => document.getElementById('typing').textContent !== ''")
            assert typing_line(page) == "Ada is typing…"
            bob.send({"type": "typing"})
            page.wait_for_function(
                "() => /Bob/.test(document.getElementById('typing').textContent)"
            )
            assert typing_line(page) == "Ada and Bob are typing…"
            cy.send({"type": "typing"})
            page.wait_for_function(
                "() => /3 people/.test(document.getElementById('typing').textContent)"
            )
            assert typing_line(page) == "3 people are typing…"
            page.clock.run_for(5_100)
            page.wait_for_function("() => document.getElementById('typing').textContent === ''")
            cy.send({"type": "typing"})  # under 3 s after Cy's last: the server drops it
            bye = ada.say("bye")
            wait_for_message(page, bye["id"])
            assert typing_line(page) == ""


def test_mentions_are_highlighted_and_at_offers_the_names_online(
    tmp_path: Path, contexts: Contexts
) -> None:
    """@you stands out more than @someone-else; `@` lists who is online, keyboard and touch."""
    with Daemon(tmp_path) as d:
        page = contexts(has_touch=True).new_page()
        join(page, d.http_url, "reader")
        with ChatClient(d.ws_url, "Ada Lovelace") as ada, ChatClient(d.ws_url, "bob") as bob:
            page.wait_for_function(
                "() => document.getElementById('online-count').textContent === '3'"
            )
            message = ada.say("@reader look, and @bob (ada@example.org is not one) @Ada Lovelace")
            wait_for_message(page, message["id"])
            item = page.locator(f'#log .msg[data-id="{message["id"]}"]')
            assert item.get_attribute("class") is not None
            assert "mentions-me" in (item.get_attribute("class") or "")
            assert item.locator(".mention-me").all_inner_texts() == ["@reader"]
            assert item.locator(".mention").all_inner_texts() == [
                "@reader",
                "@bob",
                "@Ada Lovelace",
            ]
            box = page.locator("#composer-text")
            box.press_sequentially("hi @")
            page.wait_for_selector("#suggest:not([hidden])")
            assert page.locator("#suggest [role=option]").all_inner_texts() == [
                "Ada Lovelace",
                "bob",
            ]
            box.press_sequentially("b")
            assert page.locator("#suggest [role=option]").all_inner_texts() == ["bob"]
            box.press("Enter")
            assert box.input_value() == "hi @bob "
            assert page.is_hidden("#suggest")
            box.press_sequentially("and @")
            box.press("ArrowDown")
            box.press("ArrowDown")
            assert page.get_attribute("#composer-text", "aria-activedescendant") == "suggest-0"
            page.locator("#suggest [role=option]", has_text="Ada Lovelace").tap()
            assert box.input_value() == "hi @bob and @Ada Lovelace "
            assert page.evaluate("document.activeElement.id") == "composer-text"
            box.press("Enter")
            sent = bob.expect("message", name="reader")
            assert sent["text"] == "hi @bob and @Ada Lovelace "


NOTIFICATIONS = """
async () => (await self.registration.getNotifications()).map(
  (n) => ({ title: n.title, body: n.body, tag: n.tag, data: n.data })
)
"""


def test_a_mention_while_hidden_notifies_and_the_notification_leads_to_it(
    tmp_path: Path, contexts: Contexts
) -> None:
    """Opted in: a mention in a hidden page is a system notification; its click shows it."""
    with Daemon(tmp_path, config={"title": "Hallway"}) as d:
        tracked = contexts()
        tracked.context.grant_permissions(["notifications"], origin=d.http_url)
        page = tracked.new_page()
        join(page, d.http_url, "reader")
        sw = worker(tracked.context, page)
        page.click("#settings > summary")
        page.check("#notify-mentions")
        assert page.evaluate("localStorage.getItem('pichat.notify.mentions')") == "1"
        assert not page.is_checked("#notify-all")
        with ChatClient(d.ws_url, "carol") as carol:
            visible = carol.say("@reader while you look")
            wait_for_message(page, visible["id"])
            set_visibility(page, "hidden")
            other = carol.say("not about you")
            mention = carol.say("@reader are you there?")
            wait_for_message(page, mention["id"])
            sw.evaluate("() => new Promise((done) => setTimeout(done, 0))")
            page.wait_for_function("() => document.title.startsWith('(2)')")
            shown_now = sw.evaluate(NOTIFICATIONS)
            assert shown_now == [
                {
                    "title": "carol mentioned you",
                    "body": "@reader are you there?",
                    "tag": f"pichat-{mention['id']}",
                    "data": {"id": mention["id"]},
                }
            ], f"none for {visible['id']} (visible) or {other['id']} (no mention)"
            # What a click on it does (a click cannot be made headless): the worker's handler.
            sw.evaluate(f"() => focusMessage({{ id: {mention['id']} }})")
            page.wait_for_function(
                "(id) => document.activeElement.dataset.id === String(id)", arg=mention["id"]
            )
            # Every message, on this device, when asked for.
            page.check("#notify-all")
            plain = carol.say("just chatting")
            wait_for_message(page, plain["id"])
            page.wait_for_function(
                "async () => (await navigator.serviceWorker.ready)"
                ".getNotifications().then((shown) => shown.length === 2)"
            )


def test_notifications_ask_permission_only_on_the_click_and_say_when_blocked(
    tmp_path: Path, contexts: Contexts
) -> None:
    """Loading and joining ask nothing; a refused permission unticks the box and says why."""
    with Daemon(tmp_path) as d:
        tracked = contexts()
        page = tracked.new_page()
        join(page, d.http_url, "reader")
        assert page.evaluate("Notification.permission") == "default", "nothing asked on load"
        # Headless Chromium answers a permission request it was not granted with a refusal.
        page.click("#settings > summary")
        page.check("#notify-mentions", force=True)
        page.wait_for_function("() => !document.getElementById('notify-mentions').checked")
        assert "blocked" in page.inner_text("#notify-hint")
        assert page.evaluate("localStorage.getItem('pichat.notify.mentions')") is None
        # The settings close like a menu: Escape (focus back on the bell), or a click elsewhere.
        page.press("#notify-all", "Escape")
        assert page.evaluate("document.getElementById('settings').open") is False
        assert page.evaluate("document.activeElement.tagName") == "SUMMARY"
        page.click("#settings > summary")
        page.click("#log")
        assert page.evaluate("document.getElementById('settings').open") is False


def test_new_since_you_left_divider_after_a_hidden_period(
    tmp_path: Path, contexts: Contexts
) -> None:
    """Back from the background, a line marks the first message that came meanwhile."""
    with Daemon(tmp_path, config={"rate_messages": 1000}) as d:
        page = contexts(viewport={"width": 360, "height": 740}).new_page()
        join(page, d.http_url, "reader")
        with ChatClient(d.ws_url, "carol") as carol:
            seen = carol.say("seen before leaving")
            wait_for_message(page, seen["id"])
            assert page.locator(".unread-divider").count() == 0
            set_visibility(page, "hidden")
            first = carol.say("first while away")
            for n in range(12):
                last = carol.say(f"more while away {n}")
            wait_for_message(page, last["id"])
            set_visibility(page, "visible")
            following = page.evaluate(
                "() => document.querySelector('.unread-divider').nextElementSibling.dataset.id"
            )
            assert following == str(first["id"])
            assert page.inner_text(".unread-divider") == "New since you left"
            # On screen, not scrolled past.
            box = page.locator(".unread-divider").bounding_box()
            log = page.locator("#log").bounding_box()
            assert box is not None and log is not None and box["y"] >= log["y"]
            later = carol.say("said after the return")
            wait_for_message(page, later["id"])
            assert page.locator(".unread-divider").count() == 1
            # A phone drops the socket in the background: the resume's messages count too.
            set_visibility(page, "hidden")
        d.kill()
        page.wait_for_selector("#status[data-state=waiting]")
        d.start()
        with ChatClient(d.ws_url, "carol") as carol:
            missed = carol.say("missed while the socket was gone")
        set_visibility(page, "visible")
        wait_for_message(page, missed["id"])
        following = page.evaluate(
            "() => document.querySelector('.unread-divider').nextElementSibling.dataset.id"
        )
        assert following == str(missed["id"])
        assert page.locator(".unread-divider").count() == 1


STANDALONE = """
// What a page opened from the home screen sees (headless Chromium cannot be an app).
const realMatchMedia = window.matchMedia.bind(window);
window.matchMedia = (query) => {
  const real = realMatchMedia(query);
  return query === "(display-mode: standalone)" ? { ...real, matches: true } : real;
};
"""


def test_the_installed_app_joins_at_once_with_the_remembered_name(
    tmp_path: Path, contexts: Contexts
) -> None:
    """Opened from the home screen (a new session), the app goes straight into the room."""
    with Daemon(tmp_path) as d:
        tracked = contexts()
        page = tracked.new_page()
        join(page, d.http_url, "returning")
        page.click("#leave")
        tab = tracked.context.new_page()
        open_page(tab, d.http_url)
        assert tab.is_visible("#join-form"), "a browser tab shows the form"
        tab.close()
        tracked.context.add_init_script(STANDALONE)
        app = tracked.new_page()
        app.goto(d.http_url)
        wait_online(app)
        assert app.locator("#online-list .person-name").all_inner_texts() == ["returning"]


def test_plain_http_to_a_host_name_skips_all_of_it(tmp_path: Path, contexts: Contexts) -> None:
    """Not a secure context: no worker, no notification settings, and the chat works."""
    with Daemon(tmp_path) as d:
        url = f"http://chat.{TEST_DOMAIN}:{d.port}"
        tracked = contexts()
        page = tracked.new_page()
        join(page, url, "plain")
        assert page.evaluate("window.isSecureContext") is False
        assert page.is_hidden("#settings")
        say(page, "still works")
        wait_for_message(page, 1)
        assert page.evaluate("navigator.serviceWorker === undefined")
        assert tracked.context.service_workers == []
        assert not any(url.endswith("/sw.js") for url in tracked.requests)


CACHES = "async () => (await caches.keys()).filter((name) => name.startsWith('pichat-'))"


def test_an_upgrade_replaces_every_file_on_the_next_visit(
    tmp_path: Path, contexts: Contexts
) -> None:
    """Changed files make a new worker and cache; the next visit runs only the new files."""
    root = tmp_path / "site"
    shutil.copytree(PUBLIC, root)
    with Daemon(tmp_path, config={"document_root": str(root)}) as d:
        tracked = contexts()
        page = tracked.new_page()
        join(page, d.http_url, "reader")
        worker(tracked.context, page)
        old = page.evaluate(CACHES)
        assert len(old) == 1
        # An upgrade of the package: new files in the document root.
        style = root / "style.css"
        style.write_text(style.read_text() + "\n:root { --upgraded: 1; }\n")
        script = root / "js" / "typing.js"
        script.write_text(script.read_text() + "\nexport const UPGRADED = true;\n")
        # The page on screen is joined: it is not reloaded under the reader's eyes.
        page.evaluate("async () => (await navigator.serviceWorker.ready).update()")
        page.wait_for_function(
            "async () => (await navigator.serviceWorker.getRegistration()).waiting !== null"
        )
        assert len(page.evaluate(CACHES)) == 2, "the old version serves until the switch"
        assert page.evaluate("() => document.getElementById('status').dataset.state") == "online"
        # The next visit takes the new version: it reloads once, before anything is typed.
        page.reload()
        page.wait_for_function(
            "() => getComputedStyle(document.documentElement)"
            ".getPropertyValue('--upgraded').trim() === '1'"
        )
        wait_online(page)
        new = page.evaluate(CACHES)
        assert len(new) == 1 and new != old
        assert page.evaluate("async () => (await import('./js/typing.js')).UPGRADED === true"), (
            "the scripts are the new ones too"
        )
        # The cache the worker serves from holds the new files, not a mix.
        body = page.evaluate(
            "async (name) => (await (await caches.open(name)).match('style.css')).text()", new[0]
        )
        assert "--upgraded" in body


PHONE = {"width": 360, "height": 740}


def test_phone_screenshots_of_the_app(tmp_path: Path, contexts: Contexts, artifacts: Path) -> None:
    """The app on a phone: a mention, the divider, who is typing, the @ list, and offline."""
    with Daemon(tmp_path, config={"title": "Hallway Pi", "rate_messages": 100}) as d:
        tracked = contexts(viewport=PHONE, has_touch=True, is_mobile=True)
        page = tracked.new_page()
        with (
            ChatClient(d.ws_url, "Ada Lovelace") as ada,
            ChatClient(d.ws_url, "grace") as grace,
        ):
            ada.say("Morning! The Pi in the hall is back online.")
            join(page, d.http_url, "Pi admin")
            worker(tracked.context, page)
            say(page, "Every message, checked by id.")
            ada.expect("message", name="Pi admin")
            set_visibility(page, "hidden")
            grace.say("@Pi admin did the history survive the power cut?")
            last = ada.say("It did, @grace: nothing lost, nothing twice.")
            wait_for_message(page, last["id"])
            set_visibility(page, "visible")
            ada.send({"type": "typing"})
            page.wait_for_function("() => document.getElementById('typing').textContent !== ''")
            page.screenshot(path=str(artifacts / "screenshot-app.png"))
            grace.send({"type": "typing"})
            page.wait_for_function(
                "() => / and /.test(document.getElementById('typing').textContent)"
            )
            page.locator("#composer-text").press_sequentially("Thanks @")
            page.wait_for_selector("#suggest:not([hidden])")
            page.screenshot(path=str(artifacts / "screenshot-typing.png"))
        page.fill("#composer-text", "")
        d.stop()
        page.reload()
        page.wait_for_function(
            "() => document.getElementById('status-text').textContent === 'Offline, retrying'"
        )
        page.screenshot(path=str(artifacts / "screenshot-offline.png"))


def test_over_https_on_a_host_name_the_app_installs_and_opens_offline(
    tmp_path: Path, profiles: Callable[..., Tracked]
) -> None:
    """As on a real Pi (https://chat.…, the daemon's own TLS): installable, offline, back."""
    ca = TestCA(tmp_path / "ca")
    host = f"chat.{TEST_DOMAIN}"
    certificate, key = ca.issue("pichat", dns=(host,))
    config = {"tls_certificate": str(certificate), "tls_private_key": str(key), "title": "Chat"}
    # Trusted: that one key only, never a blanket ignore of certificate errors.
    tracked = profiles((f"--ignore-certificate-errors-spki-list={TestCA.spki_hash(certificate)}",))
    with Daemon(tmp_path, config=config) as d:
        url = f"https://{host}:{d.port}/"
        page = tracked.new_page()
        join(page, url, "secure")
        assert page.evaluate("window.isSecureContext") is True
        worker(tracked.context, page)
        cdp = tracked.context.new_cdp_session(page)
        assert cdp.send("Page.getInstallabilityErrors")["installabilityErrors"] == []
        assert page.is_visible("#settings")
        d.stop()
        page.reload()
        page.wait_for_function(
            "() => document.getElementById('status-text').textContent === 'Offline, retrying'"
        )
        d.start()
        wait_online(page)
        say(page, "back over wss")
        wait_for_message(page, 1)
