"""Register your own message code: an ``echo`` query served by a second host.

Two hosts on 127.0.0.1; host B answers the application code ``echo`` (response ``echoR``) with
the body it received, host A asks once and prints the response. Run it with
``.venv/bin/python tools/examples/echo_code.py``.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from p2pchat import (
    Dispatcher,
    KeyPair,
    PeerID,
    QueryContext,
    Refusal,
    install_chat,
    open_chat,
    open_host,
)

dispatcher = Dispatcher()


@dispatcher.handler("echo")
async def echo(ctx: QueryContext, body: dict[str, Any]) -> dict[str, Any]:
    """Answer with the query's body and who sent it; refuse an empty body."""
    if not body:
        raise Refusal("malformed")
    return {"echo": body, "from": ctx.remote_peer.to_bytes()}


async def main() -> None:
    with trio.fail_after(5):
        async with open_host(KeyPair.generate()) as a, open_host(KeyPair.generate()) as b:
            install_chat(b, dispatcher)
            async with open_chat(a, b.addrs[0]) as client:
                response = await client.query("echo", {"text": "hello"}, timeout=2)
    assert response.ok, response.reason
    sender = PeerID.from_bytes(response.body["from"])
    assert sender == a.peer_id
    print(f"{response.code} rid={response.rid} ok={response.ok}")
    print(f"echo: {response.body['echo']}")
    print(f"seen from: {sender}")


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    trio.run(main)
