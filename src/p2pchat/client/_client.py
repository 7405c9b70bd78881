"""The control-socket client for programs: :func:`connect` and :class:`Client`.

The framing and the reading of answers are the sans-IO :mod:`p2pchat.app.control_protocol`,
which the blocking client of the commands (:mod:`p2pchat.app.client`) drives too; here a
:class:`~p2pchat.client._transport.Transport` of the running loop (trio or asyncio) moves the
bytes. One request runs at a time on a :class:`Client`; :meth:`Client.subscribe` opens a
connection of its own, so a program can follow a group and send on the same client.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs

from ..app.control_protocol import (
    MAX_RESPONSE,
    READ_CHUNK,
    ControlError,
    LineBuffer,
    answer_result,
    decode_line,
    encode_line,
)
from ..app.datadir import control_socket_path, resolve_data_dir
from ._transport import Transport, open_unix


@attrs.frozen
class Message:
    """A message as the node shows it (specs/control.md "Message")."""

    group_id: str
    message_hash: str
    author: str
    from_me: bool
    type: str
    mime: str
    time_stamp: int
    epoch: int
    ratified: bool
    readable: bool
    #: The text of a text or markdown message; None otherwise or when not readable.
    text: str | None
    #: The whole JSON object, for what the fields above leave out.
    raw: dict[str, Any] = attrs.field(repr=False, eq=False)

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Message:
        """The message in a node's JSON view.

        Raises:
            ControlError: not a message.
        """
        try:
            return cls(
                group_id=str(value["group_id"]),
                message_hash=str(value["message_hash"]),
                author=str(value["author"]),
                from_me=bool(value["from_me"]),
                type=str(value["type"]),
                mime=str(value["mime"]),
                time_stamp=int(value["time_stamp"]),
                epoch=int(value["epoch"]),
                ratified=bool(value["ratified"]),
                readable=bool(value["readable"]),
                text=value.get("text") if isinstance(value.get("text"), str) else None,
                raw=value,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ControlError(f"malformed message from the node: {exc!r}") from None


class Client:
    """A connection to a running node. Made by :func:`connect`."""

    def __init__(self, transport: Transport, data_dir: Path) -> None:
        self._transport = transport
        self._lines = LineBuffer(MAX_RESPONSE)
        self._busy = False
        #: The node's data dir.
        self.data_dir = data_dir

    # -- the protocol ----------------------------------------------------------------------------

    async def _receive(self) -> dict[str, Any]:
        while (line := self._lines.next_line()) is None:
            if self._lines.eof:
                raise ControlError(f"the node at {self.data_dir} closed the connection (stopped?)")
            self._lines.check_room()
            self._lines.feed(await self._transport.receive_some(READ_CHUNK))
        return decode_line(line)

    async def call(self, op: str, **args: Any) -> Any:
        """Run any operation of specs/control.md and return its result.

        Raises:
            RemoteCommandError: the node refused (its one-line reason is the message).
            ControlError: the connection broke, another request is running on this client, or
                ``op`` is a streaming operation.
        """
        await self.start_stream(op, **args)
        try:
            answer = await self._receive()
        finally:
            self._busy = False
        if "event" in answer:
            raise ControlError(f"{op!r} is a streaming operation; use subscribe()")
        return answer_result(answer)

    async def start_stream(self, op: str, **args: Any) -> None:
        """Send a request whose answer is read with :meth:`next_event` (a streaming operation).

        Raises:
            ControlError: the connection broke, or another request is running on this client.
        """
        if self._busy:
            raise ControlError("one request at a time on a client; connect again for another")
        self._busy = True
        try:
            await self._transport.send_all(encode_line({"op": op, **args}))
        except BaseException:
            self._busy = False
            raise

    async def next_event(self) -> dict[str, Any] | None:
        """The next event of a streaming operation; None when it ended with success.

        Raises:
            RemoteCommandError: it ended with the node's refusal.
            ControlError: the connection broke.
        """
        answer = await self._receive()
        event = answer.get("event")
        if isinstance(event, dict):
            return event
        self._busy = False  # the final answer: the connection takes a request again
        answer_result(answer)
        return None

    async def aclose(self) -> None:
        """Close the connection (a request running on it is cancelled on the node)."""
        await self._transport.aclose()

    # -- operations ------------------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        """The node's peer id, addresses, counts (specs/control.md ``status``)."""
        result: dict[str, Any] = await self.call("status")
        return result

    async def peers(self) -> dict[str, Any]:
        """``{"connected": [...], "known": [...]}``."""
        result: dict[str, Any] = await self.call("peers")
        return result

    async def groups(self) -> list[dict[str, Any]]:
        """The node's groups (``group.list``)."""
        result: list[dict[str, Any]] = await self.call("group.list")
        return result

    async def send(
        self,
        group: str,
        text: str | None = None,
        *,
        data: bytes | None = None,
        message_type: str | None = None,
        mime: str | None = None,
        wait: bool = True,
    ) -> dict[str, Any]:
        """Send ``text`` (or ``data``, a file's bytes) to a group: ``{message_hash, status}``,
        status ``"ratified"`` or ``"pending"``.

        Raises:
            ValueError: neither or both of ``text`` and ``data``.
            RemoteCommandError: the node refused (no such group, a viewer, too large...).
        """
        if (text is None) == (data is None):
            raise ValueError("give text or data")
        args: dict[str, Any] = {"group": group, "wait": wait}
        if text is not None:
            args["text"] = text
            args["type"] = message_type or "text"
        else:
            assert data is not None
            args["data_b64"] = base64.b64encode(data).decode("ascii")
            args["type"] = message_type or "file"
        if mime is not None:
            args["mime"] = mime
        result: dict[str, Any] = await self.call("send", **args)
        return result

    async def history(self, group: str, *, limit: int | None = None) -> list[Message]:
        """The group's ratified messages in display order, then ours pending."""
        args: dict[str, Any] = {"group": group}
        if limit is not None:
            args["limit"] = limit
        return [Message.from_json(m) for m in await self.call("history", **args)]

    async def query(
        self,
        peer: str,
        code: str,
        body: dict[str, Any] | None = None,
        *,
        group: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (the node's own bound, sent with it)
    ) -> dict[str, Any]:
        """One chat query from the node (specs/control.md ``query``): ``{peer_id, code, rid,
        ok, reason, body}``; bytes in ``body`` are ``{"$bytes": base64}`` both ways."""
        args: dict[str, Any] = {"peer": peer, "code": code, "body": body or {}}
        if group is not None:
            args["group"] = group
        if timeout is not None:
            args["timeout"] = timeout
        result: dict[str, Any] = await self.call("query", **args)
        return result

    async def plugins(self) -> list[dict[str, Any]]:
        """The node's plug-ins (specs/control.md ``plugins``)."""
        result: list[dict[str, Any]] = await self.call("plugins")
        return result

    @asynccontextmanager
    async def subscribe(self, group: str) -> AsyncIterator[AsyncIterator[Message]]:
        """The group's messages from now on, for the block, on a connection of its own: ours
        twice (pending, then ratified), everyone else's once ratified.

        Raises:
            RemoteCommandError: no such group.
            ControlError: the connection broke.
        """
        async with connect(self.data_dir) as events:
            await events.start_stream("subscribe", group=group)
            first = await events.next_event()
            if first is None or first.get("kind") != "subscribed":
                raise ControlError("the node did not start the subscription")
            yield _Messages(events)


class _Messages:
    def __init__(self, events: Client) -> None:
        self._events = events

    def __aiter__(self) -> _Messages:
        return self

    async def __anext__(self) -> Message:
        while True:
            event = await self._events.next_event()
            if event is None:
                raise StopAsyncIteration
            if event.get("kind") == "message" and isinstance(event.get("message"), dict):
                return Message.from_json(event["message"])


@asynccontextmanager
async def connect(data_dir: Path | str | None = None) -> AsyncIterator[Client]:
    """Connect to the node running on ``data_dir`` (default: ``$P2PCHAT_DATA_DIR``, else
    ``$XDG_DATA_HOME/p2pchat``, as the commands resolve it), under trio or asyncio.

    Raises:
        NodeNotRunningError: no node runs there.
        ControlError: the socket cannot be used.
    """
    directory = resolve_data_dir(Path(data_dir) if data_dir is not None else None)
    transport = await open_unix(control_socket_path(directory), directory)
    client = Client(transport, directory)
    try:
        yield client
    finally:
        await client.aclose()
