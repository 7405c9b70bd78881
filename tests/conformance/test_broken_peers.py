"""Each broken peer (our node with one fault on) fails exactly the cases that check its rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pchat.conformance import CASES, Outcome, load_suites, select
from p2pchat.conformance.runner import run_cases

from .broken import Fault, running_node, switch_on

pytestmark = pytest.mark.timeout(120)

#: Cases whose result depends on the machine's speed (checked by the benchmark-like run only).
TIMED = {"yamux.streams-over-time"}

EXPECTED = {
    Fault.IGNORES_WINDOW: ("yamux", {"yamux.respects-window"}),
    Fault.ACCEPTS_BAD_SIGNATURE: ("noise", {"noise.bad-signature", "noise.other-static-key"}),
    Fault.NO_NA: ("multistream", {"multistream.na", "multistream.pipelined-proposals"}),
    Fault.IDENTIFY_WRONG_KEY: ("identify", {"identify.public-key"}),
}


@pytest.mark.parametrize("fault", list(Fault), ids=lambda f: f.value)
async def test_broken_peer_fails_exactly_the_cases_of_its_rule(
    fault: Fault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_suites()
    suite, expected = EXPECTED[fault]
    cases = [c for c in select(CASES.values(), suites=[suite]) if c.id not in TIMED]
    switch_on(monkeypatch, fault)
    async with running_node(tmp_path) as addr:
        results = await run_cases(addr, cases, case_seconds=20.0)
    failed = {r.case.id for r in results if r.outcome is Outcome.FAIL}
    assert failed == expected, [(r.case.id, r.detail) for r in results if r.outcome is Outcome.FAIL]
