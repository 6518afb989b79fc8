"""Hostile names, avatars and texts render as inert text on the page."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page

from tests.browser.chat import ChatClient, Refused
from tests.browser.conftest import Tracked
from tests.browser.pages import join, say, shown, wait_for_message
from tests.daemon import Daemon

pytestmark = pytest.mark.browser

Contexts = Callable[..., Tracked]

PAYLOADS = [
    line
    for line in (Path(__file__).parent / "xss_payloads.txt").read_text("utf-8").splitlines()
    if line
]
# Port 9 (discard) is one Chromium never connects to: the avatar requests stay inert.
AVATAR_BASE = "http://127.0.0.1:9/avatar/"

# Everything the page itself is made of; anything else in the document was injected.
INSPECT = """
() => {
  const allowedInLog = new Set(["DIV", "P", "SPAN", "IMG", "TIME", "A"]);
  const problems = [];
  for (const node of document.querySelectorAll("*")) {
    for (const attribute of node.attributes) {
      if (attribute.name.startsWith("on")) problems.push(`${node.tagName} has ${attribute.name}`);
      if (attribute.name === "style") problems.push(`${node.tagName} has a style attribute`);
    }
  }
  for (const node of document.querySelectorAll("#log *, #online-list *")) {
    if (!allowedInLog.has(node.tagName) && node.tagName !== "LI") {
      problems.push(`unexpected <${node.tagName.toLowerCase()}> in the page`);
    }
  }
  for (const link of document.querySelectorAll("#log a")) {
    if (!/^https?:$/.test(new URL(link.href).protocol)) problems.push(`link to ${link.href}`);
    if (link.rel !== "noopener noreferrer") problems.push(`link rel ${link.rel}`);
  }
  for (const img of document.querySelectorAll("#log img, #online-list img")) {
    if (!/^https?:$/.test(new URL(img.src).protocol)) problems.push(`image from ${img.src}`);
  }
  for (const id of ["title", "status", "composer-send", "composer-text", "log"]) {
    const count = document.querySelectorAll(`[id="${id}"]`).length;
    if (count !== 1) problems.push(`${count} elements with id ${id}`);
  }
  const counts = {
    scripts: document.scripts.length,
    styles: document.querySelectorAll("style, link[rel~=stylesheet]").length,
    frames: document.querySelectorAll("iframe, frame, object, embed").length,
    forms: document.forms.length,
  };
  return { problems, counts, flag: window.__xss ?? null, title: document.title };
}
"""


def inspect(page: Page) -> dict[str, Any]:
    """What the page's DOM and globals look like after rendering the corpus."""
    result: dict[str, Any] = page.evaluate(INSPECT)
    return result


def assert_inert(page: Page, expected: list[dict[str, Any]], title: str) -> None:
    """No payload ran or became markup, and each shows as exactly its own text."""
    report = inspect(page)
    assert report["flag"] is None, "a payload ran"
    assert report["problems"] == []
    assert report["counts"] == {"scripts": 1, "styles": 1, "frames": 0, "forms": 2}
    assert report["title"] == title
    by_id = {m["id"]: m for m in shown(page)}
    for message in expected:
        rendered = by_id[message["id"]]
        assert (rendered["name"], rendered["text"]) == (message["name"], message["text"])


def test_corpus_renders_as_inert_text(tmp_path: Path, contexts: Contexts) -> None:
    """At least 50 payloads in names, avatars and texts neither run nor inject elements."""
    assert len(PAYLOADS) >= 50
    config = {"title": "Inert room", "max_name_length": 256, "rate_messages": 10_000}
    with Daemon(tmp_path, config=config) as d:
        live = contexts().new_page()
        join(live, d.http_url, "watcher")
        accepted: dict[str, list[dict[str, Any]]] = {"name": [], "avatar": [], "text": []}
        refused: list[tuple[str, str]] = []
        with ChatClient(d.ws_url, "texter") as texter:
            for payload in PAYLOADS:
                avatar = AVATAR_BASE + payload.replace(" ", "%20")
                try:
                    with ChatClient(d.ws_url, payload, avatar=avatar) as client:
                        accepted["name"].append(client.say("my name is a payload"))
                        accepted["avatar"].append(accepted["name"][-1])
                except Refused as error:
                    refused.append((payload, error.frame["code"]))
                try:
                    accepted["text"].append(texter.say(payload))
                except Refused as error:
                    refused.append((payload, error.frame["code"]))
        # The daemon refuses bidi overrides in names and texts (and avatars are
        # URLs without spaces): what it accepts must still be at least 50 of each.
        assert all(len(messages) >= 50 for messages in accepted.values()), refused
        # The page's own composer: what the reader types is shown as typed.
        typed = [p for p in PAYLOADS[:8]]
        for payload in typed:
            say(live, payload)
        everything = accepted["name"] + accepted["text"]
        wait_for_message(live, everything[-1]["id"])
        live.wait_for_function(
            "n => document.querySelectorAll('#log .msg').length >= n",
            arg=len(everything) + len(typed),
        )
        assert [m["text"] for m in shown(live)[-len(typed) :]] == typed
        assert_inert(live, everything, "Inert room")
        # A latecomer gets the same corpus as history (the other rendering path),
        # and joins through the form with a payload as name and in the avatar.
        late = contexts(viewport={"width": 360, "height": 740}).new_page()
        join(late, d.http_url, PAYLOADS[1], AVATAR_BASE + "%22%3E%3Cscript%3Ewindow.__xss=1")
        wait_for_message(late, everything[-1]["id"])
        history = ChatClient(d.ws_url, "auditor")  # a fresh join: the same replay
        with history:
            stored = history.welcome["history"]
        assert_inert(late, stored[-100:], "Inert room")
        assert late.locator("#online-list .person-name").all_text_contents().count(PAYLOADS[1]) == 1
        assert_inert(live, everything, "Inert room")
