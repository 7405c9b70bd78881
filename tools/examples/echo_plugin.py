"""A plug-in for a running node: the chat code ``echo`` and the stream protocol
``/p2pchat-example/upper/1.0.0`` (specs/plugins.md).

    p2pchat node --plugin tools/examples/echo_plugin.py
    p2pchat query <peer> echo --body '{"text": "hi"}'        # from another node
    echo hello | p2pchat stream <multiaddr> /p2pchat-example/upper/1.0.0

Edit it while the node runs and pick up the change with ``p2pchat plugins reload echo_plugin``.
"""

from __future__ import annotations

from typing import Any

from p2pchat import MuxedStream, PluginContext, QueryContext, Refusal

UPPER = "/p2pchat-example/upper/1.0.0"


def setup(ctx: PluginContext) -> None:
    """Register the code and the protocol; the node withdraws both when the plug-in unloads."""

    @ctx.code("echo")
    async def echo(query: QueryContext, body: dict[str, Any]) -> dict[str, Any]:
        """Answer with the body and who sent it; refuse an empty body."""
        if not body:
            raise Refusal("empty body")
        ctx.log.info("echo for %s", query.remote_peer)
        return {"echo": body, "from": str(query.remote_peer), "by": str(ctx.peer_id)}

    @ctx.protocol(UPPER)
    async def upper(stream: MuxedStream) -> None:
        """Send back each chunk upper-cased (nothing is held: memory stays flat), then end."""
        while data := await stream.receive_some():
            await stream.send_all(data.upper())
        await stream.send_eof()
