"""Running schedules: one, many, and shrinking a failing one to the steps that matter."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence

import attrs

from .invariants import InvariantError
from .memstore import forget_rows
from .mutations import MUTATIONS
from .schedule import SHORT, Schedule, Size, generate
from .seeded import memoized_pure, seeded_crypto
from .world import World, set_up_for

#: Runs a shrink may take.
MAX_SHRINK_RUNS = 200


@attrs.frozen
class Outcome:
    schedule: Schedule
    violation: InvariantError | None
    events: int
    counts: dict[str, int]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The engine logs every dropped message; a run of thousands of schedules should not."""
    logger = logging.getLogger("p2pchat")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def run_schedule(
    schedule: Schedule, *, gated: frozenset[str] = frozenset(), mutation: str | None = None
) -> Outcome:
    """Run ``schedule`` once, from nothing (the same schedule always runs the same way)."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(_quiet())
        stack.enter_context(memoized_pure())
        violation: InvariantError | None = None
        try:
            set_up = set_up_for(schedule)
        except InvariantError as exc:
            return Outcome(schedule, exc, 0, {})
        if mutation is not None:
            stack.enter_context(MUTATIONS[mutation]())
        stack.enter_context(seeded_crypto(schedule.seed))
        world = World(schedule, gated=gated)
        try:
            world.run(set_up)
        except InvariantError as exc:
            violation = exc
        finally:
            for node in world.nodes:
                node.store.close()
            forget_rows()
    return Outcome(schedule, violation, world.events, dict(world.checker.counts))


def run_seed(
    seed: int,
    size: Size = SHORT,
    *,
    keep: Sequence[int] | None = None,
    gated: frozenset[str] = frozenset(),
    mutation: str | None = None,
) -> Outcome:
    schedule = generate(seed, size)
    if keep is not None:
        schedule = schedule.keep(keep)
    return run_schedule(schedule, gated=gated, mutation=mutation)


def shrink(
    outcome: Outcome, *, gated: frozenset[str] = frozenset(), mutation: str | None = None
) -> tuple[Outcome, list[int]]:
    """The failing run with as few of its steps as still break the same rule (delta
    debugging: drop chunks, halving their size), and the indices of the steps kept."""
    assert outcome.violation is not None
    rule = outcome.violation.rule
    full = outcome.schedule
    kept = list(range(len(full.steps)))
    best = outcome
    runs = 0
    chunk = max(1, len(kept) // 2)
    while chunk >= 1 and runs < MAX_SHRINK_RUNS:
        start = 0
        removed_any = False
        while start < len(kept) and runs < MAX_SHRINK_RUNS:
            trial = kept[:start] + kept[start + chunk :]
            runs += 1
            result = run_schedule(full.keep(trial), gated=gated, mutation=mutation)
            if result.violation is not None and result.violation.rule == rule:
                kept, best, removed_any = trial, result, True
            else:
                start += chunk
        if not removed_any:
            chunk //= 2
    return best, kept


def sweep(
    seeds: range,
    size: Size = SHORT,
    *,
    gated: frozenset[str] = frozenset(),
    mutation: str | None = None,
    stop_at_first: bool = False,
) -> tuple[list[Outcome], float]:
    """Run every seed of ``seeds``; return the failing outcomes and the schedules per second."""
    failures: list[Outcome] = []
    began = time.perf_counter()
    done = 0
    for seed in seeds:
        outcome = run_seed(seed, size, gated=gated, mutation=mutation)
        done += 1
        if outcome.violation is not None:
            failures.append(outcome)
            if stop_at_first:
                break
    elapsed = time.perf_counter() - began
    return failures, done / elapsed if elapsed > 0 else 0.0
