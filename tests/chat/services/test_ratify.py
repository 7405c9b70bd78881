"""The ratification service (specs/chat.md §21): one request at a time per ratifier, in batches,
and the answers handed to the engine without holding up the next request."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import trio
import trio.testing

from p2pchat.chat.core.events import AskVote, VoteAnswered
from p2pchat.chat.core.packet import Packet
from p2pchat.chat.services.clients import ClientPool, QueryRefusedError
from p2pchat.chat.services.ratify import RatifyService
from p2pchat.chat.services.runtime import Runtime
from p2pchat.identity import KeyPair

GROUP = b"\x05" * 32
ME = KeyPair.from_seed(b"\x01" * 32).peer_id
RATIFIER = KeyPair.from_seed(b"\x02" * 32).peer_id


def _packet(n: int) -> Packet:
    message = SimpleNamespace(message_type="text", artifact=SimpleNamespace(data=b""))
    fake = SimpleNamespace(message_hash=bytes([n]) * 32, message=message, to_cbor=lambda: n)
    return cast(Packet, fake)


class SlowRuntime:
    """Takes each answer to the engine only once ``release`` is set (as a certificate's
    durable commit would hold it)."""

    def __init__(self) -> None:
        self.peer_id = ME
        self.engine = SimpleNamespace(find=lambda group_id: None)
        self.release = trio.Event()
        self.answered: list[VoteAnswered] = []

    async def handle(self, event: VoteAnswered) -> None:
        await self.release.wait()
        self.answered.append(event)


class RefusingClients:
    """Answers every request with a refusal, and records what was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, Any]] = []

    async def query(self, peer: object, code: str, body: dict[str, Any]) -> dict[str, Any]:
        self.asked.append((code, body.get("packet", body.get("packets"))))
        await trio.lowlevel.checkpoint()
        raise QueryRefusedError(code, "over quota")


async def test_the_next_request_does_not_wait_for_the_answers_of_the_last() -> None:
    runtime, clients = SlowRuntime(), RefusingClients()
    async with trio.open_nursery() as nursery:
        service = RatifyService(
            cast(Runtime, runtime), cast(ClientPool, clients), nursery, addresses=None
        )
        service.start(AskVote(GROUP, _packet(1), RATIFIER))
        await trio.testing.wait_all_tasks_blocked()
        assert clients.asked == [("mrat", 1)]
        # The first answer is still being handled: the next messages go at once, as a batch.
        service.start(AskVote(GROUP, _packet(2), RATIFIER))
        service.start(AskVote(GROUP, _packet(3), RATIFIER))
        await trio.testing.wait_all_tasks_blocked()
        assert clients.asked == [("mrat", 1), ("mratb", [2, 3])]
        assert runtime.answered == []
        runtime.release.set()
    # Each request's answers in its order; two requests' answers may interleave.
    assert sorted((e.message_hash[0], e.reason) for e in runtime.answered) == [
        (1, "over quota"),
        (2, "over quota"),
        (3, "over quota"),
    ]


async def test_messages_asked_while_a_request_is_out_follow_in_one_batch() -> None:
    runtime, clients = SlowRuntime(), RefusingClients()
    runtime.release.set()
    gate = trio.Event()
    query = clients.query

    async def slow_query(peer: object, code: str, body: dict[str, Any]) -> dict[str, Any]:
        await gate.wait()
        return await query(peer, code, body)

    clients.query = slow_query  # type: ignore[method-assign]
    async with trio.open_nursery() as nursery:
        service = RatifyService(
            cast(Runtime, runtime), cast(ClientPool, clients), nursery, addresses=None
        )
        service.start(AskVote(GROUP, _packet(1), RATIFIER))
        await trio.testing.wait_all_tasks_blocked()
        for n in (2, 3, 4):
            service.start(AskVote(GROUP, _packet(n), RATIFIER))
        gate.set()
    assert clients.asked == [("mrat", 1), ("mratb", [2, 3, 4])]
    assert [e.message_hash[0] for e in runtime.answered] == [1, 2, 3, 4]
