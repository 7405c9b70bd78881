"""The reports: table, JSON, JUnit XML, and the exit status."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from p2pchat.conformance import Level, Outcome
from p2pchat.conformance.registry import Case, CaseResult
from p2pchat.conformance.report import exit_status, tally, to_json, to_junit, to_table


async def _noop(_ctx: object) -> None:
    return None


def _result(case_id: str, level: Level, outcome: Outcome, detail: str = "") -> CaseResult:
    suite = case_id.partition(".")[0]
    item = Case(case_id, suite, level, f"{suite} spec §1", f"title of {case_id}", _noop)
    return CaseResult(item, outcome, detail, 0.25)


RESULTS = [
    _result("ping.echo", Level.MUST, Outcome.PASS),
    _result("ping.several", Level.SHOULD, Outcome.FAIL, "ping 2: got nothing"),
    _result("perf.download", Level.MUST, Outcome.SKIP, "the target does not offer /perf/1.0.0"),
]


def test_exit_status_is_1_only_when_a_must_fails() -> None:
    assert exit_status(RESULTS) == 0
    failing = [*RESULTS, _result("noise.tampered", Level.MUST, Outcome.FAIL, "still open")]
    assert exit_status(failing) == 1
    assert tally(failing) == {"total": 4, "pass": 1, "fail": 2, "skip": 1, "must_failed": 1}


def test_json_has_one_entry_per_case_with_the_fields_the_cli_promises() -> None:
    report = to_json("/ip4/127.0.0.1/tcp/1", RESULTS)
    assert report["target"] == "/ip4/127.0.0.1/tcp/1"
    assert report["tally"]["fail"] == 1
    assert [c["id"] for c in report["cases"]] == ["ping.echo", "ping.several", "perf.download"]
    second = report["cases"][1]
    assert {k: second[k] for k in ("id", "suite", "level", "result", "spec", "detail")} == {
        "id": "ping.several",
        "suite": "ping",
        "level": "SHOULD",
        "result": "fail",
        "spec": "ping spec §1",
        "detail": "ping 2: got nothing",
    }


def test_table_shows_each_case_the_detail_of_what_did_not_pass_and_the_tally() -> None:
    table = to_table(RESULTS)
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["ping.echo", "MUST", "PASS"]
    assert "ping 2: got nothing" in lines[2]
    assert lines[-1] == "3 cases: 1 passed, 1 failed, 1 skipped; 0 MUST failed"


def test_junit_xml_has_a_suite_per_protocol_and_failures_and_skips_marked() -> None:
    root = ET.fromstring(to_junit("/ip4/127.0.0.1/tcp/1", RESULTS))
    assert root.tag == "testsuites"
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert set(suites) == {"ping", "perf"}
    assert suites["ping"].get("tests") == "2"
    assert suites["ping"].get("failures") == "1"
    assert suites["perf"].get("skipped") == "1"
    several = suites["ping"].find("testcase[@name='ping.several']")
    assert several is not None
    failure = several.find("failure")
    assert failure is not None
    assert failure.get("type") == "SHOULD"
    assert failure.get("message") == "ping 2: got nothing"
    skipped = suites["perf"].find("testcase/skipped")
    assert skipped is not None
    assert "does not offer" in (skipped.get("message") or "")
