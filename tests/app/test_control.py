"""The control socket, in process: requests, refusals, streams, a client that leaves, paths."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pchat.app.control import (
    ControlError,
    Emit,
    LineReader,
    NodeNotRunningError,
    RemoteCommandError,
    decode_line,
    encode_line,
    open_control,
    serve_control,
)
from p2pchat.app.datadir import control_socket_path
from p2pchat.errors import P2PChatError

pytestmark = pytest.mark.timeout(30)


class Handler:
    """A node stand-in: echo, refusals, a bug, and a stream that records its end."""

    def __init__(self) -> None:
        self.stream_ended = trio.Event()
        self.streaming = trio.Event()

    async def __call__(self, request: dict[str, Any], emit: Emit) -> Any:
        op = request["op"]
        if op == "echo":
            return {k: v for k, v in request.items() if k != "op"}
        if op == "refuse":
            raise P2PChatError("no group 'x' on this node")
        if op == "bad-value":
            raise ValueError("quorum must be positive")
        if op == "bug":
            raise KeyError("oops")
        if op == "stream":
            try:
                for n in range(3):
                    await emit({"n": n})
                self.streaming.set()
                await trio.sleep_forever()
            finally:
                self.stream_ended.set()
        raise P2PChatError(f"unknown operation {op!r}")


@asynccontextmanager
async def serving(data_dir: Path) -> AsyncIterator[Handler]:
    handler = Handler()
    await trio.Path(data_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_control, control_socket_path(data_dir), handler)
        yield handler
        nursery.cancel_scope.cancel()


async def test_requests_are_answered_in_order_and_refusals_are_one_line(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with serving(tmp_path) as _, open_control(tmp_path) as client:
            mode = os.stat(control_socket_path(tmp_path)).st_mode
            assert stat.S_ISSOCK(mode)
            assert mode & 0o777 == 0o600
            assert await client.call("echo", text="héllo", n=3) == {"text": "héllo", "n": 3}
            with pytest.raises(RemoteCommandError, match=r"^no group 'x' on this node$"):
                await client.call("refuse")
            with pytest.raises(RemoteCommandError, match=r"^quorum must be positive$"):
                await client.call("bad-value")
            with pytest.raises(RemoteCommandError, match=r"internal error in the node \(KeyError"):
                await client.call("bug")
            # the connection is still usable after each refusal
            assert await client.call("echo") == {}
    assert not control_socket_path(tmp_path).exists()  # removed when the server stops


async def test_a_stream_delivers_events_and_ends_when_the_client_leaves(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with serving(tmp_path) as handler:
            async with open_control(tmp_path) as client:
                await client.start_stream("stream")
                assert [await client.next_event() for _ in range(3)] == [
                    {"n": 0},
                    {"n": 1},
                    {"n": 2},
                ]
                await handler.streaming.wait()
                assert not handler.stream_ended.is_set()
            await handler.stream_ended.wait()  # the handler was cancelled when the client left


async def test_a_streaming_refusal_ends_the_stream(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with serving(tmp_path), open_control(tmp_path) as client:
            await client.start_stream("refuse")
            with pytest.raises(RemoteCommandError, match="no group"):
                await client.next_event()
            await client.start_stream("echo", x=1)
            assert await client.next_event() is None  # ended with success at once


async def test_malformed_lines_are_answered_then_dropped(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with serving(tmp_path):
            stream = await trio.open_unix_socket(str(control_socket_path(tmp_path)))
            async with stream:
                await stream.send_all(b"[1, 2]\n")
                reader = LineReader(stream, 1 << 20)
                answer = decode_line(await reader.read_line() or b"")
                assert answer == {"ok": False, "error": "a control message must be a JSON object"}
                assert await reader.read_line() is None  # closed by the node


async def test_no_socket_or_a_stale_one_means_no_node(tmp_path: Path) -> None:
    with pytest.raises(NodeNotRunningError) as info:
        async with open_control(tmp_path / "nowhere"):
            pass
    assert str(info.value) == (
        f"no node is running on {tmp_path / 'nowhere'} (start one with: p2pchat node)"
    )
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(control_socket_path(tmp_path)))
    stale.close()  # the file stays, nobody listens: a node that was killed
    with pytest.raises(NodeNotRunningError):
        async with open_control(tmp_path):
            pass
    async with serving(tmp_path), open_control(tmp_path) as client:  # the next node replaces it
        assert await client.call("echo", a=1) == {"a": 1}


async def test_a_data_dir_path_too_long_for_a_unix_socket_still_works(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    assert len(str(control_socket_path(deep))) > 108
    with trio.fail_after(10):
        async with serving(deep), open_control(deep) as client:
            assert await client.call("echo", ok=True) == {"ok": True}


async def test_a_line_over_the_limit_is_refused() -> None:
    send, receive = trio.testing.memory_stream_pair()
    reader = LineReader(receive, 16)
    await send.send_all(b"x" * 40)
    with pytest.raises(ControlError, match="longer than 16 bytes"):
        await reader.read_line()
    send2, receive2 = trio.testing.memory_stream_pair()
    reader2 = LineReader(receive2, 16)
    await send2.send_all(b'{"a"')
    await send2.send_eof()
    with pytest.raises(ControlError, match="mid-message"):
        await reader2.read_line()


def test_encode_line_round_trips() -> None:
    message = {"op": "send", "text": "a\nb ✓", "n": [1, None, True]}
    line = encode_line(message)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert decode_line(line[:-1]) == message


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=256))
def test_decode_line_raises_only_control_error(data: bytes) -> None:
    try:
        value = decode_line(data)
    except ControlError:
        return
    assert isinstance(value, dict)
