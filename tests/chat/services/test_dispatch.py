"""The chat dispatcher and client (specs/chat.md §1, §2): real Hosts on 127.0.0.1, and memory
streams where the test must write or withhold exact frames."""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from p2pchat.chat.core.wire import (
    MAX_FRAME_SIZE,
    NEED_DATA,
    Envelope,
    FrameReader,
    Query,
    Response,
    encode_envelope,
    parse_envelope,
)
from p2pchat.chat.services.chat_client import ChatClient, open_chat, open_chat_client
from p2pchat.chat.services.dispatch import (
    IDLE_TIMEOUT,
    MAX_STREAMS_PER_PEER,
    PROTOCOL_ID,
    ChatStreamError,
    Dispatcher,
    QueryContext,
    Refusal,
    install_chat,
    serve_chat_stream,
)
from p2pchat.errors import DecodeError, LocalProtocolError
from p2pchat.identity import KeyPair, PeerID
from p2pchat.net.host import HandlerExistsError, Host, StreamOpenError, open_host
from p2pchat.varint import encode_uvarint

pytestmark = pytest.mark.timeout(30)

LOGGER = "p2pchat.chat.services.dispatch"
EXAMPLE = Path(__file__).resolve().parents[3] / "tools" / "examples" / "echo_code.py"


def echo_dispatcher() -> Dispatcher:
    dispatcher = Dispatcher()

    @dispatcher.handler("echo")
    async def echo(ctx: QueryContext, body: dict[str, Any]) -> dict[str, Any]:
        return body

    return dispatcher


@asynccontextmanager
async def chat_pair(dispatcher: Dispatcher) -> AsyncIterator[tuple[Host, Host, ChatClient]]:
    """Host ``a`` with a chat client on a stream to host ``b``, which serves ``dispatcher``."""
    with trio.fail_after(20):
        async with open_host(KeyPair.generate()) as a, open_host(KeyPair.generate()) as b:
            install_chat(b, dispatcher)
            async with open_chat(a, b.addrs[0]) as client:
                yield a, b, client


class FakePeer:
    """The far end of a memory stream, reading and writing exact frames."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.reader = FrameReader()

    async def read(self, count: int) -> list[Envelope]:
        out: list[Envelope] = []
        while len(out) < count:
            frame = self.reader.next_event()
            if frame is NEED_DATA:
                data = await self.stream.receive_some()
                assert data, "the stream ended early"
                self.reader.receive_data(data)
                continue
            out.append(parse_envelope(frame))
        return out

    async def write(self, *envelopes: Envelope) -> None:
        await self.stream.send_all(b"".join(encode_envelope(e) for e in envelopes))


async def drain(stream: trio.abc.ReceiveStream) -> None:
    while await stream.receive_some():
        pass


# -- hosts ----------------------------------------------------------------------------------------


async def test_query_reaches_the_handler_with_its_context() -> None:
    dispatcher = Dispatcher()
    seen: list[QueryContext] = []

    @dispatcher.handler("who")
    async def who(ctx: QueryContext, body: dict[str, Any]) -> dict[str, Any]:
        seen.append(ctx)
        return {"you": ctx.remote_peer.to_bytes(), "asked": body["q"]}

    async with chat_pair(dispatcher) as (a, b, client):
        response = await client.query("who", {"q": "hi"}, timeout=5)
        assert response == Response("whoR", 0, True, {"you": a.peer_id.to_bytes(), "asked": "hi"})
        (ctx,) = seen
        assert ctx.remote_peer == a.peer_id
        assert ctx.code == "who"
        assert ctx.rid == 0
        assert ctx.connection is b.connection(a.peer_id)
        assert getattr(ctx.stream, "protocol", None) == PROTOCOL_ID
        assert (await client.query("who", {"q": "again"}, timeout=5)).rid == 1


async def test_unknown_code_gets_a_negative_answer() -> None:
    async with chat_pair(echo_dispatcher()) as (_a, _b, client):
        response = await client.query("nope", {"x": 1}, timeout=5)
        assert response == Response("nopeR", 0, False, {}, "unknown code")
        assert (await client.query("echo", {"x": 2}, timeout=5)).body == {"x": 2}


async def test_twenty_pipelined_queries_complete_out_of_order() -> None:
    dispatcher = Dispatcher()
    gates = [trio.Event() for _ in range(20)]
    all_arrived = trio.Event()
    arrived: list[int] = []

    @dispatcher.handler("slow")
    async def slow(ctx: QueryContext, body: dict[str, Any]) -> dict[str, Any]:
        arrived.append(body["n"])
        if len(arrived) == 20:
            all_arrived.set()
        await gates[body["n"]].wait()
        return {"n": body["n"]}

    async with chat_pair(dispatcher) as (a, _b, client):
        received = [trio.Event() for _ in range(20)]
        finished: list[int] = []
        rids: set[int] = set()

        async def ask(n: int) -> None:
            response = await client.query("slow", {"n": n}, timeout=10)
            assert response.ok
            assert response.body == {"n": n}
            rids.add(response.rid)
            finished.append(n)
            received[n].set()

        async with trio.open_nursery() as nursery:
            for n in range(20):
                nursery.start_soon(ask, n)
            await all_arrived.wait()  # all 20 run at once on the server...
            assert client.statistics().in_flight == 20
            assert dispatcher.in_flight(a.peer_id) == 20
            for n in reversed(range(20)):  # ...and are answered last first
                gates[n].set()
                await received[n].wait()
        assert finished == list(reversed(range(20)))
        assert len(rids) == 20
        assert dispatcher.in_flight(a.peer_id) == 0
        assert client.statistics().in_flight == 0


async def test_per_peer_cap_spans_streams() -> None:
    dispatcher = echo_dispatcher()
    gate = trio.Event()
    full = trio.Event()
    running = 0

    @dispatcher.handler("block")
    async def block(ctx: QueryContext, body: dict[str, Any]) -> dict[str, Any]:
        nonlocal running
        running += 1
        if running == 32:
            full.set()
        await gate.wait()
        return {}

    async with chat_pair(dispatcher) as (a, b, first):
        answers: list[Response] = []

        async def ask() -> None:
            answers.append(await first.query("block", {}, timeout=10))

        async with open_chat(a, b.peer_id) as second, trio.open_nursery() as nursery:
            for _ in range(32):
                nursery.start_soon(ask)
            await full.wait()
            assert dispatcher.in_flight(a.peer_id) == 32
            # The 33rd query of this peer comes on another stream and is refused at once.
            refused = await second.query("block", {}, timeout=5)
            assert refused == Response("blockR", 0, False, {}, "too many queries")
            assert running == 32
            gate.set()
        assert len(answers) == 32
        assert all(r.ok for r in answers)
        assert dispatcher.in_flight(a.peer_id) == 0
        # Below the cap again, the same stream is served.
        assert (await first.query("echo", {"after": True}, timeout=5)).ok


async def test_handler_exception_is_an_internal_error_and_the_stream_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    dispatcher = echo_dispatcher()

    @dispatcher.handler("boom")
    async def boom(ctx: QueryContext, body: dict[str, Any]) -> dict[str, Any]:
        raise KeyError("no such thing")

    @dispatcher.handler("huge")
    async def huge(ctx: QueryContext, body: dict[str, Any]) -> dict[str, Any]:
        return {"data": bytes(1024 * 1024)}  # cannot fit in a frame

    @dispatcher.handler("bad")
    async def bad(ctx: QueryContext, body: dict[str, Any]) -> dict[str, Any]:
        raise DecodeError("the packet in the body is malformed")

    @dispatcher.handler("no")
    async def no(ctx: QueryContext, body: dict[str, Any]) -> dict[str, Any]:
        raise Refusal("missing parents", {"missing": [b"h"]})

    async with chat_pair(dispatcher) as (_a, _b, client):
        assert await client.query("boom", {}, timeout=5) == Response(
            "boomR", 0, False, {}, "internal error"
        )
        (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert record.exc_info is not None
        assert record.exc_info[0] is KeyError
        assert (await client.query("huge", {}, timeout=5)).reason == "internal error"
        assert (await client.query("bad", {}, timeout=5)).reason == "malformed"
        assert await client.query("no", {}, timeout=5) == Response(
            "noR", 3, False, {"missing": [b"h"]}, "missing parents"
        )
        assert (await client.query("echo", {"still": "up"}, timeout=5)).body == {"still": "up"}


async def test_malformed_frame_closes_only_its_stream(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    async with chat_pair(echo_dispatcher()) as (a, b, client):
        raw = await a.new_stream(b.peer_id, [PROTOCOL_ID])
        await raw.send_all(bytes.fromhex("ffffff"))  # a length prefix over 1 MiB
        with pytest.raises(trio.BrokenResourceError):  # reset, not a clean end
            await drain(raw)
        await raw.aclose()
        assert any("frame too large" in r.getMessage() for r in caplog.records)
        # The connection, the other stream, and new streams are all fine.
        assert b.connection(a.peer_id) is not None
        assert (await client.query("echo", {"n": 1}, timeout=5)).body == {"n": 1}
        async with open_chat(a, b.peer_id) as fresh:
            assert (await fresh.query("echo", {"n": 2}, timeout=5)).body == {"n": 2}


async def test_broken_stream_fails_every_pending_query() -> None:
    dispatcher = echo_dispatcher()
    entered = trio.Event()
    cancelled = trio.Event()

    @dispatcher.handler("block")
    async def block(ctx: QueryContext, body: dict[str, Any]) -> dict[str, Any]:
        entered.set()
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()

    async with chat_pair(dispatcher) as (a, b, client):
        failures: list[ChatStreamError] = []

        async def ask() -> None:
            with pytest.raises(ChatStreamError) as info:
                await client.query("block", {}, timeout=10)
            failures.append(info.value)

        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(ask)
            await entered.wait()
            conn = a.connection(b.peer_id)
            assert conn is not None
            await conn.aclose()
        assert len(failures) == 3
        await cancelled.wait()  # the server side gave up on the handler too
        with pytest.raises(ChatStreamError):
            await client.query("echo", {}, timeout=5)
        assert client.statistics().failure is not None


# -- memory streams -------------------------------------------------------------------------------


async def test_timeout_forgets_the_rid_and_drops_the_late_response(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client_end, server_end = trio.testing.memory_stream_pair()
    server = FakePeer(server_end)
    async with open_chat_client(client_end) as client:
        with pytest.raises(trio.TooSlowError):
            await client.query("echo", {"first": True}, timeout=3)
        assert client.statistics().in_flight == 0
        (late,) = await server.read(1)
        assert isinstance(late, Query)
        await server.write(late.answer({"late": True}))
        await trio.testing.wait_all_tasks_blocked()

        async with trio.open_nursery() as nursery:
            answers: list[Response] = []

            async def ask() -> None:
                answers.append(await client.query("echo", {"second": True}, timeout=3))

            nursery.start_soon(ask)
            (query,) = await server.read(1)
            assert isinstance(query, Query)
            assert query.rid != late.rid
            await server.write(query.answer(query.body))
        assert answers == [Response("echoR", query.rid, True, {"second": True})]


async def test_at_most_32_in_flight_and_further_callers_wait() -> None:
    client_end, server_end = trio.testing.memory_stream_pair()
    server = FakePeer(server_end)
    async with open_chat_client(client_end) as client, trio.open_nursery() as nursery:
        for n in range(33):
            nursery.start_soon(partial(client.query, "echo", {"n": n}, timeout=10))
        queries = await server.read(32)
        await trio.testing.wait_all_tasks_blocked()
        stats = client.statistics()
        assert (stats.in_flight, stats.waiting) == (32, 1)
        assert server.reader.next_event() is NEED_DATA  # the 33rd was not sent
        first = queries[0]
        assert isinstance(first, Query)
        await server.write(first.answer({}))
        (last,) = await server.read(1)
        assert isinstance(last, Query)
        # The caller that waited for a slot: the one whose query had not been sent.
        assert {last.body["n"]} == set(range(33)) - {q.body["n"] for q in queries}
        rest = [*queries[1:], last]
        await server.write(*(q.answer({}) for q in rest if isinstance(q, Query)))
    assert client.statistics().in_flight == 0


async def test_stream_end_and_protocol_violations_fail_the_client() -> None:
    # The server ends the stream while a query waits.
    client_end, server_end = trio.testing.memory_stream_pair()
    async with open_chat_client(client_end) as client, trio.open_nursery() as nursery:

        async def ask() -> None:
            with pytest.raises(ChatStreamError, match="ended"):
                await client.query("echo", {}, timeout=10)

        nursery.start_soon(ask)
        await FakePeer(server_end).read(1)
        await server_end.aclose()

    # A query arrives where responses are expected; a response answers with the wrong code.
    for wrong in (Query("i", 0, {}), Response("iR", 0, True, {})):
        client_end, server_end = trio.testing.memory_stream_pair()
        server = FakePeer(server_end)
        async with open_chat_client(client_end) as client, trio.open_nursery() as nursery:

            async def ask_echo() -> None:
                with pytest.raises(ChatStreamError, match="protocol violation"):
                    await client.query("echo", {}, timeout=10)

            nursery.start_soon(ask_echo)
            await server.read(1)
            await server.write(wrong)


async def test_bad_queries_are_refused_locally() -> None:
    client_end, server_end = trio.testing.memory_stream_pair()
    server = FakePeer(server_end)
    async with open_chat_client(client_end) as client:
        with pytest.raises(LocalProtocolError):
            await client.query("echoR", {}, timeout=1)
        with pytest.raises(LocalProtocolError):
            await client.query("echo", {"x": 1.5}, timeout=1)
        with pytest.raises(LocalProtocolError):
            await client.query("echo", {"x": bytes(1024 * 1024)}, timeout=1)
        assert client.statistics().in_flight == 0
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(client.query, "echo", {}, timeout=5))
            (query,) = await server.read(1)
            assert isinstance(query, Query)
            await server.write(query.answer({}))
    with pytest.raises(ValueError, match="max_in_flight"):
        async with open_chat_client(client_end, max_in_flight=0):
            pass


async def serve_on_memory(
    dispatcher: Dispatcher,
    peer: PeerID,
    *,
    idle_timeout: float = IDLE_TIMEOUT,
    task_status: trio.TaskStatus[FakePeer],
) -> None:
    client_end, server_end = trio.testing.memory_stream_pair()
    task_status.started(FakePeer(client_end))
    await serve_chat_stream(server_end, dispatcher, remote_peer=peer, idle_timeout=idle_timeout)


async def test_server_answers_in_flight_queries_after_the_end_of_stream() -> None:
    peer = KeyPair.generate().peer_id
    dispatcher = echo_dispatcher()
    async with trio.open_nursery() as nursery:
        client = await nursery.start(serve_on_memory, dispatcher, peer)
        await client.write(Query("echo", 1, {"a": 1}), Query("echo", 2, {"b": 2}))
        await client.stream.send_eof()
    # serve_chat_stream returned (the nursery closed) after both answers were written.
    answers = await client.read(2)
    assert sorted(answers, key=lambda r: r.rid) == [
        Response("echoR", 1, True, {"a": 1}),
        Response("echoR", 2, True, {"b": 2}),
    ]
    assert dispatcher.in_flight(peer) == 0


@pytest.mark.parametrize(
    ("second", "hint"),
    [
        (Response("echoR", 1, True, {}), "unexpected response"),
        (Query("block", 1, {}), "duplicate rid"),
    ],
)
async def test_serving_side_closes_on_a_protocol_violation(
    second: Envelope, hint: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    peer = KeyPair.generate().peer_id
    dispatcher = Dispatcher()
    entered = trio.Event()
    cancelled = trio.Event()

    @dispatcher.handler("block")
    async def block(ctx: QueryContext, body: dict[str, Any]) -> dict[str, Any]:
        entered.set()
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            client = await nursery.start(serve_on_memory, dispatcher, peer)
            await client.write(Query("block", 1, {}))
            await entered.wait()
            await client.write(second)
        # serve_chat_stream returned by itself: the handler was cancelled, the stream closed.
        assert cancelled.is_set()
        assert await client.stream.receive_some() == b""
        assert dispatcher.in_flight(peer) == 0
        assert any(hint in r.getMessage() for r in caplog.records)


async def test_streams_beyond_the_cap_are_reset_and_the_others_keep_working(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    dispatcher = echo_dispatcher()
    async with chat_pair(dispatcher) as (a, b, first):
        assert (await first.query("echo", {"n": 0}, timeout=5)).ok
        others = [
            FakePeer(await a.new_stream(b.peer_id, [PROTOCOL_ID]))
            for _ in range(MAX_STREAMS_PER_PEER - 1)
        ]
        for n, peer in enumerate(others):  # each stream is being served once it answers
            await peer.write(Query("echo", n, {"n": n}))
            assert await peer.read(1) == [Response("echoR", n, True, {"n": n})]
        assert dispatcher.streams(a.peer_id) == MAX_STREAMS_PER_PEER

        # One stream more: the Host refuses the protocol while negotiating (specs/host.md
        # "Stream limits"), before the chat service sees the stream.
        with pytest.raises(StreamOpenError, match="supports none"):
            await a.new_stream(b.peer_id, [PROTOCOL_ID])
        assert dispatcher.streams(a.peer_id) == MAX_STREAMS_PER_PEER
        # Served outside a Host, the service's own count refuses a stream beyond the cap.
        _client_end, server_end = trio.testing.memory_stream_pair()
        await serve_chat_stream(server_end, dispatcher, remote_peer=a.peer_id)
        assert any("refusing" in r.getMessage() for r in caplog.records)
        assert dispatcher.streams(a.peer_id) == MAX_STREAMS_PER_PEER
        assert (await first.query("echo", {"again": 0}, timeout=5)).ok
        for n, peer in enumerate(others):
            await peer.write(Query("echo", n, {"again": n}))
            assert await peer.read(1) == [Response("echoR", n, True, {"again": n})]

        # A stream that ends frees its place for a new one.
        ending = others[0].stream
        assert isinstance(ending, trio.abc.HalfCloseableStream)
        await ending.send_eof()
        await drain(ending)  # the server has ended its side: it no longer serves the stream
        await ending.aclose()
        assert dispatcher.streams(a.peer_id) == MAX_STREAMS_PER_PEER - 1
        async with open_chat(a, b.peer_id) as fresh:
            assert (await fresh.query("echo", {"fresh": 1}, timeout=5)).ok
        for peer in others[1:]:
            await peer.stream.aclose()


async def test_idle_stream_is_reset_after_the_timeout_and_not_before(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    peer = KeyPair.generate().peer_id
    dispatcher = echo_dispatcher()
    async with trio.open_nursery() as nursery:
        client = await nursery.start(serve_on_memory, dispatcher, peer)
        start = trio.current_time()
        # Half a frame is no activity: the stream is reset a full timeout after it opened.
        await trio.sleep(IDLE_TIMEOUT / 2)
        await client.stream.send_all(encode_envelope(Query("echo", 0, {}))[:3])
        assert dispatcher.streams(peer) == 1
        assert await client.stream.receive_some() == b""
        assert trio.current_time() - start == pytest.approx(IDLE_TIMEOUT)
    assert dispatcher.streams(peer) == 0
    assert [r.getMessage() for r in caplog.records if "idle" in r.getMessage()]

    # A complete frame (even one answered "unknown code") starts the timeout afresh.
    async with trio.open_nursery() as nursery:
        client = await nursery.start(serve_on_memory, dispatcher, peer)
        start = trio.current_time()
        await trio.sleep(IDLE_TIMEOUT / 2)
        await client.write(Query("nope", 0, {}))
        assert await client.read(1) == [Response("nopeR", 0, False, {}, "unknown code")]
        assert await client.stream.receive_some() == b""
        assert trio.current_time() - start == pytest.approx(IDLE_TIMEOUT * 1.5)


async def test_a_stream_with_queries_flowing_is_not_idle(
    autojump_clock: trio.testing.MockClock,
) -> None:
    peer = KeyPair.generate().peer_id
    dispatcher = echo_dispatcher()

    @dispatcher.handler("slow")
    async def slow(ctx: QueryContext, body: dict[str, Any]) -> dict[str, Any]:
        await trio.sleep(body["seconds"])
        return {}

    timeout = 10
    async with trio.open_nursery() as nursery:
        client = await nursery.start(
            partial(serve_on_memory, idle_timeout=timeout), dispatcher, peer
        )
        start = trio.current_time()
        # A query in flight for longer than the timeout holds the stream open...
        await client.write(Query("slow", 0, {"seconds": 3 * timeout}))
        assert await client.read(1) == [Response("slowR", 0, True, {})]
        assert trio.current_time() - start == pytest.approx(3 * timeout)
        # ...and so do queries that keep coming within the timeout.
        for rid in range(1, 6):
            await trio.sleep(timeout - 1)
            await client.write(Query("echo", rid, {"rid": rid}))
            assert await client.read(1) == [Response("echoR", rid, True, {"rid": rid})]
        last = trio.current_time()
        assert last - start == pytest.approx(3 * timeout + 5 * (timeout - 1))
        # Once they stop, the stream is reset one timeout after the last answer.
        assert await client.stream.receive_some() == b""
        assert trio.current_time() - last == pytest.approx(timeout)


async def test_limits_are_checked() -> None:
    peer = KeyPair.generate().peer_id
    _client_end, server_end = trio.testing.memory_stream_pair()
    for limits in (
        {"max_in_flight": 0},
        {"max_streams": 0},
        {"idle_timeout": 0.0},
        {"idle_timeout": math.nan},
    ):
        with pytest.raises(ValueError, match=next(iter(limits))):
            await serve_chat_stream(server_end, echo_dispatcher(), remote_peer=peer, **limits)
    async with open_host(KeyPair.generate()) as host:
        with pytest.raises(ValueError, match="max_streams"):
            install_chat(host, echo_dispatcher(), max_streams=0)
        assert PROTOCOL_ID not in host.protocols


def test_register_checks_codes() -> None:
    dispatcher = echo_dispatcher()

    async def handler(ctx: QueryContext, body: dict[str, Any]) -> dict[str, Any]:
        return {}

    with pytest.raises(ValueError, match="already"):
        dispatcher.register("echo", handler)
    for bad in ("echoR", "", "a-b", "x" * 16):
        with pytest.raises(ValueError, match="not a query code"):
            dispatcher.register(bad, handler)
    dispatcher.register("x" * 15, handler)
    assert dispatcher.codes == ["echo", "x" * 15]
    assert dispatcher.registered("x" * 15) is handler
    assert dispatcher.registered("nope") is None
    dispatcher.unregister("echo")
    assert dispatcher.codes == ["x" * 15]
    with pytest.raises(LocalProtocolError):
        Refusal("x" * 257)


async def test_echo_code_example_runs() -> None:
    with trio.fail_after(10):
        done = await trio.run_process(
            [sys.executable, str(EXAMPLE)], capture_stdout=True, capture_stderr=True, check=False
        )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    out = done.stdout.decode()
    assert "echoR rid=0 ok=True" in out
    assert "echo: {'text': 'hello'}" in out


async def test_install_chat_twice_needs_replace() -> None:
    first, second = echo_dispatcher(), Dispatcher()
    async with chat_pair(first) as (a, b, client):
        with pytest.raises(HandlerExistsError, match=r"ChatNode\.dispatcher"):
            install_chat(b, second)
        assert (await client.query("echo", {"x": 1}, timeout=5)).ok  # the first still serves
        install_chat(b, second, replace=True)
        async with open_chat(a, b.addrs[0]) as fresh:
            response = await fresh.query("echo", {"x": 1}, timeout=5)
        assert response.reason == "unknown code"


async def test_a_peers_unfinished_frames_are_bounded_over_its_streams(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """§1 Limits: each stream may hold up to one frame, but a peer's unfinished frames over all
    its streams are bounded; the stream that would go over is reset, the others carry on."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    budget = 100_000
    dispatcher = echo_dispatcher()
    dispatcher.max_buffered = budget
    async with chat_pair(dispatcher) as (a, b, client):
        prefix = encode_uvarint(MAX_FRAME_SIZE)  # a frame of 1 MiB, of which we send a part
        first = await a.new_stream(b.peer_id, [PROTOCOL_ID])
        await first.send_all(prefix + bytes(60_000))
        with trio.fail_after(10):
            while dispatcher.buffered(a.peer_id) < 60_000:  # noqa: ASYNC110
                await trio.sleep(0.01)
        second = await a.new_stream(b.peer_id, [PROTOCOL_ID])
        await second.send_all(prefix + bytes(60_000))  # 120 kB in all: over the budget
        with pytest.raises(trio.BrokenResourceError):
            await drain(second)
        assert any("peer buffer full" in r.getMessage() for r in caplog.records)
        assert dispatcher.buffered(a.peer_id) <= budget
        # The first stream is still served, and its peer's other queries go through.
        assert (await client.query("echo", {"n": 1}, timeout=5)).ok
        await first.reset()
        with trio.fail_after(10):
            while dispatcher.buffered(a.peer_id):  # noqa: ASYNC110
                await trio.sleep(0.01)


def test_the_frame_buffer_budget_is_validated() -> None:
    with pytest.raises(ValueError, match="max_buffered"):
        Dispatcher(max_buffered=0)
