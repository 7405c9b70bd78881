"""The simulated world: nodes running the real group engine and store, a network and a clock.

Theory of operation
-------------------
Everything happens on one simulated clock (ms) from one event queue, so a run is a function of
its :class:`~.schedule.Schedule` and seed. A node is a :class:`~p2pchat.chat.core.engine.
ChatEngine` (the real one), a :class:`~.memstore.MemStore` (the real schema and SQL, in memory)
and a clock offset. The world plays each node's runtime (:mod:`.services`): it commits what
the engine asks, sends ``mrat``/``smsg``/``get``/``hds``/``dht``/``pkt`` as messages that the
network delays, drops, duplicates and reorders, serves them, and ticks each engine when it asks
to wake.

A crash drops the engine (its memory) and every message in flight to it or answering it; the
store stays. A crash can be armed for a node's next commit: ``before-commit`` (the transaction
is not written) or ``after-commit`` (written, but the engine never applies it). A restart loads
a fresh engine from the store as a node does at start-up. Partitions cut the links between two
sides; connection events reach the engines as links come and go.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import random
from collections.abc import Callable
from typing import Any

import attrs

from p2pchat.chat.core import crypto
from p2pchat.chat.core.engine import ChatEngine, ChatError
from p2pchat.chat.core.events import Connected, Disconnected, Tick
from p2pchat.chat.core.roster import Member, Role
from p2pchat.chat.core.roster_sync import ChainFetch, RosterPageError
from p2pchat.identity import KeyPair

from .invariants import Checker, InvariantError
from .node import CONFIG, JOIN_RETRY, MAX_EVENTS, MAX_JOIN_TRIES, QUERY_TIMEOUT, SETTLE, T0, Node
from .schedule import Schedule, Step
from .seeded import seeded_crypto
from .services import Services


@attrs.frozen
class SetUp:
    """The group built, as each node's store holds it: every run of one cast starts here."""

    now: int
    group_id: bytes
    stores: tuple[bytes, ...]


#: Set-ups by cast (ratifiers, users, viewers, spares), built once per process.
_SET_UPS: dict[tuple[int, int, int, int], SetUp] = {}


def set_up_for(schedule: Schedule) -> SetUp:
    """The set-up of ``schedule``'s cast: the same for every seed, so built once."""
    cast = (schedule.ratifiers, schedule.users, schedule.viewers, schedule.spares)
    built = _SET_UPS.get(cast)
    if built is None:
        plain = attrs.evolve(schedule, skews=(0,) * schedule.nodes, steps=())
        with seeded_crypto(int.from_bytes(bytes(cast), "big")):
            world = World(plain, net=f"set-up-{cast}")
            try:
                built = world.set_up()
            finally:
                for node in world.nodes:
                    node.store.close()
        _SET_UPS[cast] = built
    return built


class World(Services):
    def __init__(
        self, schedule: Schedule, *, gated: frozenset[str] = frozenset(), net: str = ""
    ) -> None:
        self.schedule = schedule
        self.rng = random.Random(net or f"net-{schedule.seed}")
        self.now = 0
        self.queue: list[tuple[int, int, Callable[[], None]]] = []
        self.seq = 0
        self.events = 0
        self.loss = 0.0
        self.duplication = 0.0
        self.max_delay = 5
        self.side: frozenset[int] | None = None
        self.checker = Checker(CONFIG, gated=gated)
        self.nodes = [
            Node(
                i,
                KeyPair.from_seed(hashlib.sha256(b"sim-node-%d" % i).digest()),
                crypto.HpkeKeyPair.from_private_bytes(
                    crypto.KEM_X25519, hashlib.sha256(b"sim-hpke-%d" % i).digest()
                ),
                schedule.skews[i],
            )
            for i in range(schedule.nodes)
        ]
        self.by_peer = {n.peer: n for n in self.nodes}
        self.group_id = b""

    # -- the run --------------------------------------------------------------------------------

    def run(self, set_up: SetUp) -> None:
        """Start from ``set_up``, play the schedule, settle, check the end.

        Raises:
            InvariantError: the first rule broken.
        """
        self._resume(set_up)
        start = self.now
        s = self.schedule
        self.loss, self.duplication, self.max_delay = s.loss, s.duplication, s.max_delay
        for step in s.steps:
            self.at(start + step.at, functools.partial(self.step, step))
        end = start + s.duration
        self.run_until(end)
        self.loss = self.duplication = 0.0
        self.max_delay = 50
        self.side = None
        for node in self.nodes:
            node.crash_on_commit = ""
            if node.engine is None:
                self.restart(node)
        self.relink()
        self.run_until(end + SETTLE)
        engines = {n.index: n.engine for n in self.nodes if n.engine is not None}
        self.checker.finish(engines, {n.index: n.store for n in self.nodes})

    def _resume(self, set_up: SetUp) -> None:
        """Start every node from its store as ``set_up`` left it (as a node restarts)."""
        self.now = set_up.now
        self.group_id = set_up.group_id
        for node, data in zip(self.nodes, set_up.stores, strict=True):
            node.store.conn.deserialize(data)
            engine = ChatEngine(node.identity, node.hpke, CONFIG)
            node.certified = {p.message_hash: p for p in node.store.load(engine, self.clock(node))}
            node.engine = engine
        owner = self.nodes[0].engine
        assert owner is not None
        view = owner.view(self.group_id)
        self.checker.start(view.signed)
        for packet in view.state.roster_packets:
            self.checker.learn_roster(packet)
        self.checker.certified.update(self.nodes[0].certified)
        self.relink()
        for node in self.nodes:
            self.handle(node, Tick(self.clock(node)))

    def set_up(self) -> SetUp:
        """Build the group (a perfect network, no skew) and keep what each node stored."""
        owner = self.nodes[0]
        owner.engine = ChatEngine(owner.identity, owner.hpke, CONFIG)
        self.group_id, commit = owner.engine.create_group(
            "sim",
            quorum=None,
            history="all",
            now=self.clock(owner),
            nonce=hashlib.sha256(b"sim-group").digest()[:16],
        )
        self.checker.start(commit.effect.view.signed)  # type: ignore[attr-defined]
        self.commit(owner, commit)
        for node in self.nodes[1:]:
            node.engine = ChatEngine(node.identity, node.hpke, CONFIG)
        self.relink()
        for index, role in enumerate(self.schedule.initial_roles()):
            if not role:
                continue
            node = self.nodes[index]
            self.invite(node, Role(role))
            self.run_until(self.now + 60_000, functools.partial(self.holds, node))
            if not self.holds(node):
                raise InvariantError("progress", f"n{index} could not join at set-up")
        return SetUp(self.now, self.group_id, tuple(n.store.conn.serialize() for n in self.nodes))

    def holds(self, node: Node) -> bool:
        return node.engine is not None and node.engine.find(self.group_id) is not None

    def at(self, when: int, fn: Callable[[], None]) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (when, self.seq, fn))

    def run_until(self, end: int, stop: Callable[[], bool] | None = None) -> None:
        while True:
            waking = min(
                (n for n in self.nodes if n.wake is not None),
                key=lambda n: (n.wake, n.index),
                default=None,
            )
            t_queue = self.queue[0][0] if self.queue else None
            t_wake = None if waking is None else waking.wake
            if t_queue is None and t_wake is None:
                self.now = end
                return
            t = min(t for t in (t_queue, t_wake) if t is not None)
            if t > end:
                self.now = end
                return
            self.now = max(self.now, t)
            self.events += 1
            if self.events > MAX_EVENTS:
                raise InvariantError("livelock", f"{MAX_EVENTS} events by t={self.now}")
            if waking is not None and t_wake == t and (t_queue is None or t_wake <= t_queue):
                waking.wake = None
                self.handle(waking, Tick(self.clock(waking)))
            else:
                _, _, fn = heapq.heappop(self.queue)
                fn()
            if stop is not None and stop():
                return

    def clock(self, node: Node) -> int:
        return T0 + self.now + node.skew

    # -- the schedule's steps -------------------------------------------------------------------

    def step(self, step: Step) -> None:
        node = self.nodes[step.node] if step.node >= 0 else self.nodes[0]
        if step.kind == "send":
            self.send_text(node)
        elif step.kind == "cancel":
            self.cancel(node)
        elif step.kind == "invite":
            self.invite(node, Role(step.role))
        elif step.kind == "remove":
            self.change_roster(node, None)
        elif step.kind == "role":
            self.change_roster(node, Role(step.role))
        elif step.kind == "crash":
            if node.engine is not None:
                if step.mode == "now":
                    self.crash(node)
                else:
                    node.crash_on_commit = step.mode
        elif step.kind == "restart":
            if node.engine is None:
                self.restart(node)
            node.crash_on_commit = ""
        elif step.kind == "partition":
            self.side = frozenset(step.side)
            self.relink()
        elif step.kind == "heal":
            self.side = None
            self.relink()

    def send_text(self, node: Node) -> None:
        engine = node.engine
        if engine is None or engine.find(self.group_id) is None:
            return
        node.sent += 1
        text = f"n{node.index} #{node.sent}".encode()
        try:
            _, commit = engine.author(
                self.group_id,
                text,
                message_type="text",
                mime="text/plain",
                ref_hash=None,
                now=self.clock(node),
            )
        except ChatError:
            return  # a viewer, a removed member: the CLI says so
        self.commit(node, commit)

    def cancel(self, node: Node) -> None:
        """The user withdraws its oldest queued message (``p2pchat cancel``)."""
        engine = node.engine
        if engine is None:
            return
        queued = engine.outbox_snapshot(self.clock(node))
        if not queued:
            return
        try:
            commit = engine.cancel(queued[0].message_hash)
        except ChatError:
            return  # its certificate is being committed: too late
        self.checker.cancelling(queued[0].message_hash)
        self.commit(node, commit)

    def invite(self, node: Node, role: Role) -> None:
        node.invited = True
        node.join_tries = 0
        self._change(node, Member(node.peer, role, node.hpke.kem, node.hpke.public_bytes()))
        self.at(self.now + 1, lambda: self.join(node))

    def change_roster(self, node: Node, role: Role | None) -> None:
        owner = self.nodes[0].engine
        if owner is None or node.index == 0:
            return
        current = owner.view(self.group_id).state.current_roster.member(node.peer)
        if current is None:
            return
        self._change(node, None if role is None else attrs.evolve(current, role=role))

    def _change(self, node: Node, entry: Member | None) -> None:
        owner = self.nodes[0]
        if owner.engine is None:
            return
        roster = owner.engine.view(self.group_id).state.current_roster
        members = [m for m in roster.members if m.peer != node.peer]
        if entry is not None:
            members.append(entry)
        added = node.peer if entry is not None and roster.member(node.peer) is None else None
        try:
            _, commit = owner.engine.change_roster(
                self.group_id, members, added=added, now=self.clock(owner)
            )
        except (ChatError, ValueError):
            return  # an earlier change still waits for its quorum, or no ratifier would stay
        self.commit(owner, commit)

    def join(self, node: Node) -> None:
        """An invited node joins through a node that holds the group (``pkt``)."""
        if not node.invited or self.holds(node) or node.join_tries >= MAX_JOIN_TRIES:
            return
        node.join_tries += 1
        self.at(self.now + JOIN_RETRY, lambda: self.join(node))
        if node.engine is None:
            return
        holders = [
            n for n in self.nodes if n is not node and self.holds(n) and self.linked(n, node)
        ]
        if not holders:
            return
        via = self.nodes[0] if self.nodes[0] in holders else self.rng.choice(holders)
        self._join_page(node, via, ChainFetch(self.group_id))

    def _join_page(self, node: Node, via: Node, session: ChainFetch) -> None:
        """Ask ``via`` for the next page of the chain (``SyncService.fetch_chain``); join with
        the chain once it is whole (``ChatNode.join``), then page the history."""
        first = session.next_from
        assert first is not None

        def joined(me: Node, body: dict[str, Any] | None) -> None:
            if body is None or me.engine is None or self.holds(me):
                return
            try:
                more = session.take(body)
            except RosterPageError:
                return
            if more:
                self._join_page(me, via, session)
                return
            assert session.state is not None
            try:
                commit = me.engine.join_chain(session.state, self.clock(me))
            except ChatError:
                return  # not in the chain yet: the invitation is still being ratified
            if commit is not None and self.commit(me, commit) is not None:
                self.history(me, via)

        self.request(node, via, lambda d, reply: reply(self.serve_pkt(d, node, first)), joined)

    # -- crashes and links ----------------------------------------------------------------------

    def crash(self, node: Node) -> None:
        assert node.engine is not None
        self.checker.before_crash(node.index, node.engine, node.store)
        node.engine = None
        node.incarnation += 1
        node.wake = None
        node.crash_on_commit = ""
        self.relink()

    def restart(self, node: Node) -> None:
        engine = ChatEngine(node.identity, node.hpke, CONFIG)
        held = node.store.load(engine, self.clock(node))
        node.certified = {p.message_hash: p for p in held}
        node.engine = engine
        node.links = set()
        self.checker.after_restart(node.index, engine, node.store)
        self.relink()
        self.handle(node, Tick(self.clock(node)))
        if node.invited and not self.holds(node):
            self.at(self.now + 1, lambda: self.join(node))

    def linked(self, a: Node, b: Node) -> bool:
        if a.engine is None or b.engine is None:
            return False
        return self.side is None or ((a.index in self.side) == (b.index in self.side))

    def relink(self) -> None:
        """Tell each engine of the links that came up or went down."""
        for a in self.nodes:
            if a.engine is None:
                a.links = set()
                continue
            for b in self.nodes:
                if a is b:
                    continue
                up = self.linked(a, b)
                if up and b.index not in a.links:
                    a.links.add(b.index)
                    self.handle(a, Connected(b.peer, self.clock(a)))
                elif not up and b.index in a.links:
                    a.links.discard(b.index)
                    self.handle(a, Disconnected(b.peer))

    # -- the network ----------------------------------------------------------------------------

    def send(self, src: Node, dst: Node, fn: Callable[[Node], None]) -> None:
        """Carry ``fn`` to ``dst``: run at arrival if ``dst`` is still the node it was sent to
        and still reachable."""
        if not self.linked(src, dst) or self.rng.random() < self.loss:
            return
        copies = 2 if self.rng.random() < self.duplication else 1
        incarnation = dst.incarnation
        for _ in range(copies):

            def arrive() -> None:
                if dst.incarnation == incarnation and self.linked(src, dst):
                    fn(dst)

            self.at(self.now + self.rng.randint(1, self.max_delay), arrive)

    def request(
        self,
        src: Node,
        dst: Node,
        serve: Callable[[Node, Callable[[Any], None]], None],
        answered: Callable[[Node, Any], None],
    ) -> None:
        """A query: ``serve`` runs at ``dst`` and replies; ``answered`` runs at ``src`` with the
        reply, or with None when none came in time (also at once when ``dst`` is unreachable).
        """
        incarnation = src.incarnation
        state = {"done": False}

        def finish(value: Any) -> None:
            if state["done"] or src.incarnation != incarnation:
                return
            state["done"] = True
            answered(src, value)

        if not self.linked(src, dst):
            finish(None)
            return

        def at_dst(d: Node) -> None:
            serve(d, lambda value: self.send(d, src, lambda _s: finish(value)))

        self.send(src, dst, at_dst)
        self.at(self.now + QUERY_TIMEOUT, lambda: finish(None))

    # -- the runtime: committing and carrying out actions --------------------------------------
