"""Delivery relayed through members: the split rule, retries and the fallback of a failed head."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from p2pchat.chat.core.engine import ChatError
from p2pchat.chat.core.events import Deliver
from p2pchat.chat.services.clients import QueryRefusedError
from p2pchat.chat.services.deliver import DeliverService, relay_plan
from p2pchat.identity import KeyPair, PeerID

PEERS = [KeyPair.from_seed(bytes([n]) * 32).peer_id for n in range(1, 121)]


def test_at_most_fanout_peers_each_get_the_message_without_relay() -> None:
    assert relay_plan(PEERS[:4], 4) == [(p, ()) for p in PEERS[:4]]
    assert relay_plan([], 4) == []


def test_more_peers_are_split_into_consecutive_runs_headed_by_their_first() -> None:
    p = PEERS[:10]
    assert relay_plan(p, 4) == [
        (p[0], (p[1], p[2])),
        (p[3], (p[4], p[5])),
        (p[6], (p[7], p[8])),
        (p[9], ()),
    ]


def test_connected_peers_head_the_subtrees_and_the_others_keep_their_order() -> None:
    p = PEERS[:10]
    plan = relay_plan(p, 4, prefer={p[1], p[7], p[8]})
    assert [head for head, _ in plan] == [p[1], p[7], p[8], p[0]]
    assert [rest for _, rest in plan] == [(p[2], p[3]), (p[4], p[5]), (p[6], p[9]), ()]


@given(
    st.integers(min_value=0, max_value=120),
    st.integers(min_value=2, max_value=8),
    st.sets(st.integers(min_value=0, max_value=119)),
)
def test_every_peer_is_reached_once_and_no_node_sends_more_than_fanout(
    count: int, fanout: int, connected: set[int]
) -> None:
    reached: list[PeerID] = []
    sends: list[int] = []
    prefer = {PEERS[i] for i in connected if i < len(PEERS)}

    def walk(peers: tuple[PeerID, ...]) -> None:
        plan = relay_plan(peers, fanout, prefer=prefer)
        sends.append(len(plan))
        for head, rest in plan:
            reached.append(head)
            walk(rest)

    walk(tuple(PEERS[:count]))
    assert sorted(map(str, reached)) == sorted(map(str, PEERS[:count]))
    assert max(sends) <= fanout


class FakeClients:
    """Records every query; peers in ``down`` fail, peers in ``refuse`` refuse for good."""

    def __init__(
        self,
        down: frozenset[PeerID] = frozenset(),
        refuse: frozenset[PeerID] = frozenset(),
        refuse_relay: frozenset[PeerID] = frozenset(),
    ) -> None:
        self.down = down
        self.refuse = refuse
        self.refuse_relay = refuse_relay  # these refuse a relay list they cannot check
        self.calls: list[tuple[PeerID, dict[str, Any]]] = []
        #: Answer smsgb "unknown code", as a node without it does.
        self.no_batches = False

    async def query(self, peer: PeerID, code: str, body: dict[str, Any]) -> dict[str, Any]:
        assert code == ("smsgb" if "packets" in body else "smsg")
        self.calls.append((peer, body))
        await trio.lowlevel.checkpoint()
        if code == "smsgb" and self.no_batches:
            raise QueryRefusedError("smsgb", "unknown code")
        if peer in self.refuse:
            raise QueryRefusedError("smsg", "unknown group")
        if peer in self.refuse_relay and "relay" in body:
            raise QueryRefusedError("smsg", "malformed")
        if peer in self.down:
            raise ChatError("unreachable")
        if code == "smsgb":
            return {"results": [{} for _ in body["packets"]]}
        return {}


class _Packet:
    def __init__(self, name: str = "packet") -> None:
        self.name = name
        self.message = SimpleNamespace(message_type="text", artifact=SimpleNamespace(data=b""))

    def to_cbor(self) -> str:
        return self.name


def _service(
    clients: FakeClients, nursery: trio.Nursery, fanout: int | None = None
) -> DeliverService:
    """A DeliverService on ``clients`` that retries within milliseconds."""
    return DeliverService(
        clients,  # type: ignore[arg-type]
        nursery,
        retry_initial=0.001,
        retry_max=0.002,
        fanout=fanout,
    )


async def _deliver(clients: FakeClients, peers: list[PeerID], fanout: int) -> None:
    async with trio.open_nursery() as nursery:
        _service(clients, nursery, fanout).start(Deliver(b"g" * 32, _Packet(), tuple(peers)))  # type: ignore[arg-type]


async def test_the_sender_queries_only_the_heads_with_their_relay_lists() -> None:
    clients = FakeClients()
    await _deliver(clients, PEERS[:9], 3)
    asked = {peer: body.get("relay") for peer, body in clients.calls}  # tasks run in any order
    assert len(clients.calls) == 3
    assert asked == {
        PEERS[0]: [PEERS[1].to_bytes(), PEERS[2].to_bytes()],
        PEERS[3]: [PEERS[4].to_bytes(), PEERS[5].to_bytes()],
        PEERS[6]: [PEERS[7].to_bytes(), PEERS[8].to_bytes()],
    }
    assert all(body["packet"] == "packet" for _, body in clients.calls)


@pytest.mark.parametrize("failure", ["down", "refuse"])
async def test_a_head_that_fails_has_its_subtree_served_by_the_sender(failure: str) -> None:
    bad = frozenset({PEERS[3]})
    clients = FakeClients(down=bad) if failure == "down" else FakeClients(refuse=bad)
    await _deliver(clients, PEERS[:9], 3)
    asked = [peer for peer, _ in clients.calls]
    assert asked.count(PEERS[3]) == (4 if failure == "down" else 1)  # retried, or final
    assert PEERS[4] in asked
    assert PEERS[5] in asked  # its subtree, from us, since it could not relay


async def test_a_head_refusing_its_relay_list_gets_it_alone_and_we_serve_the_rest() -> None:
    clients = FakeClients(refuse_relay=frozenset({PEERS[3]}))
    await _deliver(clients, PEERS[:9], 3)
    to_head = [body.get("relay") for peer, body in clients.calls if peer == PEERS[3]]
    assert to_head == [[PEERS[4].to_bytes(), PEERS[5].to_bytes()], None]
    asked = [peer for peer, _ in clients.calls]
    assert PEERS[4] in asked
    assert PEERS[5] in asked


async def test_packets_queued_for_one_member_go_in_order_in_batches() -> None:
    clients = FakeClients()
    async with trio.open_nursery() as nursery:
        service = _service(clients, nursery)
        for n in range(10):  # queued while the first is on its way
            packet = _Packet(f"p{n}")
            service.start(Deliver(b"g" * 32, packet, (PEERS[0],)))  # type: ignore[arg-type]
    bodies = [body for _, body in clients.calls]
    sent = [p for b in bodies for p in b.get("packets", [b.get("packet")])]
    assert sent == [f"p{n}" for n in range(10)]  # each once, in order
    assert len(bodies) == 1  # all were queued before the first request left


@pytest.mark.parametrize("batches", [True, False])
async def test_packets_queued_while_one_is_on_its_way_follow_in_one_batch(batches: bool) -> None:
    clients = FakeClients()
    clients.no_batches = not batches
    async with trio.open_nursery() as nursery:
        service = _service(clients, nursery)
        service.start(Deliver(b"g" * 32, _Packet("p0"), (PEERS[0],)))  # type: ignore[arg-type]
        await trio.testing.wait_all_tasks_blocked()
        for n in range(1, 5):
            packet = _Packet(f"p{n}")
            service.start(Deliver(b"g" * 32, packet, (PEERS[0],)))  # type: ignore[arg-type]
    codes = [("packets" in body) for _, body in clients.calls]
    sent = [p for _, b in clients.calls for p in b.get("packets", [b.get("packet")])]
    if batches:
        assert sent == ["p0", "p1", "p2", "p3", "p4"]
        assert codes == [False, True]
    else:  # one by one after the refused batch, in order
        assert sent == ["p0", "p1", "p2", "p3", "p4", "p1", "p2", "p3", "p4"]
        assert codes == [False, True, False, False, False, False]


def test_a_fanout_below_two_is_refused() -> None:
    with pytest.raises(ValueError, match="fan-out"):
        DeliverService(None, None, retry_initial=1, retry_max=1, fanout=1)  # type: ignore[arg-type]
