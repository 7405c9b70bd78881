"""What reaches the terminal: text a peer chose (an agent string, a message, a MIME type) is
shown with its control, bidi and zero-width characters escaped, ``--json`` stays exact, and
authors are shown with enough of their peer ID to tell them apart. 127.0.0.1 only."""

from __future__ import annotations

import base64
import sys
import unicodedata
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from cli.nodes import STEP_TIMEOUT, ok
from p2pchat.app.control import open_control
from p2pchat.app.daemon import Daemon, NodeOptions, open_daemon
from p2pchat.cli.render import PEER_LABEL_CHARS, PeerLabels, format_message, short_peer
from p2pchat.cli.sanitize import terminal_text
from p2pchat.identity import KeyPair
from p2pchat.multiaddr import Multiaddr
from p2pchat.net.host import HostConfig, open_host

pytestmark = pytest.mark.timeout(60)

LOOPBACK = (Multiaddr.from_string("/ip4/127.0.0.1/tcp/0"),)
#: What the security review sent: retitle the terminal window, then clear the screen.
EVIL = "\x1b]0;PWNED\x07\x1b[2J"
SHOWN = "\\x1b]0;PWNED\\x07\\x1b[2J"


def assert_inert(text: str) -> None:
    """Nothing in ``text`` can drive a terminal: no C0 (but newline and tab) or C1 control,
    no bidi or zero-width format character."""
    bad = [
        c
        for c in text
        if c not in "\n\t" and unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp")
    ]
    assert bad == [], bad


# -- the sanitiser ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (EVIL, SHOWN),
        ("csi \x9b2J", "csi \\x9b2J"),
        ("bell\x07 del\x7f nul\x00 cr\r", "bell\\x07 del\\x7f nul\\x00 cr\\x0d"),
        ("admin\u202egpj.exe", "admin\\u202egpj.exe"),
        ("al\u200bice", "al\\u200bice"),
        ("tag\U000e0041", "tag\\U000e0041"),
        ("two\nlines\tand a tab", "two\\x0alines\\x09and a tab"),
        ("caf\u00e9 \u4e2d\u6587 \U0001f600", "caf\u00e9 \u4e2d\u6587 \U0001f600"),
    ],
)
def test_a_one_line_value_shows_what_could_drive_the_terminal_as_escapes(
    raw: str, shown: str
) -> None:
    out = terminal_text(raw)
    assert_inert(out)
    assert "\n" not in out
    assert "\t" not in out
    assert out == shown


def test_a_message_body_keeps_newlines_tabs_and_emoji_joiners() -> None:
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    assert terminal_text(f"one\n\ttwo {family}", multiline=True) == f"one\n\ttwo {family}"
    assert terminal_text(f"x{EVIL}\u2028y", multiline=True) == f"x{SHOWN}\\u2028y"


def test_every_control_and_format_character_is_escaped() -> None:
    unsafe = [
        chr(c)
        for c in range(sys.maxunicode + 1)
        if unicodedata.category(chr(c)) in ("Cc", "Cf", "Cs", "Zl", "Zp")
    ]
    assert len(unsafe) > 200
    for char in unsafe:
        assert terminal_text(char).startswith("\\"), hex(ord(char))


# -- messages and authors, as the render functions show them -------------------------------


def message(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "group_id": "ab" * 32,
        "message_hash": "cd" * 32,
        "author": str(KeyPair.generate().peer_id),
        "from_me": False,
        "type": "text",
        "mime": "text/plain",
        "time_stamp": 1_700_000_000_000,
        "epoch": 1,
        "ratified": True,
        "readable": True,
        "size": 5,
        "text": "hello",
    }
    return {**base, **fields}


def test_message_text_and_mime_type_with_escapes_are_shown_inert() -> None:
    text = format_message(message(text=f"hi {EVIL}\nsecond line"), date=True)
    assert_inert(text)
    assert SHOWN in text
    assert "\n    second line" in text  # the body's own newline stays, indented
    image = format_message(message(type="image", mime=f"image/png{EVIL}", size=10), date=False)
    assert_inert(image)
    assert f"image/png{SHOWN}" in image


def test_an_author_is_shown_with_16_characters_beyond_the_common_prefix() -> None:
    peer = str(KeyPair.generate().peer_id)
    label = short_peer(peer)
    assert label == peer[: 8 + PEER_LABEL_CHARS] + ".."
    assert PEER_LABEL_CHARS >= 16
    assert peer.startswith("12D3KooW")


def test_two_authors_that_share_the_shown_prefix_are_both_shown_in_full() -> None:
    first = str(KeyPair.generate().peer_id)
    twin = first[:24] + first[24:][::-1]  # same first 24 characters, another peer
    other = str(KeyPair.generate().peer_id)
    labels = PeerLabels()
    assert labels.label(first) == short_peer(first)
    assert labels.label(other) == short_peer(other)
    assert labels.label(twin) == twin
    assert labels.label(first) == first  # from then on
    alone = format_message(message(author=twin), date=True, peers=PeerLabels())
    assert f"] {short_peer(twin)}: " in alone
    shared = PeerLabels()
    both = [format_message(message(author=a), date=True, peers=shared) for a in (first, twin)]
    assert f"] {twin}: " in both[1]


# -- through a running node --------------------------------------------------------------------


@asynccontextmanager
async def node(data_dir: Path) -> AsyncIterator[Daemon]:
    async with open_daemon(NodeOptions(data_dir=data_dir, listen=LOOPBACK)) as daemon:
        yield daemon


async def test_peers_shows_an_agent_string_with_escapes_inert_and_json_exact(
    tmp_path: Path,
) -> None:
    with trio.fail_after(STEP_TIMEOUT * 2):
        async with node(tmp_path / "node") as daemon:
            config = HostConfig(listen=LOOPBACK, agent_version=f"evil/1.0 {EVIL}")
            async with open_host(KeyPair.generate(), config) as evil:
                await evil.connect(daemon.host.addrs[0])
                # identify has no event a test can wait on: each try is a real look, bounded
                for _ in range(1000):
                    record = daemon.host.peer_store.get(evil.peer_id)
                    if record is not None and record.agent_version:
                        break
                    await trio.sleep(0.01)
                shown = (await ok(tmp_path / "node", "peers")).stdout
                exact = (await ok(tmp_path / "node", "peers", "--json")).json()
    assert_inert(shown)
    line = next(x for x in shown.splitlines() if x.startswith(str(evil.peer_id)))
    assert line.endswith(f"inbound  direct  evil/1.0 {SHOWN}")
    assert [p["agent"] for p in exact["connected"]] == [f"evil/1.0 {EVIL}"]


async def test_history_and_get_show_text_and_mime_types_with_escapes_inert(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "node"
    with trio.fail_after(STEP_TIMEOUT * 2):
        async with node(data_dir), open_control(data_dir) as control:
            await control.call("group.create", name=f"room{EVIL}")
            await control.call("send", group="room", text=f"look {EVIL}")
            sent = await control.call(
                "send",
                group="room",
                type="file",
                mime=f"text/plain{EVIL}",
                data_b64=base64.b64encode(b"data").decode(),
            )
            history = (await ok(data_dir, "history", "room")).stdout
            listed = (await ok(data_dir, "group", "list")).stdout
            got = await ok(data_dir, "get", "room", sent["message_hash"], "-o", str(tmp_path / "f"))
            exact = (await ok(data_dir, "history", "room", "--json")).json()
    for out in (history, listed, got.stdout):
        assert_inert(out)
    assert f"you: look {SHOWN}" in history
    assert f"[file text/plain{SHOWN}, 4 B;" in history
    assert f"room{SHOWN}" in listed
    assert f"(text/plain{SHOWN})" in got.stdout
    assert (tmp_path / "f").read_bytes() == b"data"
    assert f"look {EVIL}" in [m.get("text") for m in exact]
