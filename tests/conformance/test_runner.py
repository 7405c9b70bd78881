"""The runner: each outcome a case can have, its deadline, and the connections it closes."""

from __future__ import annotations

from functools import partial

import pytest
import trio

from p2pchat.conformance import Level, NotApplicableError, Outcome, ViolationError
from p2pchat.conformance.context import CaseContext
from p2pchat.conformance.registry import Case
from p2pchat.conformance.runner import run_cases
from p2pchat.conformance.transport import TargetUnreachableError
from p2pchat.errors import DecodeError
from p2pchat.multiaddr import Multiaddr

pytestmark = pytest.mark.timeout(30)


async def passes(ctx: CaseContext) -> None:
    conn = await ctx.raw()
    await conn.send(b"hello")


async def fails(ctx: CaseContext) -> None:
    ctx.transcript.sent("hello")
    raise ViolationError("it said goodbye")


async def skips(ctx: CaseContext) -> None:
    raise NotApplicableError("no such feature")


async def hangs(ctx: CaseContext) -> None:
    conn = await ctx.raw()
    await conn.receive_some()  # the server never writes


async def refuses_bytes(ctx: CaseContext) -> None:
    raise DecodeError("bad varint", hint="bad varint")


def _case(name: str, function: object) -> Case:
    return Case(f"ping.{name}", "ping", Level.MUST, "ping.md §Protocol", name, function)  # type: ignore[arg-type]


async def test_each_outcome_is_reported_and_every_connection_is_closed() -> None:
    closed: list[trio.Event] = []

    async def serve(stream: trio.SocketStream) -> None:
        done = trio.Event()
        closed.append(done)
        while await stream.receive_some():
            pass
        done.set()

    async with trio.open_nursery() as nursery:
        (listener,) = await nursery.start(partial(trio.serve_tcp, serve, 0, host="127.0.0.1"))
        port = listener.socket.getsockname()[1]
        target = Multiaddr.from_string(f"/ip4/127.0.0.1/tcp/{port}")
        cases = [
            _case("passes", passes),
            _case("fails", fails),
            _case("skips", skips),
            _case("hangs", hangs),
            _case("refuses", refuses_bytes),
        ]
        results = await run_cases(target, cases, case_seconds=0.5)
        with trio.fail_after(5):
            for done in closed:
                await done.wait()
        nursery.cancel_scope.cancel()
    by_id = {r.case.id: r for r in results}
    assert [r.case.id for r in results] == [c.id for c in cases]
    assert by_id["ping.passes"].outcome is Outcome.PASS
    assert by_id["ping.fails"].outcome is Outcome.FAIL
    assert by_id["ping.fails"].detail == "it said goodbye [transcript: > hello]"
    assert by_id["ping.skips"].outcome is Outcome.SKIP
    assert by_id["ping.skips"].detail == "no such feature"
    assert by_id["ping.hangs"].outcome is Outcome.FAIL
    assert by_id["ping.hangs"].detail == "no answer within the case's 0.5 s"
    assert by_id["ping.refuses"].outcome is Outcome.FAIL
    assert "refused: bad varint" in by_id["ping.refuses"].detail
    # The reachability check, "passes" and "hangs" each opened one connection; all are closed.
    assert len(closed) == 3


async def test_an_unreachable_target_stops_the_run_before_any_case() -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    target = Multiaddr.from_string(f"/ip4/127.0.0.1/tcp/{port}")
    with pytest.raises(TargetUnreachableError, match="cannot connect"):
        await run_cases(target, [_case("passes", passes)], case_seconds=2)
