"""Crash points: a node dies at its k-th commit, for every k, and must recover.

A scripted scenario (create, invites, joins, sends, votes, a roster change, a removal, more
sends) runs on four nodes on 127.0.0.1. One of them, the victim, runs on a store that kills it
at its k-th commit, before the commit is durable or just after. The victim is then restarted
from its data dir, the scenario goes on (a step the crash interrupted is done again), and in the
end every node holds every message whose send was acknowledged, and the victim holds exactly
what the owner holds. A dry run counts the victim's commits, so every commit point is covered.

The full sweep (every k, both sides of the commit, two victims) is slow; ``make test`` runs a
spread of points and ``make check-slow`` runs them all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import attrs
import pytest
import trio

from chat.cluster import Cluster, Peer, open_cluster
from chat.crash import CrashingStore, SimulatedCrashError
from p2pchat.chat.core.roster import Role
from p2pchat.chat.store import ChatStore

NAMES = ("owner", "ratifier2", "ratifier3", "user")
STEP_TRIES = 5
CONVERGE_TIMEOUT = 30.0


@attrs.define
class Run:
    cluster: Cluster
    victim: Peer
    crash_at: int | None
    after: bool
    stores: list[CrashingStore] = attrs.Factory(list)
    group_id: bytes | None = None
    acknowledged: set[bytes] = attrs.Factory(set)

    def peer(self, name: str) -> Peer:
        return next(p for p in self.cluster.peers if p.name == name)

    @property
    def crashed(self) -> bool:
        return any(store.dead for store in self.stores)

    @property
    def gid(self) -> bytes:
        assert self.group_id is not None
        return self.group_id


def _wrapper(run: Run, crash_at: int | None) -> Callable[[ChatStore], CrashingStore]:
    def wrap(store: ChatStore) -> CrashingStore:
        crashing = CrashingStore(store, crash_at, after=run.after)
        run.stores.append(crashing)
        return crashing

    return wrap


async def _create(run: Run) -> None:
    owner = run.peer("owner")
    held = owner.chat.groups()
    run.group_id = held[0] if held else await owner.chat.create_group("crash points")


async def _add(run: Run, name: str, role: Role) -> None:
    owner, member = run.peer("owner"), run.peer(name)
    roster = owner.chat.group_state(run.gid).current_roster
    entry = roster.member(member.peer_id)
    if entry is None or entry.role is not role:
        await owner.chat.invite(run.gid, member.peer_id, role)
    await member.chat.join(run.gid, owner.peer_id)


async def _send(run: Run, name: str, text: str) -> None:
    run.acknowledged.add(await run.peer(name).chat.send(run.gid, text))


async def _remove(run: Run, name: str) -> None:
    owner, member = run.peer("owner"), run.peer(name)
    if owner.chat.group_state(run.gid).current_roster.member(member.peer_id) is not None:
        await owner.chat.remove(run.gid, member.peer_id)


Step = Callable[[Run], Awaitable[None]]

SCENARIO: tuple[Step, ...] = (
    _create,
    lambda run: _add(run, "ratifier2", Role.RATIFIER),
    lambda run: _add(run, "ratifier3", Role.RATIFIER),
    lambda run: _add(run, "user", Role.USER),
    lambda run: _send(run, "owner", "one"),
    lambda run: _send(run, "ratifier2", "two"),
    lambda run: _send(run, "user", "three"),
    lambda run: _send(run, "ratifier3", "four"),
    lambda run: _remove(run, "user"),
    lambda run: _send(run, "owner", "five"),
    lambda run: _send(run, "ratifier2", "six"),
)


async def _restart_victim(run: Run) -> None:
    victim = run.victim
    await victim.stop()
    victim.wrap_store = _wrapper(run, None)
    await victim.start()


async def _attempt(run: Run, step: Step) -> Exception | None:
    """Run ``step``; its error, or a :class:`SimulatedCrashError` if the victim died meanwhile
    (a call into a dead node is abandoned then, as a client of a killed process gives up)."""
    store = run.stores[-1]
    failure: list[Exception] = []
    async with trio.open_nursery() as nursery:

        async def body() -> None:
            try:
                await step(run)
            except Exception as exc:
                failure.append(exc)
            nursery.cancel_scope.cancel()

        async def watch() -> None:
            await store.crashed.wait()
            failure.append(SimulatedCrashError("the victim died during the step"))
            nursery.cancel_scope.cancel()

        nursery.start_soon(body)
        nursery.start_soon(watch)
    return failure[0] if failure else None


async def _run_step(run: Run, step: Step) -> None:
    failures: list[Exception] = []
    for _ in range(STEP_TRIES):
        failure = await _attempt(run, step)
        if failure is None:
            return
        if not run.crashed:
            raise failure
        failures.append(failure)
        if run.stores[-1].dead:
            await _restart_victim(run)
        await trio.sleep(0.2)  # what the restarted node resumes by itself may be under way
    raise ExceptionGroup("a step failed every time after the crash", failures)


async def _hashes(peer: Peer, group_id: bytes) -> set[bytes]:
    return {m.message_hash for m in await peer.chat.history(group_id)}


async def _converged(run: Run) -> None:
    """Every acknowledged message everywhere; the victim holds what the owner holds; nothing
    queued. A victim that dies at a commit it makes meanwhile is restarted too."""
    owner = run.peer("owner")
    survivors = [run.peer(n) for n in ("owner", "ratifier2", "ratifier3")]
    with trio.fail_after(CONVERGE_TIMEOUT):
        while True:
            if run.stores[-1].dead:
                await _restart_victim(run)
            try:
                held = [await _hashes(p, run.gid) for p in survivors]
                victim = await _hashes(run.victim, run.gid)
            except SimulatedCrashError:
                continue
            everywhere = all(run.acknowledged <= h for h in held)
            idle = not owner.chat.engine.outbox and not run.victim.chat.engine.outbox
            if everywhere and victim == held[0] and idle:
                return
            await trio.sleep(0.1)


async def scenario(tmp_path: Path, victim: str, crash_at: int | None, *, after: bool) -> int:
    """Run the scenario with ``victim`` dying at commit ``crash_at``; return how many commits
    the victim's first run made (all of them when it did not die)."""
    async with open_cluster(tmp_path, *NAMES, start=False) as cluster:
        run = Run(cluster, next(p for p in cluster.peers if p.name == victim), crash_at, after)
        run.victim.wrap_store = _wrapper(run, crash_at)
        for peer in cluster.peers:
            await peer.start()
        for step in SCENARIO:
            await _run_step(run, step)
        await _converged(run)
        return run.stores[0].commits


VICTIMS = ("owner", "ratifier2")
#: The commit points ``make test`` covers; ``make check-slow`` covers every one.
SPREAD = (1, 2, 3, 5, 8, 13, 21)


@pytest.mark.parametrize("victim", VICTIMS)
@pytest.mark.parametrize("after", [False, True], ids=["before-commit", "after-commit"])
@pytest.mark.timeout(300)
async def test_a_spread_of_crash_points(tmp_path: Path, victim: str, after: bool) -> None:
    total = await scenario(tmp_path / "dry", victim, None, after=after)
    assert total >= max(SPREAD), f"the scenario makes only {total} commits on {victim}"
    for k in SPREAD:
        died_at = await scenario(tmp_path / f"k{k}", victim, k, after=after)
        assert died_at == k


@pytest.mark.slow
@pytest.mark.parametrize("victim", VICTIMS)
@pytest.mark.parametrize("after", [False, True], ids=["before-commit", "after-commit"])
@pytest.mark.timeout(3600)
async def test_every_crash_point(tmp_path: Path, victim: str, after: bool) -> None:
    total = await scenario(tmp_path / "dry", victim, None, after=after)
    for k in range(1, total + 1):
        died_at = await scenario(tmp_path / f"k{k}", victim, k, after=after)
        assert died_at == k
