"""The table of conformance cases: each case is one async function with its metadata.

A suite module registers its cases with :func:`case`; the order of registration is the order in
which they run. Nothing here does I/O: the runner (:mod:`.runner`) hands each function a
:class:`~p2pchat.conformance.context.CaseContext` and turns what it raises into a result.
Normative text: ``specs/conformance.md``.
"""

from __future__ import annotations

import enum
import fnmatch
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Final

import attrs

if TYPE_CHECKING:
    from .context import CaseContext

__all__ = [
    "CASES",
    "SUITES",
    "Case",
    "CaseResult",
    "Level",
    "NotApplicableError",
    "Outcome",
    "ViolationError",
    "case",
    "select",
]


class Level(enum.Enum):
    """How binding the rule a case checks is (RFC 2119 keywords of the cited text)."""

    MUST = "MUST"
    SHOULD = "SHOULD"
    MAY = "MAY"


class Outcome(enum.Enum):
    """What a case found."""

    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"


class ViolationError(Exception):
    """The target broke the rule; the message says what was sent and what came back."""


class NotApplicableError(Exception):
    """The case does not apply to this target (it does not offer the protocol or feature)."""


CaseFunction = Callable[["CaseContext"], Awaitable[None]]

#: The suites, in the order they run (the protocol stack, bottom up).
SUITES: Final = ("multistream", "noise", "yamux", "identify", "ping", "perf", "chat")


@attrs.frozen
class Case:
    """One registered case: ``run(ctx)`` returns when the target kept the rule."""

    id: str
    suite: str
    level: Level
    #: The paragraph checked: document, section, and the rule in a few words.
    spec: str
    title: str
    run: CaseFunction = attrs.field(eq=False, repr=False)
    #: The case may take this many times the run's per-case timeout (cases that measure).
    budget: float = 1.0


@attrs.frozen
class CaseResult:
    """What one case found."""

    case: Case
    outcome: Outcome
    detail: str
    seconds: float

    @property
    def failed_must(self) -> bool:
        """A MUST that the target breaks."""
        return self.outcome is Outcome.FAIL and self.case.level is Level.MUST


#: Every case, by id, in registration order.
CASES: Final[dict[str, Case]] = {}


def case(
    case_id: str, *, level: Level, spec: str, title: str, budget: float = 1.0
) -> Callable[[CaseFunction], CaseFunction]:
    """Register the decorated function as the case ``case_id`` (``suite.name``).

    Raises:
        ValueError: the id is taken, or its suite is not one of :data:`SUITES`.
    """
    suite = case_id.partition(".")[0]
    if suite not in SUITES:
        raise ValueError(f"case {case_id!r} is in no known suite")

    def register(function: CaseFunction) -> CaseFunction:
        if case_id in CASES:
            raise ValueError(f"case {case_id!r} is registered twice")
        CASES[case_id] = Case(case_id, suite, level, spec, title, function, budget)
        return function

    return register


def select(
    cases: Iterable[Case], *, suites: Iterable[str] = (), patterns: Iterable[str] = ()
) -> list[Case]:
    """The cases in ``suites`` (all when empty) whose id matches one of ``patterns`` (shell
    wildcards, or a plain substring; all when empty), in suite order then registration order.

    Raises:
        ValueError: an unknown suite name.
    """
    wanted = tuple(suites)
    unknown = sorted(set(wanted) - set(SUITES))
    if unknown:
        raise ValueError(f"unknown suite {unknown[0]!r} (suites: {', '.join(SUITES)})")
    globs = tuple(patterns)

    def matches(item: Case) -> bool:
        if wanted and item.suite not in wanted:
            return False
        return not globs or any(g in item.id or fnmatch.fnmatchcase(item.id, g) for g in globs)

    chosen = [c for c in cases if matches(c)]
    return sorted(chosen, key=lambda c: SUITES.index(c.suite))
