"""Bootstrap entries, /dnsaddr resolution (through a fake resolver: no DNS leaves the machine),
backoff, reconnection, and the known-peers file."""

from __future__ import annotations

import itertools
import json
import random
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pchat.discovery.bootstrap import (
    MAX_DNSADDR_DEPTH,
    MAX_KNOWN_ADDRS,
    MAX_KNOWN_PEERS,
    MAX_RESOLVED_ADDRS,
    Backoff,
    BackoffPolicy,
    BootstrapError,
    KnownPeers,
    dnsaddr_records,
    group_by_peer,
    keep_connected,
    parse_bootstrap_entry,
    resolve_dnsaddr,
    run_bootstrap,
)
from p2pchat.identity import KeyPair
from p2pchat.multiaddr import Multiaddr
from p2pchat.net.events import ConnectionOpened
from p2pchat.net.host import DialError, Host, HostConfig, open_host
from p2pchat.net.muxer import MuxedConnection

pytestmark = pytest.mark.timeout(30)

A = KeyPair.from_seed(bytes([1]) * 32).peer_id
B = KeyPair.from_seed(bytes([2]) * 32).peer_id
LOOPBACK = HostConfig(listen=(Multiaddr.from_string("/ip4/127.0.0.1/tcp/0"),))
FAST = BackoffPolicy(initial=0.01, maximum=0.05, stable_after=0.01)


# -- entries ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        f"/ip4/127.0.0.1/tcp/4001/p2p/{A}",
        f"/dns4/node.example/tcp/4001/p2p/{A}",
        "/dnsaddr/bootstrap.example",
        f"/dnsaddr/bootstrap.example/p2p/{A}",
    ],
)
def test_good_entries(text: str) -> None:
    assert str(parse_bootstrap_entry(text)) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/ip4/127.0.0.1/tcp/4001", "must end in /p2p/<peer id>"),
        ("127.0.0.1:4001", "invalid bootstrap address"),
        ("/ip4/127.0.0.1/tcp/x/p2p/" + str(A), "invalid bootstrap address"),
    ],
)
def test_bad_entries(text: str, expected: str) -> None:
    with pytest.raises(BootstrapError, match=expected):
        parse_bootstrap_entry(text)


def test_group_by_peer_strips_the_peer_suffix() -> None:
    addrs = [
        Multiaddr.from_string(f"/ip4/127.0.0.1/tcp/1/p2p/{A}"),
        Multiaddr.from_string(f"/ip4/127.0.0.2/tcp/1/p2p/{A}"),
        Multiaddr.from_string(f"/ip4/127.0.0.3/tcp/1/p2p/{B}"),
        Multiaddr.from_string("/ip4/127.0.0.4/tcp/1"),
    ]
    assert {p: [str(a) for a in v] for p, v in group_by_peer(addrs).items()} == {
        A: ["/ip4/127.0.0.1/tcp/1", "/ip4/127.0.0.2/tcp/1"],
        B: ["/ip4/127.0.0.3/tcp/1"],
    }


# -- dnsaddr ---------------------------------------------------------------------------------


def test_dnsaddr_records_keep_only_prefixed_parsable_matching_values() -> None:
    txts = [
        f"dnsaddr=/ip4/127.0.0.1/tcp/1/p2p/{A}",
        f"dnsaddr=/ip4/127.0.0.2/tcp/1/p2p/{B}",
        "dnsaddr=/not/a/multiaddr",
        "v=spf1 -all",
        f"dnsaddr=/ip4/127.0.0.1/tcp/1/p2p/{A}",  # duplicate
    ]
    assert [str(a) for a in dnsaddr_records(txts)] == [
        f"/ip4/127.0.0.1/tcp/1/p2p/{A}",
        f"/ip4/127.0.0.2/tcp/1/p2p/{B}",
    ]
    suffix = Multiaddr.from_string(f"/p2p/{B}")
    assert [str(a) for a in dnsaddr_records(txts, suffix)] == [f"/ip4/127.0.0.2/tcp/1/p2p/{B}"]


class FakeDns:
    """TXT records by name; counts lookups."""

    def __init__(self, records: dict[str, list[str]]) -> None:
        self.records = records
        self.asked: list[str] = []

    async def __call__(self, name: str) -> list[str]:
        await trio.lowlevel.checkpoint()
        self.asked.append(name)
        if name == "_dnsaddr.broken.example":
            raise BootstrapError("cannot resolve _dnsaddr.broken.example: timed out")
        return self.records.get(name, [])


async def test_resolve_dnsaddr_follows_nested_names_and_filters_by_peer() -> None:
    dns = FakeDns(
        {
            "_dnsaddr.root.example": [
                "dnsaddr=/dnsaddr/east.root.example",
                f"dnsaddr=/ip4/127.0.0.1/tcp/1/p2p/{A}",
            ],
            "_dnsaddr.east.root.example": [
                f"dnsaddr=/ip4/127.0.0.2/tcp/2/p2p/{B}",
                f"dnsaddr=/ip4/127.0.0.1/tcp/1/p2p/{A}",
            ],
        }
    )
    root = Multiaddr.from_string("/dnsaddr/root.example")
    resolved = await resolve_dnsaddr(root, dns)
    assert [str(a) for a in resolved] == [
        f"/ip4/127.0.0.2/tcp/2/p2p/{B}",
        f"/ip4/127.0.0.1/tcp/1/p2p/{A}",
    ]
    assert dns.asked == ["_dnsaddr.root.example", "_dnsaddr.east.root.example"]
    only_a = await resolve_dnsaddr(Multiaddr.from_string(f"/dnsaddr/root.example/p2p/{A}"), dns)
    assert [str(a) for a in only_a] == [f"/ip4/127.0.0.1/tcp/1/p2p/{A}"]
    plain = Multiaddr.from_string("/ip4/127.0.0.1/tcp/1")
    assert await resolve_dnsaddr(plain, dns) == [plain]
    assert await resolve_dnsaddr(Multiaddr.from_string("/dnsaddr/none.example"), dns) == []
    with pytest.raises(BootstrapError, match="timed out"):
        await resolve_dnsaddr(Multiaddr.from_string("/dnsaddr/broken.example"), dns)


async def test_resolve_dnsaddr_stops_at_the_depth_and_size_limits() -> None:
    loop = FakeDns({"_dnsaddr.loop.example": ["dnsaddr=/dnsaddr/loop.example"]})
    assert await resolve_dnsaddr(Multiaddr.from_string("/dnsaddr/loop.example"), loop) == []
    assert len(loop.asked) == MAX_DNSADDR_DEPTH
    many = FakeDns(
        {
            "_dnsaddr.many.example": [
                f"dnsaddr=/ip4/127.0.0.1/tcp/{port}/p2p/{A}" for port in range(1, 200)
            ]
        }
    )
    resolved = await resolve_dnsaddr(Multiaddr.from_string("/dnsaddr/many.example"), many)
    assert len(resolved) == MAX_RESOLVED_ADDRS


# -- backoff ---------------------------------------------------------------------------------


def test_backoff_grows_to_its_cap_with_jitter_and_resets() -> None:
    policy = BackoffPolicy(initial=1.0, maximum=8.0, multiplier=2.0, jitter=0.5)
    backoff = Backoff(policy, random.Random(7))
    delays = [backoff.next_delay() for _ in range(8)]
    for n, delay in enumerate(delays):
        base = min(8.0, 2.0**n)
        assert base * 0.5 <= delay <= base
    assert len(set(delays)) == len(delays)  # jittered, not a fixed sequence
    backoff.reset()
    assert 0.5 <= backoff.next_delay() <= 1.0


def test_backoff_without_jitter_is_exact() -> None:
    backoff = Backoff(BackoffPolicy(initial=0.5, maximum=3.0, jitter=0.0))
    assert [backoff.next_delay() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


@pytest.mark.parametrize(
    "kwargs", [{"initial": 0.0}, {"initial": 2.0, "maximum": 1.0}, {"jitter": 1.5}]
)
def test_bad_backoff_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="backoff"):
        BackoffPolicy(**kwargs)


class FakeConnection:
    def __init__(self) -> None:
        self.closed = trio.Event()

    async def wait_closed(self) -> None:
        await self.closed.wait()


async def test_keep_connected_retries_with_backoff_and_redials_after_a_drop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    attempts: list[float] = []
    connections: list[FakeConnection] = []
    dialed = trio.Event()

    async def dial() -> FakeConnection:
        attempts.append(trio.current_time())
        if len(attempts) <= 3:
            raise DialError("connection refused")
        conn = FakeConnection()
        connections.append(conn)
        dialed.set()
        return conn

    policy = BackoffPolicy(initial=1.0, maximum=60.0, jitter=0.0, stable_after=100.0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(keep_connected, dial, Backoff(policy), label="fake"))
        await dialed.wait()
        # three failures: 1 s, 2 s, 4 s apart
        gaps = [b - a for a, b in itertools.pairwise(attempts)]
        assert gaps == [1.0, 2.0, 4.0]
        dialed = trio.Event()
        connections[0].closed.set()  # dropped at once: not stable, the backoff keeps growing
        await dialed.wait()
        assert attempts[-1] - attempts[-2] == 8.0
        nursery.cancel_scope.cancel()
    assert len(connections) == 2


# -- bootstrap with real hosts on 127.0.0.1 ------------------------------------------------


class Arrivals:
    """The connections a host opens, as they come (its connection events, no polling)."""

    def __init__(self) -> None:
        self.connections: list[MuxedConnection] = []
        self._changed = trio.Event()

    async def collect(
        self, host: Host, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        async with host.connection_events() as events:
            task_status.started()
            async for event in events:
                if isinstance(event, ConnectionOpened):
                    self.connections.append(event.conn)
                    self._changed.set()

    async def wait_for(self, count: int) -> MuxedConnection:
        while len(self.connections) < count:
            self._changed = trio.Event()
            await self._changed.wait()
        return self.connections[count - 1]


async def test_a_host_connects_to_its_bootstrap_peer_and_reconnects_after_a_drop() -> None:
    with trio.fail_after(20):
        async with (
            open_host(KeyPair.generate(), LOOPBACK) as seed,
            open_host(KeyPair.generate(), LOOPBACK) as node,
            trio.open_nursery() as nursery,
        ):
            arrivals = Arrivals()
            await nursery.start(arrivals.collect, seed)
            entries = [seed.addrs[0], node.addrs[0]]  # its own entry is skipped
            await nursery.start(partial(run_bootstrap, node, entries, policy=FAST))
            first = await arrivals.wait_for(1)
            assert first.remote_peer == node.peer_id
            assert not first.is_client  # the node dialed the seed
            await first.aclose()
            second = await arrivals.wait_for(2)
            assert second.remote_peer == node.peer_id
            assert not second.is_client
            assert second is not first
            assert node.peer_id not in node.connected_peers()
            nursery.cancel_scope.cancel()


async def test_a_dnsaddr_entry_resolves_through_the_lookup_then_connects() -> None:
    with trio.fail_after(20):
        async with (
            open_host(KeyPair.generate(), LOOPBACK) as seed,
            open_host(KeyPair.generate(), LOOPBACK) as node,
            trio.open_nursery() as nursery,
        ):
            arrivals = Arrivals()
            await nursery.start(arrivals.collect, seed)
            dns = FakeDns({"_dnsaddr.seed.example": [f"dnsaddr={seed.addrs[0]}"]})
            entry = Multiaddr.from_string("/dnsaddr/seed.example")
            await nursery.start(partial(run_bootstrap, node, [entry], lookup=dns, policy=FAST))
            conn = await arrivals.wait_for(1)
            assert conn.remote_peer == node.peer_id
            assert dns.asked == ["_dnsaddr.seed.example"]
            nursery.cancel_scope.cancel()


# -- known peers -----------------------------------------------------------------------------


def test_known_peers_round_trip_most_recent_first(tmp_path: Path) -> None:
    path = tmp_path / "peers.json"
    known = KnownPeers.load(path)
    assert known.peers() == []
    a1 = Multiaddr.from_string("/ip4/127.0.0.1/tcp/1")
    a2 = Multiaddr.from_string(f"/ip4/127.0.0.1/tcp/2/p2p/{A}")
    known.update(A, [a1], 1000)
    known.update(B, [Multiaddr.from_string("/ip4/127.0.0.1/tcp/3")], 2000)
    known.update(A, [a2], 3000)  # newest address first, /p2p stripped
    known.update(B, [], 4000)  # seen again, no address given: its addresses are kept
    known.save()
    assert path.stat().st_mode & 0o777 == 0o600
    loaded = KnownPeers.load(path).peers()
    assert [(p.peer_id, p.last_seen) for p in loaded] == [(B, 4000), (A, 3000)]
    assert [str(a) for a in loaded[0].addrs] == ["/ip4/127.0.0.1/tcp/3"]
    assert [str(a) for a in loaded[1].addrs] == ["/ip4/127.0.0.1/tcp/2", "/ip4/127.0.0.1/tcp/1"]
    known.update(KeyPair.generate().peer_id, [], 5000)  # no address ever: not recorded
    assert len(known.peers()) == 2


def test_known_peers_are_bounded(tmp_path: Path) -> None:
    known = KnownPeers(tmp_path / "peers.json")
    peers = [KeyPair.from_seed(i.to_bytes(32, "big")).peer_id for i in range(MAX_KNOWN_PEERS + 5)]
    for n, peer in enumerate(peers):
        addrs = [Multiaddr.from_string(f"/ip4/127.0.0.1/tcp/{p}") for p in range(1, 20)]
        known.update(peer, addrs, n)
    kept = known.peers()
    assert len(kept) == MAX_KNOWN_PEERS
    assert kept[0].peer_id == peers[-1]  # the oldest went
    assert all(len(p.addrs) == MAX_KNOWN_ADDRS for p in kept)


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"[]",
        json.dumps({"version": 2, "peers": []}).encode(),
        json.dumps(
            {"version": 1, "peers": [{"peer_id": "x", "addrs": [], "last_seen": 1}]}
        ).encode(),
        json.dumps(
            {"version": 1, "peers": [{"peer_id": str(A), "addrs": ["/x"], "last_seen": 1}]}
        ).encode(),
    ],
)
def test_a_malformed_known_peers_file_is_ignored(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "peers.json"
    path.write_bytes(content)
    assert KnownPeers.load(path).peers() == []


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512) | st.text(max_size=256).map(str.encode))
def test_any_known_peers_file_loads_or_is_ignored(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    path = tmp_path_factory.mktemp("known") / "peers.json"
    path.write_bytes(data)
    assert isinstance(KnownPeers.load(path).peers(), list)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "peer_id": st.sampled_from([str(A), str(B), "", "12D3KooW"]) | st.text(max_size=8),
                "addrs": st.lists(st.sampled_from(["/ip4/127.0.0.1/tcp/1", "/x", ""]), max_size=3)
                | st.integers(),
                "last_seen": st.integers() | st.none() | st.text(max_size=2),
            }
        ),
        max_size=3,
    )
)
def test_structured_garbage_is_ignored_too(
    tmp_path_factory: pytest.TempPathFactory, peers: list[object]
) -> None:
    path = tmp_path_factory.mktemp("known") / "peers.json"
    path.write_text(json.dumps({"version": 1, "peers": peers}))
    assert isinstance(KnownPeers.load(path).peers(), list)
