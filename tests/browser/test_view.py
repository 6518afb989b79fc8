"""The page's rendering module (public/js/view.js) on its own, in the real browser."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import Page

from tests.browser.conftest import Tracked
from tests.daemon import Daemon

pytestmark = pytest.mark.browser

Contexts = Callable[..., Tracked]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One daemon serving the page for this module's tests."""
    with Daemon(tmp_path_factory.mktemp("view")) as d:
        yield d


@pytest.fixture
def page(daemon: Daemon, contexts: Contexts) -> Page:
    """The chat page, loaded from a real daemon but not joined."""
    page = contexts().new_page()
    page.goto(daemon.http_url)
    page.wait_for_selector("#join-name:focus")
    return page


def run(page: Page, body: str, arg: Any = None) -> Any:
    """Run ``body`` with the view module as ``view`` and ``arg`` as ``arg``."""
    return page.evaluate(
        f"""async (arg) => {{
          const view = await import("./js/view.js");
          {body}
        }}""",
        arg,
    )


def test_log_draws_each_id_once_in_id_order(page: Page) -> None:
    """Duplicates are dropped and late or shuffled messages still land in id order."""
    ids = run(
        page,
        """
        const log = document.createElement("div");
        document.body.append(log);
        const logView = new view.LogView(log, document.createElement("button"));
        const date = "2026-01-01T00:00:00.000Z";
        const m = (id) => ({ id, name: "n", avatar: "", date, text: `t${id}` });
        const added = [];
        added.push(logView.addMessages([m(5), m(3), m(4)]).length);
        added.push(logView.addMessages([m(4), m(5), m(6)]).length);
        added.push(logView.addMessages([m(1)]).length);
        logView.addPresence("join", "x");
        added.push(logView.addMessages([m(2), m(6), m(7)]).length);
        const ids = Array.from(log.querySelectorAll(".msg"), (n) => Number(n.dataset.id));
        return { added, ids };
        """,
    )
    assert ids == {"added": [3, 1, 1, 2], "ids": [1, 2, 3, 4, 5, 6, 7]}


LINK_CASES = [
    ("see https://example.org/a.", ["https://example.org/a"], "see https://example.org/a."),
    ("(http://example.org/x)", ["http://example.org/x"], "(http://example.org/x)"),
    ("javascript:alert(1) and ftp://x/", [], "javascript:alert(1) and ftp://x/"),
    (
        'https://example.org/"onmouseover="x',
        ["https://example.org/"],
        'https://example.org/"onmouseover="x',
    ),
    (
        "two http://a.example/ http://b.example/!",
        ["http://a.example/", "http://b.example/"],
        "two http://a.example/ http://b.example/!",
    ),
    ("no links <b>here</b>", [], "no links <b>here</b>"),
]

INITIALS_CASES = [
    ("alice", "A"),
    ("Ada Lovelace", "AL"),
    ("jean-luc picard", "JL"),
    ("émile zola", "ÉZ"),
    ("🙂 smile", "🙂S"),
    ("   ", "?"),
]


def test_links_are_built_safely(page: Page) -> None:
    """Only http(s) URLs become links, trailing punctuation stays text, nothing else changes."""
    for text, links, shown in LINK_CASES:
        result = run(
            page,
            """
            const holder = document.createElement("p");
            holder.append(view.linkify(arg));
            return {
              links: Array.from(holder.querySelectorAll("a"), (a) => a.getAttribute("href")),
              rels: Array.from(holder.querySelectorAll("a"), (a) => a.rel),
              elements: holder.querySelectorAll("*").length,
              text: holder.textContent,
            };
            """,
            text,
        )
        assert result == {
            "links": links,
            "rels": ["noopener noreferrer"] * len(links),
            "elements": len(links),
            "text": shown,
        }, text


def test_initials(page: Page) -> None:
    """Initials are the first letters of the first two words, whole characters, upper case."""
    names = [name for name, _ in INITIALS_CASES]
    got = run(page, "return arg.map((name) => view.initials(name));", names)
    assert got == [expected for _, expected in INITIALS_CASES]


def test_broken_avatar_becomes_initials(page: Page) -> None:
    """An avatar picture that fails to load is replaced by the initials badge."""
    result = run(
        page,
        """
        const holder = document.createElement("div");
        document.body.append(holder);
        holder.append(view.avatar(location.origin + "/no-such-picture.png", "Zed Zero"));
        await new Promise((resolve) => {
          const check = () =>
            holder.querySelector(".avatar-initials") ? resolve() : setTimeout(check, 20);
          check();
        });
        return holder.innerHTML.includes("<img") ? "img" : holder.textContent;
        """,
    )
    assert result == "ZZ"
