"""What the line-by-line chat and the terminal UI share (cli/chat_session.py): a typed line
sent without waiting, a refusal as one line, our pending message's view."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from p2pchat.app.control_protocol import RemoteCommandError
from p2pchat.cli.chat_commands import Send, SendFile
from p2pchat.cli.chat_session import Sent, pending_line, send_action


async def test_a_line_is_sent_without_waiting_and_a_refusal_is_one_line(tmp_path: Path) -> None:
    asked: list[tuple[str, dict[str, Any]]] = []

    async def call(op: str, **request: Any) -> Any:
        asked.append((op, request))
        if op == "send.file":
            raise RemoteCommandError("the node cannot read /x: No such file\x1b[31m")
        return {"message_hash": "ab" * 32, "status": "pending"}

    sent = await send_action(call, "g1", Send({"type": "text", "text": "hi"}))
    assert sent == Sent({"type": "text", "text": "hi"}, "ab" * 32)
    assert asked[-1] == ("send", {"group": "g1", "wait": False, "type": "text", "text": "hi"})
    refused = await send_action(call, "g1", SendFile(str(tmp_path / "x")))
    assert isinstance(refused, str)
    assert refused.startswith("not sent: the node cannot read /x: No such file")
    assert "\x1b" not in refused  # the node's text is cleaned for the terminal
    assert [op for op, _ in asked] == ["send", "send.file"]


def test_our_pending_message_is_shown_from_its_request() -> None:
    view = pending_line({"type": "edit", "text": "fixed", "ref": "12ab"}, "cd" * 32, "g1")
    assert (view["type"], view["text"], view["ref_hash"]) == ("edit", "fixed", "12ab")
    assert (view["from_me"], view["ratified"], view["message_hash"]) == (True, False, "cd" * 32)
    assert pending_line({"path": "/a.png"}, "ef" * 32, "g1")["type"] == "file"
