"""The daemon over real sockets: every protocol rule, history, limits, legacy clients."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import join, open_client, recv, recv_presence, recv_type, say
from tests.daemon import TIMEOUT
from tests.harness import Running as Daemon
from tests.http import http_get

DATE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


async def test_join_gets_welcome_with_online_list(daemon: Daemon) -> None:
    """A join is answered by a welcome naming you, the room, its title and who is online."""
    ws, welcome = await join(daemon, "alice", "https://example.org/a.png")
    assert welcome["you"] == {"name": "alice", "avatar": "https://example.org/a.png"}
    assert welcome["room"] == "lobby"
    assert welcome["title"] == "pichat"
    assert welcome["online"] == [{"name": "alice", "avatar": "https://example.org/a.png"}]
    assert welcome["history"] == []
    assert welcome["resumed"] is False and welcome["gap"] is False
    assert welcome["limits"]["text"] == 2000
    await ws.close()


async def test_message_reaches_everyone_including_sender(daemon: Daemon) -> None:
    """A say is broadcast to every member, sender included, with server id and date."""
    a, _ = await join(daemon, "alice")
    b, _ = await join(daemon, "bob")
    presence = await recv_presence(a, joined="bob")
    assert presence["count"] == 2 and presence["left"] == []
    assert presence["joined"][-1] == {"name": "bob", "avatar": ""}
    await say(a, "hello")
    got_a = await recv_type(a, "message")
    got_b = await recv_type(b, "message")
    assert got_a == got_b
    assert got_a["text"] == "hello" and got_a["name"] == "alice" and got_a["id"] == 1
    assert DATE.match(got_a["date"])
    await say(b, "hi")
    assert (await recv_type(a, "message"))["id"] == 2
    await a.close()
    await b.close()


async def test_leave_sends_presence_with_count(daemon: Daemon) -> None:
    """When a member leaves, the others get a leave presence with the new count."""
    a, _ = await join(daemon, "alice")
    b, _ = await join(daemon, "bob")
    await recv_presence(a, joined="bob")
    await b.close()
    leave = await recv_presence(a, left="bob")
    assert leave == {"type": "presence", "joined": [], "left": ["bob"], "count": 1}
    await a.close()


async def test_a_burst_of_joins_is_told_in_few_frames(daemon: Daemon) -> None:
    """Joins arriving together are coalesced: fewer presence frames than joins, exact count."""
    watcher, _ = await join(daemon, "watcher")
    await recv_presence(watcher, joined="watcher")
    others = await asyncio.gather(*(join(daemon, f"p{n}") for n in range(30)))
    seen: set[str] = set()
    frames = 0
    while len(seen) < 30:
        frame = await recv_type(watcher, "presence")
        frames += 1
        seen.update(p["name"] for p in frame["joined"])
    assert frame["count"] == 31
    assert frames < 30, "each join got a frame of its own"
    for ws, _ in others:
        await ws.close()
    await watcher.close()


async def test_second_person_with_same_name_gets_unique_name(daemon: Daemon) -> None:
    """Two people online never share a name: the second gets a suffix in you.name."""
    a, _ = await join(daemon, "Sam")
    b, welcome = await join(daemon, "sam")
    assert welcome["you"]["name"] == "sam (2)"
    assert [m["name"] for m in welcome["online"]] == ["Sam", "sam (2)"]
    await a.close()
    await b.close()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "bad_json"),
        ("[1, 2]", "bad_frame"),
        ('{"no": "type"}', "unknown_type"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "say", "text": "hi"}', "not_joined"),
        ('{"type": "join", "name": ""}', "bad_name"),
        ('{"type": "join", "name": "a\\u0007b"}', "bad_name"),
        ('{"type": "join", "name": "' + "x" * 33 + '"}', "name_too_long"),
        ('{"type": "join", "name": "a", "avatar": "javascript:alert(1)"}', "bad_avatar"),
        ('{"type": "join", "name": "a", "since": -1}', "bad_since"),
    ],
)
async def test_bad_frame_before_join_gets_error_and_connection_lives(
    daemon: Daemon, frame: str, code: str
) -> None:
    """Each bad frame gets an error frame with its code, and the connection stays usable."""
    ws = await open_client(daemon)
    await ws.send(frame)
    error = await recv(ws)
    assert error["type"] == "error" and error["code"] == code and error["detail"]
    await ws.send(json.dumps({"type": "join", "name": "ok"}))
    assert (await recv_type(ws, "welcome"))["you"]["name"] == "ok"
    await ws.close()


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("", "empty_text"),
        ("   \n ", "empty_text"),
        ("x" * 2001, "text_too_long"),
        ("bell\u0007", "bad_text"),
        (42, "bad_frame"),
    ],
)
async def test_bad_say_gets_error_and_connection_lives(
    daemon: Daemon, text: Any, code: str
) -> None:
    """Empty, too long or control-character text is refused with its code; the next say works."""
    ws, _ = await join(daemon, "alice")
    await ws.send(json.dumps({"type": "say", "text": text}))
    error = await recv(ws)
    assert error["type"] == "error" and error["code"] == code
    await say(ws, "line one\n\ttabbed line two")
    assert (await recv_type(ws, "message"))["text"] == "line one\n\ttabbed line two"
    await ws.close()


async def test_second_join_is_refused(daemon: Daemon) -> None:
    """A second join on one connection gets already_joined."""
    ws, _ = await join(daemon, "alice")
    await ws.send(json.dumps({"type": "join", "name": "again"}))
    assert (await recv(ws))["code"] == "already_joined"
    await ws.close()


async def test_binary_frame_gets_error(daemon: Daemon) -> None:
    """A binary frame gets binary_frame and the connection stays open."""
    ws, _ = await join(daemon, "alice")
    await ws.send(b"\x00\x01")
    assert (await recv(ws))["code"] == "binary_frame"
    await say(ws, "still here")
    assert (await recv_type(ws, "message"))["text"] == "still here"
    await ws.close()


async def test_frame_over_transport_limit_closes_with_1009(daemon_factory: Any) -> None:
    """A frame over max_frame_bytes closes the connection with code 1009."""
    daemon = await daemon_factory({"max_frame_bytes": 2048})
    ws, _ = await join(daemon, "alice")
    await ws.send(json.dumps({"type": "say", "text": "x" * 4000}))
    with pytest.raises(ConnectionClosed):
        await recv(ws)
    assert ws.close_code == 1009


async def test_rate_limit_gives_retry_after(daemon_factory: Any) -> None:
    """Past rate_messages per rate_window a say gets rate_limited with retry_after."""
    daemon = await daemon_factory({"rate_messages": 3, "rate_window": 30.0})
    ws, _ = await join(daemon, "alice")
    for index in range(3):
        await say(ws, f"m{index}")
        assert (await recv_type(ws, "message"))["text"] == f"m{index}"
    await say(ws, "one too many")
    error = await recv(ws)
    assert error["code"] == "rate_limited"
    assert 0 < error["retry_after"] <= 10.0
    await ws.close()


async def test_history_replays_last_n_messages(daemon_factory: Any) -> None:
    """A fresh join gets the last history_replay messages, oldest first."""
    daemon = await daemon_factory({"history_replay": 3, "rate_messages": 100})
    ws, _ = await join(daemon, "alice")
    for index in range(5):
        await say(ws, f"m{index}")
        await recv_type(ws, "message")
    late, welcome = await join(daemon, "bob")
    assert [m["text"] for m in welcome["history"]] == ["m2", "m3", "m4"]
    assert [m["id"] for m in welcome["history"]] == [3, 4, 5]
    await ws.close()
    await late.close()


async def test_resume_with_since_gets_exactly_the_missed_messages(daemon_factory: Any) -> None:
    """since = last seen id returns exactly the messages after it: no gap, no duplicate."""
    daemon = await daemon_factory({"history_replay": 2, "rate_messages": 100})
    writer, _ = await join(daemon, "writer")
    for index in range(6):
        await say(writer, f"m{index}")
        await recv_type(writer, "message")
    reader, welcome = await join(daemon, "reader", since=2)
    # A page of history_replay messages, the oldest first; the page asks for the rest.
    assert [m["id"] for m in welcome["history"]] == [3, 4]
    assert welcome["resumed"] is True and welcome["gap"] is False and welcome["more"] is True
    await reader.send(json.dumps({"type": "history", "after": 4}))
    page = await recv_type(reader, "history")
    assert [m["id"] for m in page["messages"]] == [5, 6]
    assert page["more"] is False and page["gap"] is False and page["after"] == 4
    up_to_date, welcome = await join(daemon, "third", since=6)
    assert welcome["history"] == [] and welcome["resumed"] is True
    await writer.close()
    await reader.close()
    await up_to_date.close()


async def test_resume_reports_gap_when_retention_dropped_messages(daemon_factory: Any) -> None:
    """When retention already dropped messages after since, gap is true."""
    daemon = await daemon_factory(
        {"history_max_messages": 3, "history_replay": 3, "rate_messages": 100}
    )
    writer, _ = await join(daemon, "writer")
    for index in range(6):
        await say(writer, f"m{index}")
        await recv_type(writer, "message")
    reader, welcome = await join(daemon, "reader", since=1)
    assert [m["id"] for m in welcome["history"]] == [4, 5, 6]
    assert welcome["gap"] is True
    await writer.close()
    await reader.close()


async def test_legacy_client_gets_history_array_and_sees_v1_messages(daemon: Daemon) -> None:
    """An echo-protocol client gets the history as a JSON array of JSON strings, then objects."""
    v1, _ = await join(daemon, "alice", "https://example.org/a.png")
    await say(v1, "<b>bold</b> & more")
    await recv_type(v1, "message")
    legacy = await open_client(daemon, "echo-protocol")
    history = json.loads(await asyncio.wait_for(legacy.recv(), TIMEOUT))
    assert isinstance(history, list) and all(isinstance(item, str) for item in history)
    first = json.loads(history[0])
    assert first["name"] == "alice"
    assert first["message"] == "&lt;b&gt;bold&lt;/b&gt; &amp; more"
    assert first["avatar"] == "https://example.org/a.png"
    assert DATE.match(first["date"])
    await say(v1, "<img src=x onerror=alert(1)>")
    live = await recv(legacy)
    assert set(live) == {"name", "avatar", "message", "date"}
    assert live["message"] == "&lt;img src=x onerror=alert(1)&gt;"
    await v1.close()
    await legacy.close()


async def test_legacy_messages_reach_v1_clients_unescaped(daemon: Daemon) -> None:
    """What a legacy client sends goes to the same room; v1 clients get the raw text."""
    v1, _ = await join(daemon, "alice")
    legacy = await open_client(daemon, "echo-protocol")
    await recv(legacy)  # history
    await legacy.send(json.dumps({"name": "old", "avatar": "", "message": "a < b", "date": 0}))
    message = await recv_type(v1, "message")
    assert (message["name"], message["text"]) == ("old", "a < b")
    echoed = await recv(legacy)
    assert echoed["message"] == "a &lt; b"
    await legacy.send(json.dumps({"name": "", "message": "x"}))
    assert (await recv(legacy))["code"] == "bad_name"
    await v1.close()
    await legacy.close()


async def test_foreign_origin_is_refused_with_403(daemon: Daemon) -> None:
    """A browser Origin of another site gets HTTP 403 at the handshake."""
    with pytest.raises(InvalidStatus) as caught:
        await connect(daemon.ws_url, origin="http://evil.example", open_timeout=TIMEOUT)  # type: ignore[arg-type]
    assert caught.value.response.status_code == 403


async def test_same_host_and_listed_origins_are_accepted(daemon_factory: Any) -> None:
    """The page's own origin and allowed_origins are accepted; no Origin is accepted too."""
    daemon = await daemon_factory({"allowed_origins": ["https://chat.example.org"]})
    own = f"http://127.0.0.1:{daemon.port}"
    for origin in (own, "https://chat.example.org", None):
        ws = await connect(daemon.ws_url, origin=origin, open_timeout=TIMEOUT)  # type: ignore[arg-type]
        await ws.close()


async def test_connection_limits_answer_503(daemon_factory: Any) -> None:
    """Over max_connections the handshake gets HTTP 503; a freed slot is usable again."""
    daemon = await daemon_factory({"max_connections": 2})
    first = await open_client(daemon)
    second = await open_client(daemon)
    with pytest.raises(InvalidStatus) as caught:
        await open_client(daemon)
    assert caught.value.response.status_code == 503
    await first.close()
    await first.wait_closed()
    for _ in range(50):  # the server notices the close asynchronously
        try:
            third = await open_client(daemon)
            break
        except InvalidStatus:
            await asyncio.sleep(0.05)
    else:
        pytest.fail("the freed slot was never reusable")
    await second.close()
    await third.close()


async def test_repeated_host_header_is_a_bad_request(daemon: Daemon) -> None:
    """A handshake with two Host headers gets HTTP 400, not a server error."""
    with pytest.raises(InvalidStatus) as caught:
        await open_client(daemon, additional_headers={"Host": "other.example"})
    assert caught.value.response.status_code == 400


async def test_per_address_limit_answers_503(daemon_factory: Any) -> None:
    """Over max_connections_per_ip from one address the handshake gets HTTP 503."""
    daemon = await daemon_factory({"max_connections_per_ip": 1})
    first = await open_client(daemon)
    with pytest.raises(InvalidStatus) as caught:
        await open_client(daemon)
    assert caught.value.response.status_code == 503
    await first.close()


async def test_sites_pick_room_and_title_by_host(daemon_factory: Any, tmp_path: Any) -> None:
    """The Host header picks a site: its own room, title and history; default for others."""
    root = tmp_path / "other"
    root.mkdir()
    (root / "index.html").write_text("<h1>other site</h1>")
    daemon = await daemon_factory(
        {
            "sites": [
                {
                    "server_names": ["other.example", "*.other.example"],
                    "document_root": str(root),
                    "room": "other",
                    "title": "Other room",
                }
            ]
        }
    )
    other, welcome = await join(daemon, "o", host="www.other.example")
    assert (welcome["room"], welcome["title"]) == ("other", "Other room")
    lobby, welcome = await join(daemon, "l")
    assert welcome["room"] == "lobby"
    await say(other, "in other")
    assert (await recv_type(other, "message"))["text"] == "in other"
    await say(lobby, "in lobby")
    assert (await recv_type(lobby, "message"))["text"] == "in lobby"
    await say(other, "second")
    assert (await recv_type(other, "message"))["text"] == "second"  # not "in lobby"
    site = json.loads(await http_get(daemon, "/site.json", host="OTHER.example:8080"))
    assert (site["title"], site["room"]) == ("Other room", "other")
    page = await http_get(daemon, "/", host="other.example")
    assert "other site" in page
    await other.close()
    await lobby.close()


async def test_a_commit_writes_its_broadcast_before_the_next_loop_turn(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a commit broadcasts reaches the transports as the commit is reported.

    The flush used to wait for the next loop turn; a callback scheduled when
    the commit was reported found the message still queued for every member.
    """
    ws, _ = await join(daemon, "alice")
    chat, outbox = daemon.server.chat, daemon.server.outbox
    loop = asyncio.get_running_loop()
    queued: list[int] = []
    committed = chat.committed

    def watching(batch: Any) -> None:
        loop.call_soon(lambda: queued.append(sum(len(c.pending) for c in outbox.clients)))
        committed(batch)

    monkeypatch.setattr(chat, "committed", watching)
    await say(ws, "hello")
    assert (await recv_type(ws, "message"))["text"] == "hello"
    assert queued == [0]
    await ws.close()
