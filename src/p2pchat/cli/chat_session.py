"""What the two faces of ``p2pchat chat`` share (specs/cli.md "chat"): the line-by-line session
(:mod:`.chat`) and the terminal UI (:mod:`.tui`) open the same two control connections, send a
typed line the same way, and show a message, or our message still pending, the same way.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs

from ..app.control_protocol import RemoteCommandError
from ..client import Client, connect
from .chat_commands import Send, SendFile, request_of
from .common import UsageError, data_dir
from .render import PeerLabels, clean, format_message

#: A request to the node: the operation and its arguments; the answer.
Call = Callable[..., Awaitable[Any]]


@attrs.frozen
class Session:
    """The group's message stream (``subscribe`` started) and a connection for requests."""

    events: Client
    control: Client
    group_id: str
    name: str


@asynccontextmanager
async def open_session(args: argparse.Namespace) -> AsyncIterator[Session]:
    """Subscribe to ``args.group`` on the node of ``args``'s data dir.

    Raises:
        ControlError: no node runs, or it refused (e.g. no such group).
        UsageError: the node did not start the subscription.
    """
    directory = data_dir(args)
    async with connect(directory) as events, connect(directory) as control:
        await events.start_stream("subscribe", group=args.group)
        first = await events.next_event()
        if first is None or first.get("kind") != "subscribed":
            raise UsageError("the node did not start the subscription")
        yield Session(events, control, first["group_id"], first["name"])


def chat_line(message: dict[str, Any], peers: PeerLabels) -> str:
    """A message as the chat shows it: time, author, state and hash, then the content."""
    return format_message(message, date=False, status=True, peers=peers, hashes=True)


def pending_line(request: dict[str, Any], digest: str, group_id: str) -> dict[str, Any]:
    """The JSON view of our message ``digest`` still pending, from the request that sent it."""
    return {
        "message_hash": digest,
        "time_stamp": int(time.time() * 1000),
        "from_me": True,
        "author": "",
        "type": request.get("type", "file"),
        "mime": request.get("mime", "text/plain"),
        "text": request.get("text"),
        "size": None,
        "ref_hash": request.get("ref"),
        "readable": True,
        "ratified": False,
        "epoch": 0,
        "group_id": group_id,
    }


@attrs.frozen
class Sent:
    """The node took the line: the request made, and the hash of the message it became."""

    request: dict[str, Any]
    digest: str


async def send_action(call: Call, group_id: str, action: Send | SendFile) -> Sent | str:
    """Ask the node to send what a typed line asked for (without waiting for the quorum);
    the refusal, as one line of text, when the node (a viewer's, say) or the command refuses."""
    try:
        op, request = request_of(action)
        answer = await call(op, group=group_id, wait=False, **request)
    except (RemoteCommandError, UsageError) as exc:
        return f"not sent: {clean(str(exc))}"
    return Sent(request, answer["message_hash"])
