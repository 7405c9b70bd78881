"""``p2pchat.client``: drive a running node from Python, under trio or asyncio
(specs/plugins.md "The control-socket client").

    async with p2pchat.client.connect("/tmp/chat/alice") as node:
        print((await node.status())["peer_id"])
        async with node.subscribe("book club") as messages:
            async for message in messages:
                if message.ratified and message.text == "!ping":
                    await node.send("book club", "pong")

The same code runs under ``trio.run`` and ``asyncio.run``. The commands' blocking client is
:mod:`p2pchat.app.client`; both share the framing of :mod:`p2pchat.app.control_protocol`.
"""

from __future__ import annotations

from ..app.control_protocol import ControlError as ControlError
from ..app.control_protocol import NodeNotRunningError as NodeNotRunningError
from ..app.control_protocol import RemoteCommandError as RemoteCommandError
from ._client import Client as Client
from ._client import Message as Message
from ._client import connect as connect

__all__ = [
    "Client",
    "ControlError",
    "Message",
    "NodeNotRunningError",
    "RemoteCommandError",
    "connect",
]
