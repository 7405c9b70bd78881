"""A simulation's schedule: the group to build, the network's faults and the steps, all drawn
from one seed.

A :class:`Schedule` is data: :func:`generate` draws it from a seed; the runner replays it, with
a network whose per-message choices (delay, loss, duplication) come from a second generator
seeded by the same seed. Shrinking a failing run removes steps; ``keep`` names the steps left
(by their index in the full schedule) so that ``make sim SEED=... KEEP=...`` replays the shrunk
run exactly.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import attrs

#: Clock skew each node may have: pairwise at most 4 minutes, inside the spec's 5 (§6).
MAX_SKEW_MS = 120_000


@attrs.frozen
class Step:
    """One thing that happens at ``at`` (ms from the start of the faulty phase).

    kinds: ``send`` (node), ``cancel`` (node: its oldest queued message), ``invite`` (node,
    role), ``remove`` (node), ``role`` (node, role), ``crash`` (node; ``mode`` ``now``,
    ``before-commit`` or ``after-commit``), ``restart`` (node), ``partition`` (``side``: the
    nodes cut off from the others), ``heal``.
    """

    at: int
    kind: str
    node: int = -1
    role: str = ""
    mode: str = ""
    side: tuple[int, ...] = ()

    def describe(self) -> str:
        extra = [f"n{self.node}"] if self.node >= 0 else []
        extra += [x for x in (self.role, self.mode) if x]
        if self.kind == "partition":
            extra.append("{" + ",".join(f"n{i}" for i in self.side) + "} | rest")
        return f"t={self.at:>6} {self.kind} {' '.join(extra)}".rstrip()


@attrs.frozen
class Schedule:
    seed: int
    #: Node 0 owns the group; nodes 1..ratifiers-1 are ratifiers, then users, then viewers;
    #: the last ``spares`` nodes start outside the group (``invite`` brings them in).
    ratifiers: int
    users: int
    viewers: int
    spares: int
    loss: float
    duplication: float
    max_delay: int
    duration: int
    skews: tuple[int, ...]
    steps: tuple[Step, ...]

    @property
    def nodes(self) -> int:
        return self.ratifiers + self.users + self.viewers + self.spares

    def initial_roles(self) -> list[str]:
        """The role each node is invited with at set-up ("" for the owner and spares)."""
        roles = ["", *["ratifier"] * (self.ratifiers - 1), *["user"] * self.users]
        roles += ["viewer"] * self.viewers
        return roles + [""] * self.spares

    def keep(self, indices: Sequence[int]) -> Schedule:
        return attrs.evolve(self, steps=tuple(self.steps[i] for i in indices))

    def describe(self, indices: Sequence[int] | None = None) -> str:
        """The schedule in words; ``indices`` label the steps (default: their positions)."""
        labels = range(len(self.steps)) if indices is None else indices
        head = (
            f"seed {self.seed}: {self.ratifiers} ratifiers, {self.users} users, "
            f"{self.viewers} viewers, {self.spares} spares; loss {self.loss:.2f}, "
            f"duplication {self.duplication:.2f}, delay <= {self.max_delay} ms, "
            f"{self.duration} ms; skews {list(self.skews)}"
        )
        lines = [f"  [{i}] {s.describe()}" for i, s in zip(labels, self.steps, strict=True)]
        return "\n".join([head, *lines])


@attrs.frozen
class Size:
    """How big a drawn schedule may be."""

    name: str = "short"
    max_ratifiers: int = 5
    max_users: int = 2
    max_viewers: int = 1
    max_spares: int = 1
    max_steps: int = 16
    max_duration: int = 40_000


#: Short schedules for CI and ``make sim SEED=...``; tiny ones (a few nodes and steps) let CI
#: run many more in the same time; long ones for ``make sim RUNS=...``.
SHORT = Size()
TINY = Size(
    "tiny",
    max_ratifiers=4,
    max_users=1,
    max_viewers=1,
    max_spares=1,
    max_steps=10,
    max_duration=20_000,
)
LONG = Size(
    "long",
    max_ratifiers=9,
    max_users=3,
    max_viewers=2,
    max_spares=2,
    max_steps=40,
    max_duration=120_000,
)


def generate(seed: int, size: Size = SHORT) -> Schedule:
    """The schedule of ``seed``."""
    rng = random.Random(seed)
    ratifiers = rng.randint(3, size.max_ratifiers)
    users = rng.randint(0, size.max_users)
    viewers = rng.randint(0, size.max_viewers)
    spares = rng.randint(0, size.max_spares)
    n = ratifiers + users + viewers + spares
    duration = rng.randint(size.max_duration // 4, size.max_duration)
    loss = rng.choice([0.0, 0.0, 0.02, 0.1, 0.3])
    duplication = rng.choice([0.0, 0.05, 0.2])
    max_delay = rng.choice([5, 50, 300, 2_000])
    skews = tuple(rng.randint(-MAX_SKEW_MS, MAX_SKEW_MS) for _ in range(n))
    members = ratifiers + users + viewers
    spare_ids = list(range(members, n))
    steps: list[Step] = []
    for _ in range(rng.randint(size.max_steps // 3, size.max_steps)):
        at = rng.randrange(duration)
        roll = rng.random()
        node = rng.randrange(n)
        if roll < 0.45:
            steps.append(Step(at, "send", node))
        elif roll < 0.55:
            if spare_ids:
                steps.append(Step(at, "invite", spare_ids.pop(0), role=_role(rng)))
            else:
                steps.append(Step(at, "send", node))
        elif roll < 0.6:
            steps.append(Step(at, "remove", max(1, node)))
        elif roll < 0.65:
            steps.append(Step(at, "role", max(1, node), role=_role(rng)))
        elif roll < 0.85:
            mode = rng.choice(["now", "before-commit", "after-commit"])
            steps.append(Step(at, "crash", node, mode=mode))
            down = rng.randint(100, duration // 2)
            steps.append(Step(min(duration, at + down), "restart", node))
        else:
            side = tuple(sorted(rng.sample(range(n), rng.randint(1, max(1, n // 2)))))
            steps.append(Step(at, "partition", side=side))
            steps.append(Step(min(duration, at + rng.randint(100, duration)), "heal"))
    # Cancels come from their own generator, so that adding them left the other steps of every
    # seed as they were: now and then, an author withdraws its oldest queued message.
    cancels = random.Random(f"cancel-{seed}")
    for step in list(steps):
        if step.kind == "send" and cancels.random() < 0.15:
            steps.append(Step(step.at + cancels.randint(1, 5_000), "cancel", step.node))
    steps.sort(key=lambda s: s.at)
    return Schedule(
        seed,
        ratifiers,
        users,
        viewers,
        spares,
        loss,
        duplication,
        max_delay,
        duration,
        skews,
        tuple(steps),
    )


def _role(rng: random.Random) -> str:
    return rng.choice(["ratifier", "ratifier", "user", "viewer"])
