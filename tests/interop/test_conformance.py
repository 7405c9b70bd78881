"""``p2pchat conformance`` against py-libp2p 0.8.1: every MUST passes; what it does not keep
is recorded in specs/conformance.md "Observed in py-libp2p 0.8.1", and checked here so that the
record stays true."""

from __future__ import annotations

import pytest
import trio

from conftest import PyLibp2p
from p2pchat.conformance import CASES, Level, Outcome, load_suites
from p2pchat.conformance.runner import run_cases
from p2pchat.multiaddr import Multiaddr

pytestmark = [pytest.mark.interop, pytest.mark.timeout(240)]

#: What py-libp2p 0.8.1 does not do (specs/conformance.md), case by case.
OBSERVED = {
    "multistream.ls": {Outcome.FAIL},  # entries not length-prefixed
    "noise.inlined-muxer": {Outcome.SKIP},  # no muxers in its Noise extensions
    # It logs the overrun ("peer exceeded receive window") and usually carries on; sometimes,
    # depending on timing, the connection ends within the case's time and the case passes.
    "yamux.window-overrun": {Outcome.FAIL, Outcome.PASS},
    "yamux.goaway": {Outcome.FAIL},  # drops the connection on GoAway(0)
}
#: Whether py-libp2p finishes these in a case's time depends on the machine's load (figures,
#: not rules; specs/conformance.md gives them).
TIMED = {"yamux.concurrent-streams", "yamux.streams-over-time", "yamux.stream-limit"}


async def test_pylibp2p_keeps_every_must_and_breaks_what_specs_record(pylibp2p: PyLibp2p) -> None:
    load_suites()
    cases = [c for c in CASES.values() if c.id not in TIMED]
    async with pylibp2p.listen(lifetime=210) as peer:
        target = Multiaddr.from_string(peer["addrs"][0])
        # py-libp2p is slow at scale: each case gets twice the default time.
        results = await run_cases(target, cases, case_seconds=20)
        # On a loaded machine py-libp2p counts a case's closed connections against its limit of
        # 8 per peer for a while ("Established per peer limit exceeded") and refuses the next
        # case's; a failed case where no rule is recorded runs again (at most twice) after a pause.
        for _ in range(2):
            again = [
                r.case for r in results if r.outcome is Outcome.FAIL and r.case.id not in OBSERVED
            ]
            if not again:
                break
            await trio.sleep(10)
            retried = {r.case.id: r for r in await run_cases(target, again, case_seconds=20)}
            results = [retried.get(r.case.id, r) for r in results]
    outcome = {r.case.id: r.outcome for r in results}
    details = {r.case.id: r.detail for r in results if r.outcome is not Outcome.PASS}
    assert not [
        r.case.id for r in results if r.case.level is Level.MUST and r.outcome is Outcome.FAIL
    ], details
    for case_id, expected in OBSERVED.items():
        assert outcome[case_id] in expected, (case_id, details.get(case_id))
    # It does not speak /p2pchat/1.0.0; it serves perf.
    assert {o for c, o in outcome.items() if c.startswith("chat.")} == {Outcome.SKIP}
    assert outcome["perf.download"] is Outcome.PASS
    others = {c: d for c, d in details.items() if c not in OBSERVED and not c.startswith("chat.")}
    assert others == {}
