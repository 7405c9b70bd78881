"""Benchmark: what one chat message costs as the group grows (5, 20, 50, 100 members).

The real sans-IO chat engines (``chat/core``) of every member run in this one process, driven by
a simulated network: a discrete-event loop in which every member is a machine of its own (one
event loop, one core) and every query travels over a link with a fixed one-way delay. Nothing
here is a socket or a clock; the figures are the protocol's, not this machine's load.

Group: an owner and two more ratifiers (quorum 2 of 3, the default majority) and users up to
the size. The author is a user, the common case. Each message is sent once the previous one has
reached every member (one user's sequential sends), as the engine and services do today:

* the author commits its message and asks each ratifier for a vote (``mrat``);
* each ratifier checks and commits it and answers with its vote (``mratR``);
* with the quorum the author commits the certificate and delivers the certified message
  (``smsg``; relayed, below); each member checks and commits it and answers (``smsgR``).

What is charged, per node
-------------------------
* CPU: the thread time of the engine calls (``author``, ``handle``, ``vote_request``,
  ``receive``: signatures, verifications, CBOR), of encoding and decoding each query and answer
  (``chat/core/wire.py``: the frames really sent) and of sealing and opening each with
  ChaCha20-Poly1305 (the Noise transport cipher), plus ``--hop-us`` per message and side for
  what the simulation does not run: trio, yamux, the query dispatcher and the system calls.
  The default, 70 us, is about a quarter of the median ping round trip of
  ``tools/bench_transport.py`` (two sends and two receives). A store's SQLite transaction is not
  charged (the same on every path; see ``tools/bench_ratify.py`` for real nodes).
* bytes: each frame as sent, with the yamux header (12) and the Noise framing and tag (18 per
  65,519 bytes).
* time: a node works on one thing at a time; what it sends leaves when the work that made it
  is done (so the author's n-th ``smsg`` leaves after n encodings and seals) and arrives
  ``--link-ms`` later.

Printed per group size: the author's CPU (ms) and bytes sent per message, messages on the wire
per message (queries and answers, all nodes), CPU per message over all nodes, and the delivery
latency from the send to the *last* member (p50, p99 over the messages), then the targets of
issue 18: the author's CPU at 100 members at most 2x that at 5, and p99 to the last member
under 250 ms at 100 members.

Delivery is relayed through members as the services do it (specs/chat.md §13, the split rule of
``chat/services/deliver.py``): a node sends at most ``--fanout`` (4) ``smsg``, each carrying in
``relay`` the members of its recipient's subtree, which the recipient, once it has checked and
committed the message, serves the same way; every member still checks the certificate.
``--fanout 0`` gives the direct delivery that came before (the author sends every member its
``smsg``): the "before" figure.

    python tools/bench_scale.py [--sizes 5,20,50,100] [--messages 40] [--hop-us 70]
        [--link-ms 0.1] [--fanout K] [--json]
"""

from __future__ import annotations

import argparse
import functools
import heapq
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

from p2pchat.chat.core import crypto, wire
from p2pchat.chat.core.engine import ChatEngine, EngineConfig
from p2pchat.chat.core.events import (
    Action,
    AskVote,
    Commit,
    Committed,
    Deliver,
    FetchKeys,
    KeysAnswered,
    Refused,
    VoteAnswered,
)
from p2pchat.chat.core.keyset import KeySet
from p2pchat.chat.core.packet import Packet, Vote
from p2pchat.chat.core.roster import Member, Role
from p2pchat.chat.core.txn import CommitResult, PutKeySet, PutVote
from p2pchat.chat.core.view import decode_vote
from p2pchat.chat.services.deliver import RELAY_FANOUT, relay_plan
from p2pchat.identity import KeyPair, PeerID
from p2pchat.protocols.noise.framework import MAX_PLAINTEXT_LEN, TAGLEN, CipherState

T0: Final = 1_700_000_000_000  # the engines' clock (ms) at simulated time 0
CONFIG: Final = EngineConfig(
    retry_initial=1_000, retry_max=8_000, attempt_timeout=5_000, sync_interval=30_000
)
YAMUX_HEADER: Final = 12
NOISE_OVERHEAD: Final = 2 + TAGLEN
RATIFIERS: Final = 3
TARGET_CPU_RATIO: Final = 2.0
TARGET_P99_MS: Final = 250.0
WARMUP: Final = 3  # messages sent first and not counted


def _wire_bytes(frame_len: int) -> int:
    noise_frames = max(1, math.ceil((frame_len + YAMUX_HEADER) / MAX_PLAINTEXT_LEN))
    return frame_len + YAMUX_HEADER + noise_frames * NOISE_OVERHEAD


@attrs.define
class _Node:
    engine: ChatEngine
    busy_until: float = 0.0
    cpu: float = 0.0
    bytes_sent: int = 0
    votes: dict[bytes, bytes] = attrs.Factory(dict)


@attrs.define
class _Work:
    """One node at work from ``start``: its clock advances with the CPU it spends."""

    node: _Node
    start: float
    hop: float
    t0: float = attrs.Factory(time.thread_time)
    extra: float = 0.0

    def elapsed(self) -> float:
        return time.thread_time() - self.t0 + self.extra

    def now(self) -> float:
        return self.start + self.elapsed()


class Network:
    """Every member's engine, a link delay, and a queue of timed events."""

    def __init__(self, *, hop_s: float, link_s: float, fanout: int = 0) -> None:
        self.nodes: dict[PeerID, _Node] = {}
        #: 0: the author sends every member its smsg (before §13). K: relayed, as the services do.
        self.fanout = fanout
        self.hop_s = hop_s
        self.link_s = link_s
        self._queue: list[tuple[float, int, Callable[[float], None]]] = []
        self._seq = 0
        self._ciphers: dict[tuple[PeerID, PeerID], tuple[CipherState, CipherState]] = {}
        self.wire_messages = 0
        self.delivered: dict[bytes, dict[PeerID, float]] = {}
        self.timed = False  # False while the group is built: no clock, no charges
        #: The key set of each roster message (specs/chat.md §20), by its hash: its owner
        #: stores it, and the members get their entries while the group is built (untimed).
        self.key_sets: dict[bytes, bytes] = {}

    def add(self) -> ChatEngine:
        engine = ChatEngine(KeyPair.generate(), crypto.HpkeKeyPair.generate(), CONFIG)
        self.nodes[engine.peer_id] = _Node(engine)
        return engine

    # -- the event loop -------------------------------------------------------------------------

    def at(self, when: float, fn: Callable[[float], None]) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (when, self._seq, fn))

    def run(self) -> None:
        while self._queue:
            when, _, fn = heapq.heappop(self._queue)
            fn(when)

    def work(self, peer: PeerID, arrival: float, job: Callable[[_Work], None]) -> None:
        """Run ``job`` on ``peer`` once it is free, charging its CPU."""
        node = self.nodes[peer]
        w = _Work(node, max(arrival, node.busy_until), self.hop_s if self.timed else 0.0)
        job(w)
        spent = w.elapsed()
        node.busy_until = w.start + spent
        if self.timed:
            node.cpu += spent

    # -- queries ----------------------------------------------------------------------------

    def _cipher_pair(self, src: PeerID, dst: PeerID) -> tuple[CipherState, CipherState]:
        pair = self._ciphers.get((src, dst))
        if pair is None:
            key = os.urandom(32)
            pair = self._ciphers[(src, dst)] = (CipherState(key), CipherState(key))
        return pair

    def send(
        self,
        w: _Work,
        dst: PeerID,
        envelope: wire.Query | wire.Response,
        on_arrival: Callable[[_Work, Mapping[str, Any]], None],
    ) -> None:
        """Encode and seal ``envelope`` on ``w``'s node; the peer opens, decodes and handles it."""
        frame = wire.encode_envelope(envelope)
        seal, open_ = self._cipher_pair(w.node.engine.peer_id, dst)
        sealed = [
            seal.encrypt_with_ad(None, frame[i : i + MAX_PLAINTEXT_LEN])
            for i in range(0, len(frame), MAX_PLAINTEXT_LEN)
        ]
        w.extra += w.hop
        if self.timed:
            w.node.bytes_sent += _wire_bytes(len(frame))
            self.wire_messages += 1
        leaves = w.now()

        def arrive(when: float) -> None:
            def job(r: _Work) -> None:
                plain = b"".join(open_.decrypt_with_ad(None, s) for s in sealed)
                reader = wire.FrameReader()
                reader.receive_data(plain)
                event = reader.next_event()
                assert isinstance(event, dict), event
                r.extra += r.hop
                on_arrival(r, wire.parse_envelope(event).body)

            self.work(dst, when, job)

        self.at(leaves + self.link_s, arrive)

    # -- what the services do with the engine's actions -------------------------------------------

    def now_ms(self, w: _Work) -> int:
        return T0 + int(w.now() * 1000)

    def commit(self, w: _Work, commit: Commit) -> CommitResult:
        result = CommitResult()
        for op in commit.txn.operations:
            if isinstance(op, PutVote):
                result.votes[op.message_hash] = w.node.votes.setdefault(op.message_hash, op.vote)
            elif isinstance(op, PutKeySet):
                self.key_sets.setdefault(op.message_hash, op.data)
        self.apply(w, w.node.engine.handle(Committed(commit, result, self.now_ms(w))))
        return result

    def apply(self, w: _Work, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Commit):
                self.commit(w, action)
            elif isinstance(action, AskVote):
                self._ask(w, action)
            elif isinstance(action, Deliver):
                body = {"group_id": action.group_id, "packet": action.packet.to_cbor()}
                self._fan_out(w, body, list(action.peers))
            elif isinstance(action, FetchKeys):
                # ``keys`` (§20), answered at once: only roster changes need it, made while
                # the group is built.
                held = self.key_sets.get(action.message_hash)
                mine = None if held is None else KeySet.decode(held).mine(w.node.engine.peer_id)
                event = KeysAnswered(
                    action.group_id, action.message_hash, action.holder, mine, self.now_ms(w)
                )
                self.apply(w, w.node.engine.handle(event))

    def _ask(self, w: _Work, action: AskVote) -> None:
        author = w.node.engine.peer_id
        message_hash = action.packet.message_hash
        group_id = action.group_id

        def answered(a: _Work, body: Mapping[str, Any]) -> None:
            vote = Vote.from_cbor(body["vote"]) if "vote" in body else None
            reason = body.get("reason")
            event = VoteAnswered(
                group_id, message_hash, action.ratifier, vote, reason, self.now_ms(a)
            )
            self.apply(a, a.node.engine.handle(event))

        def vote(r: _Work, body: Mapping[str, Any]) -> None:
            packet = Packet.from_cbor(body["packet"])
            decision = r.node.engine.vote_request(body["group_id"], packet, author, self.now_ms(r))
            if isinstance(decision, Commit):
                result = self.commit(r, decision)
                answer: dict[str, Any] = {
                    "vote": decode_vote(result.votes[packet.message_hash]).to_cbor()
                }
            else:
                reason = decision.reason if isinstance(decision, Refused) else "missing parents"
                answer = {"reason": reason}
            self.send(r, author, wire.Response("mratR", 1, True, answer), answered)

        self.send(w, action.ratifier, wire.Query("mrat", 1, dict(body_of(action))), vote)

    def _fan_out(self, w: _Work, body: dict[str, Any], peers: list[PeerID]) -> None:
        """``fanout`` 0: one ``smsg`` per peer (direct delivery, before §13). Otherwise the
        services' split rule (specs/chat.md §13): at most ``fanout``, each carrying the rest of
        its subtree for the recipient to pass on the same way."""
        if not self.fanout:
            for peer in peers:
                self._deliver(w, peer, body, [])
            return
        for head, rest in relay_plan(peers, self.fanout):
            self._deliver(w, head, body, list(rest))

    def _deliver(self, w: _Work, peer: PeerID, body: dict[str, Any], relay: list[PeerID]) -> None:
        sender = w.node.engine.peer_id
        query = dict(body)
        if relay:
            query["relay"] = [p.to_bytes() for p in relay]

        def receive(m: _Work, got: Mapping[str, Any]) -> None:
            packet = Packet.from_cbor(got["packet"])
            decision = m.node.engine.receive(got["group_id"], packet, self.now_ms(m))
            if isinstance(decision, Commit):
                self.commit(m, decision)
            self.delivered.setdefault(packet.message_hash, {})[m.node.engine.peer_id] = m.now()
            self.send(m, sender, wire.Response("smsgR", 1, True, {}), lambda _a, _b: None)
            if "relay" in got:
                rest = [PeerID.from_bytes(p) for p in got["relay"]]
                self._fan_out(m, {"group_id": got["group_id"], "packet": got["packet"]}, rest)

        self.send(w, peer, wire.Query("smsg", 1, query), receive)


def body_of(action: AskVote) -> dict[str, Any]:
    return {"group_id": action.group_id, "packet": action.packet.to_cbor()}


# -- building a group (untimed) --------------------------------------------------------------------


def _commit_job(net: Network, commit: Commit, w: _Work) -> None:
    net.commit(w, commit)


def build_group(net: Network, size: int) -> tuple[bytes, list[ChatEngine]]:
    """An owner and two more ratifiers, added one by one, then every user in one roster change;
    every member joins from the owner's chain and holds the same roster."""
    owner = net.add()
    boot = _Work(net.nodes[owner.peer_id], 0.0, 0.0)
    group_id, commit = owner.create_group(
        "bench", quorum=None, history="all", now=T0, nonce=os.urandom(16)
    )
    net.commit(boot, commit)
    net.run()
    members = [owner]
    batches = [[Role.RATIFIER] for _ in range(1, min(size, RATIFIERS))]
    if size > RATIFIERS:
        batches.append([Role.USER] * (size - RATIFIERS))
    for roles in batches:
        joining = [net.add() for _ in roles]
        view = owner.view(group_id)
        entries = [
            Member(m.peer_id, role, m.hpke.kem, m.hpke.public_bytes())
            for m, role in zip(joining, roles, strict=True)
        ]
        roster = [*view.state.current_roster.members, *entries]
        added = joining[0].peer_id if len(joining) == 1 else None
        _, change = owner.change_roster(group_id, roster, added=added, now=T0)
        net.work(owner.peer_id, 0.0, functools.partial(_commit_job, net, change))
        net.run()
        chain = {
            "genesis": view.signed.to_cbor(),
            "rosters": [p.to_cbor() for p in owner.view(group_id).state.roster_packets],
        }
        for member in joining:
            join = member.join(group_id, chain, T0)
            assert join is not None, "join refused"
            net.work(member.peer_id, 0.0, functools.partial(_commit_job, net, join))
            net.run()
        members.extend(joining)
    epoch = owner.view(group_id).state.current_epoch
    for member in members:
        assert member.view(group_id).state.current_epoch == epoch, "a member missed the roster"
    return group_id, members


# -- one group size --------------------------------------------------------------------------------


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _author_one(net: Network, group_id: bytes, payload: bytes, sent: list[bytes], w: _Work) -> None:
    packet, commit = w.node.engine.author(
        group_id, payload, message_type="text", mime="text/plain", ref_hash=None, now=net.now_ms(w)
    )
    sent.append(packet.message_hash)
    net.commit(w, commit)


def measure(
    size: int, messages: int, *, hop_s: float, link_s: float, fanout: int = 0
) -> dict[str, Any]:
    net = Network(hop_s=hop_s, link_s=link_s)
    started = time.perf_counter()
    group_id, members = build_group(net, size)
    build_s = time.perf_counter() - started
    author = members[RATIFIERS] if size > RATIFIERS else members[-1]
    others = [m.peer_id for m in members if m is not author]
    for node in net.nodes.values():
        node.busy_until = 0.0
    net.timed = True
    net.fanout = fanout  # (the group itself was built with direct delivery)
    clock = 1.0
    rows: list[dict[str, float]] = []
    for index in range(WARMUP + messages):
        node = net.nodes[author.peer_id]
        cpu_before = {p: n.cpu for p, n in net.nodes.items()}
        bytes_before, wire_before = node.bytes_sent, net.wire_messages
        sent_hash: list[bytes] = []
        job = functools.partial(_author_one, net, group_id, b"message %d" % index, sent_hash)
        net.at(clock, functools.partial(net.work, author.peer_id, job=job))
        net.run()
        (message_hash,) = sent_hash
        got = net.delivered.get(message_hash, {})
        missing = [p for p in others if p not in got]
        if missing:
            raise SystemExit(f"size {size}: message {index} did not reach {len(missing)} members")
        last = max(got[p] for p in others)
        if index >= WARMUP:
            rows.append(
                {
                    "author_cpu_ms": (node.cpu - cpu_before[author.peer_id]) * 1e3,
                    "all_cpu_ms": sum(n.cpu - cpu_before[p] for p, n in net.nodes.items()) * 1e3,
                    "author_bytes": node.bytes_sent - bytes_before,
                    "wire_messages": net.wire_messages - wire_before,
                    "last_member_ms": (last - clock) * 1e3,
                }
            )
        clock = max(n.busy_until for n in net.nodes.values()) + 0.001
    last_ms = [r["last_member_ms"] for r in rows]
    return {
        "members": size,
        "messages": len(rows),
        "build_s": round(build_s, 2),
        "author_cpu_ms": round(statistics.median(r["author_cpu_ms"] for r in rows), 3),
        "all_nodes_cpu_ms": round(statistics.median(r["all_cpu_ms"] for r in rows), 3),
        "author_bytes": int(statistics.median(r["author_bytes"] for r in rows)),
        "wire_messages": int(statistics.median(r["wire_messages"] for r in rows)),
        "last_member_p50_ms": round(_pct(last_ms, 0.50), 3),
        "last_member_p99_ms": round(_pct(last_ms, 0.99), 3),
    }


def targets(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_size = {r["members"]: r for r in results}
    out: list[dict[str, Any]] = []
    small, large = by_size.get(5), by_size.get(100)
    if small and large:
        ratio = large["author_cpu_ms"] / small["author_cpu_ms"]
        out.append(
            {
                "name": "author CPU per message, 100 members / 5 members",
                "value": round(ratio, 2),
                "goal": f"<= {TARGET_CPU_RATIO:g}",
                "met": ratio <= TARGET_CPU_RATIO,
            }
        )
    if large:
        p99 = large["last_member_p99_ms"]
        out.append(
            {
                "name": "p99 send -> last member at 100 members, ms",
                "value": p99,
                "goal": f"< {TARGET_P99_MS:g}",
                "met": p99 < TARGET_P99_MS,
            }
        )
    return out


def render(result: dict[str, Any]) -> str:
    p = result["parameters"]
    lines = [
        "Scale benchmark: one message through a group of N, every member a simulated machine",
        f"  real chat engines, one process; link {p['link_ms']:g} ms one way; transport overhead"
        f" {p['hop_us']:g} us per message and side; {p['messages']} messages per size"
        f" after {WARMUP} warm-up; sequential sends; author = a user; 3 ratifiers, quorum 2",
        "  delivery: "
        + (
            "direct: the author sends every member its smsg (before specs/chat.md 11)"
            if not p["fanout"]
            else f"relayed through members (specs/chat.md 11), at most {p['fanout']} smsg per"
            " node, each carrying the subtree its recipient passes on"
        ),
        "",
        f"  {'members':>7}{'author CPU':>12}{'author sent':>13}{'on the wire':>13}"
        f"{'all nodes CPU':>15}{'last member':>13}{'last member':>13}",
        f"  {'':>7}{'ms/msg':>12}{'bytes/msg':>13}{'msgs/msg':>13}{'ms/msg':>15}"
        f"{'p50 ms':>13}{'p99 ms':>13}",
    ]
    for r in result["sizes"]:
        lines.append(
            f"  {r['members']:>7}{r['author_cpu_ms']:>12.2f}{r['author_bytes']:>13,}"
            f"{r['wire_messages']:>13}{r['all_nodes_cpu_ms']:>15.2f}"
            f"{r['last_member_p50_ms']:>13.2f}{r['last_member_p99_ms']:>13.2f}"
        )
    lines += ["", "targets (issue 18)"]
    for t in result["targets"]:
        verdict = "met" if t["met"] else "MISSED"
        lines.append(f"  {t['name']:<50}{t['value']:>9}  {t['goal']:<7} {verdict}")
    if not result["targets"]:
        lines.append("  not evaluated: need sizes 5 and 100")
    lines += [
        "",
        "author CPU and bytes: medians per message; on the wire: queries and answers of all",
        "nodes; last member: from the send to the moment the last member has committed it.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="5,20,50,100", help="group sizes, comma-separated")
    parser.add_argument("--messages", type=int, default=40, help="messages measured per size")
    parser.add_argument("--hop-us", type=float, default=70.0, help="transport CPU per side, us")
    parser.add_argument("--link-ms", type=float, default=0.1, help="one-way link delay, ms")
    parser.add_argument(
        "--fanout",
        type=int,
        default=RELAY_FANOUT,
        help=f"smsg per node, relayed (specs/chat.md 11; {RELAY_FANOUT}); 0: direct delivery",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if any(s < 2 for s in sizes) or args.messages < 1 or args.hop_us < 0 or args.link_ms < 0:
        parser.error("sizes must be >= 2, --messages >= 1, --hop-us and --link-ms >= 0")
    if args.fanout < 0 or args.fanout == 1:
        parser.error("--fanout is 0 (direct delivery) or at least 2")
    results = []
    for size in sizes:
        results.append(
            measure(
                size,
                args.messages,
                hop_s=args.hop_us / 1e6,
                link_s=args.link_ms / 1e3,
                fanout=args.fanout,
            )
        )
        print(f"  ... {size} members done", file=sys.stderr, flush=True)
    result = {
        "parameters": {
            "hop_us": args.hop_us,
            "link_ms": args.link_ms,
            "messages": args.messages,
            "fanout": args.fanout,
        },
        "sizes": results,
        "targets": targets(results),
    }
    print(json.dumps(result) if args.json else render(result))


if __name__ == "__main__":
    main()
