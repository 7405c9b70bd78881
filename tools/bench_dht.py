"""Kademlia lookups over a simulated network of sans-IO DHT nodes: latency, messages and hops
per lookup against log2(n), and memory per node.

Theory of operation
-------------------
Each simulated node is what a real one holds: a :class:`~p2pchat.protocols.kad.RoutingTable`
(k = 20) and a :class:`~p2pchat.protocols.kad.KadServer` (which answers from that table, with a
fake ``/ip4/10.x.y.z/tcp/4001`` address per peer). Every request and answer goes through the
wire codec (``frame`` and ``MessageReader``), so message sizes are real. A requester that gets
an answer files the answerer in its table and the answerer files the requester (both are
servers, as identify would tell them).

Nodes join one after another through node 0 by looking themselves up, as
``discovery/kad.py`` bootstraps; then every node refreshes ``--refreshes`` times (a self lookup
and a random-key lookup each, as ``KadDHT.refresh``). A measured
lookup is a FIND_PEER of a random node from another random node, driven by the same
:class:`~p2pchat.protocols.kad.Lookup` the service uses (α = 3 in flight), in simulated time:
each request takes a round trip drawn uniformly from ``--rtt-min``..``--rtt-max`` ms, the
lookup ends when the target is named with its address (FIND_PEER's early stop) or the lookup
is done. Reported: the simulated time to find the target (median, p99), requests per lookup,
hops (the hop at which the target was learned; seeds are hop 1) against log2(n), the success
rate, bytes on the wire per lookup, and the memory per node (tracemalloc over the tables and
servers, rebuilt with the same peers after the joins). No sockets, no sleeps: the figures are
about the algorithm and the data structures, not the network stack.

    python tools/bench_dht.py                 # 100 and 1,000 nodes
    python tools/bench_dht.py --nodes 200 --lookups 500 --json
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from p2pchat.identity import KeyPair, PeerID
from p2pchat.multiaddr import Multiaddr
from p2pchat.protocols.kad import (
    KadServer,
    Lookup,
    Message,
    MessageReader,
    MessageType,
    ProviderStore,
    RecordStore,
    RoutingTable,
    frame,
    kad_key,
)
from p2pchat.protocols.kad.messages import NEED_DATA


class Network:
    """Simulated DHT servers, addressed by peer id."""

    def __init__(self, n: int, rng: random.Random) -> None:
        self.rng = rng
        self.ids: list[PeerID] = [KeyPair.from_seed(rng.randbytes(32)).peer_id for _ in range(n)]
        self.addrs = {
            p: (
                Multiaddr.from_string(f"/ip4/10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}/tcp/4001"),
            )
            for i, p in enumerate(self.ids)
        }
        self.by_bytes = {p.to_bytes(): p for p in self.ids}
        self.tables: dict[PeerID, RoutingTable] = {}
        #: Peers each node exchanged a request with (the addresses its peer store holds).
        self.met: dict[PeerID, set[PeerID]] = {}
        self.servers: dict[PeerID, KadServer] = {}
        for p in self.ids:
            table = RoutingTable(p)
            self.tables[p] = table
            self.servers[p] = KadServer(
                p, table, RecordStore(), ProviderStore(), self.known_by(p, table)
            )
        self.bytes = 0
        self.clock = 0.0

    def known_by(self, me: PeerID, table: RoutingTable) -> Callable[[PeerID], Sequence[Multiaddr]]:
        """A node's peer store: its own address, and those of the peers in its table or that it
        exchanged a request with (as a host keeps the addresses of the peers it connected to)."""
        met = self.met.setdefault(me, set())

        def addrs_of(peer: PeerID) -> Sequence[Multiaddr]:
            return self.addrs[peer] if peer == me or peer in table or peer in met else ()

        return addrs_of

    def request(self, sender: PeerID, receiver: PeerID, message: Message) -> Message:
        """One request through the codec both ways; both ends file each other."""
        wire = frame(message)
        reader = MessageReader()
        reader.receive_data(wire)
        decoded = reader.next_message()
        assert decoded is not NEED_DATA
        self.clock += 1.0  # the budget refills: a busy node is not rate limited here
        reply = self.servers[receiver].handle(sender, decoded, self.clock)
        wire_back = frame(reply)
        self.bytes += len(wire) + len(wire_back)
        reader = MessageReader()
        reader.receive_data(wire_back)
        answer = reader.next_message()
        assert answer is not NEED_DATA
        self.tables[receiver].add(sender, self.clock)
        self.tables[sender].add(receiver, self.clock)
        self.met[receiver].add(sender)
        self.met[sender].add(receiver)
        return answer

    def lookup(
        self, source: PeerID, key: bytes, *, rtt: tuple[float, float], find_peer: bool
    ) -> dict[str, Any]:
        """A FIND_NODE lookup of ``key`` (a peer id's bytes: FIND_PEER) from ``source`` in
        simulated time."""
        target = self.by_bytes.get(key)
        seeds = self.tables[source].closest(kad_key(key), 20)
        lookup = Lookup(kad_key(key), seeds, local=source)
        now = 0.0
        pending: list[tuple[float, int, PeerID]] = []
        seq = 0
        found_at: float | None = None
        found_hop: int | None = None
        start_bytes = self.bytes
        while not lookup.done:
            for peer in lookup.next_queries():
                seq += 1
                heapq.heappush(pending, (now + self.rng.uniform(*rtt), seq, peer))
            if not pending:
                break
            now, _, peer = heapq.heappop(pending)
            reply = self.request(source, peer, Message(MessageType.FIND_NODE, key=key))
            lookup.answered(peer, [e.peer for e in reply.closer_peers])
            if found_at is None and any(e.peer == target and e.addrs for e in reply.closer_peers):
                found_at = now
                found_hop = (lookup.hop(peer) or 0) + 1
                if find_peer:
                    lookup.finish()
        if found_at is None and target is not None and target in self.tables[source]:
            found_at, found_hop = 0.0, 0
        return {
            "found": found_at is not None,
            "ms": found_at,
            "hops": found_hop,
            "queries": lookup.queries,
            "bytes": self.bytes - start_bytes,
        }


def memory_per_node(net: Network) -> float:
    """Bytes a node's DHT state takes: every node's routing table, server and stores rebuilt
    with the same peers under tracemalloc (tracing the whole build would slow it tenfold)."""
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    copies = []
    for p, table in net.tables.items():
        copy = RoutingTable(p)
        for q in table:
            copy.add(q, 0.0)
        copies.append(KadServer(p, copy, RecordStore(), ProviderStore(), net.known_by(p, copy)))
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    del copies
    return grown / len(net.tables)


def build(n: int, seed: int, refreshes: int) -> tuple[Network, float, float]:
    """Join ``n`` nodes through node 0, then run ``refreshes`` refresh rounds (each node looks
    itself and one random key up, as ``KadDHT.refresh`` does); the network, the memory per node
    in bytes, and the build time in seconds."""
    rng = random.Random(seed)
    started = time.perf_counter()
    net = Network(n, rng)
    fast = (1.0, 1.0)
    first = net.ids[0]
    for p in net.ids[1:]:
        net.tables[p].add(first, 0.0)
        net.lookup(p, p.to_bytes(), rtt=fast, find_peer=False)
    for _ in range(refreshes):
        for p in net.ids:
            net.lookup(p, p.to_bytes(), rtt=fast, find_peer=False)
            net.lookup(p, rng.randbytes(32), rtt=fast, find_peer=False)
    elapsed = time.perf_counter() - started
    return net, memory_per_node(net), elapsed


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def run(
    n: int, lookups: int, seed: int, rtt: tuple[float, float], refreshes: int
) -> dict[str, Any]:
    net, memory, build_s = build(n, seed, refreshes)
    rng = random.Random(seed + 1)
    results = []
    started = time.perf_counter()
    for _ in range(lookups):
        source, target = rng.sample(net.ids, 2)
        results.append(net.lookup(source, target.to_bytes(), rtt=rtt, find_peer=True))
    cpu = (time.perf_counter() - started) / lookups
    found = [r for r in results if r["found"]]
    ms = [float(r["ms"]) for r in found]
    hops = [float(r["hops"]) for r in found]
    queries = [float(r["queries"]) for r in results]
    sizes = [len(t) for t in net.tables.values()]
    return {
        "nodes": n,
        "refreshes": refreshes,
        "log2_n": round(math.log2(n), 2),
        "lookups": lookups,
        "found_pct": round(100.0 * len(found) / lookups, 1),
        "latency_ms_median": round(statistics.median(ms), 1) if ms else None,
        "latency_ms_p99": round(_pct(ms, 0.99), 1) if ms else None,
        "hops_median": statistics.median(hops) if hops else None,
        "hops_p99": _pct(hops, 0.99) if hops else None,
        "hops_mean": round(statistics.fmean(hops), 2) if hops else None,
        "messages_mean": round(statistics.fmean(queries), 1),
        "messages_p99": _pct(queries, 0.99),
        "bytes_mean": round(statistics.fmean(r["bytes"] for r in results)),
        "table_size_median": statistics.median(sizes),
        "memory_per_node_kib": round(memory / 1024, 1),
        "build_s": round(build_s, 1),
        "cpu_ms_per_lookup": round(cpu * 1000, 2),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--nodes", type=int, action="append", help="network sizes (100, 1000)")
    parser.add_argument("--lookups", type=int, default=300, help="measured lookups per size")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rtt-min", type=float, default=20.0, help="ms (default 20)")
    parser.add_argument("--rtt-max", type=float, default=120.0, help="ms (default 120)")
    parser.add_argument(
        "--refreshes", type=int, default=2, help="refresh rounds after the joins (default 2)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per size")
    args = parser.parse_args(argv)
    sizes = args.nodes or [100, 1000]
    for n in sizes:
        if n < 3:
            parser.error("--nodes must be at least 3")
        result = run(n, args.lookups, args.seed, (args.rtt_min, args.rtt_max), args.refreshes)
        if args.json:
            print(json.dumps(result), flush=True)
            continue
        print(
            f"n={n:5d}  log2(n)={result['log2_n']:5.2f}  found {result['found_pct']}%  "
            f"latency median {result['latency_ms_median']} ms p99 {result['latency_ms_p99']} ms  "
            f"hops median {result['hops_median']} mean {result['hops_mean']} "
            f"p99 {result['hops_p99']}  messages mean {result['messages_mean']} "
            f"p99 {result['messages_p99']}  {result['bytes_mean']} B/lookup  "
            f"table {result['table_size_median']} peers  "
            f"{result['memory_per_node_kib']} KiB/node  "
            f"(build {result['build_s']} s, {result['cpu_ms_per_lookup']} ms CPU/lookup)",
            flush=True,
        )


if __name__ == "__main__":
    main()
