"""Serve your own libp2p protocol from an in-process host: an echo on ``/my-app/echo/1.0.0``.

.venv/bin/python tools/examples/echo_stream.py
"""

from __future__ import annotations

import trio

from p2pchat import KeyPair, MuxedStream, open_host

ECHO = "/my-app/echo/1.0.0"


async def echo(stream: MuxedStream) -> None:  # a trio HalfCloseableStream, already negotiated
    while data := await stream.receive_some():
        await stream.send_all(data)
    await stream.send_eof()


async def main() -> None:
    async with open_host(KeyPair.generate()) as server, open_host(KeyPair.generate()) as client:
        server.set_stream_handler(ECHO, echo)  # a second handler for ECHO needs replace=True
        stream = await client.new_stream(server.addrs[0], [ECHO])
        async with stream:
            await stream.send_all(b"hello")
            await stream.send_eof()
            print(await stream.receive_some())  # b'hello'


if __name__ == "__main__":
    trio.run(main)
