"""``p2pchat conformance``: a black-box conformance suite that one points at any libp2p node.

Each case is one async function registered in one table (:mod:`.registry`) with the paragraph
it checks and that paragraph's level (MUST, SHOULD, MAY). The cases forge bytes at every layer
with our sans-IO cores over a raw TCP connection (:mod:`.transport`, :mod:`.secure`,
:mod:`.mux`), the runner runs them one by one under a deadline (:mod:`.runner`), and the reports
are a table, JSON or JUnit XML (:mod:`.report`). Normative text: ``specs/conformance.md``.
"""

from __future__ import annotations

from .registry import CASES as CASES
from .registry import SUITES as SUITES
from .registry import Case as Case
from .registry import Level as Level
from .registry import NotApplicableError as NotApplicableError
from .registry import Outcome as Outcome
from .registry import ViolationError as ViolationError
from .registry import case as case
from .registry import select as select

__all__ = [
    "CASES",
    "SUITES",
    "Case",
    "Level",
    "NotApplicableError",
    "Outcome",
    "ViolationError",
    "case",
    "select",
]


def load_suites() -> None:
    """Register every case (importing the suites, which loads trio)."""
    from . import suites  # noqa: F401
