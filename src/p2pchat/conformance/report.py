"""The reports of a run: a text table with a tally, one JSON object, JUnit XML.

Pure functions of the results (no I/O), so the formats are tested without a target.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from typing import Any

from .registry import CaseResult, Outcome

__all__ = ["exit_status", "tally", "to_json", "to_junit", "to_table"]


def exit_status(results: Sequence[CaseResult]) -> int:
    """1 when a MUST fails, else 0 (specs/conformance.md "Exit status")."""
    return 1 if any(r.failed_must for r in results) else 0


def tally(results: Sequence[CaseResult]) -> dict[str, int]:
    """Counts by outcome, and the MUSTs failed."""
    counts = Counter(r.outcome.value for r in results)
    return {
        "total": len(results),
        "pass": counts[Outcome.PASS.value],
        "fail": counts[Outcome.FAIL.value],
        "skip": counts[Outcome.SKIP.value],
        "must_failed": sum(r.failed_must for r in results),
    }


def _case_json(result: CaseResult) -> dict[str, Any]:
    return {
        "id": result.case.id,
        "suite": result.case.suite,
        "level": result.case.level.value,
        "result": result.outcome.value,
        "spec": result.case.spec,
        "title": result.case.title,
        "detail": result.detail,
        "seconds": round(result.seconds, 4),
    }


def to_json(target: str, results: Sequence[CaseResult]) -> dict[str, Any]:
    """One object: the target, the tally, and a ``cases`` list."""
    return {
        "target": target,
        "tally": tally(results),
        "cases": [_case_json(r) for r in results],
    }


def to_table(results: Sequence[CaseResult], *, width: int = 100) -> str:
    """One line per case (id, level, result, spec), its detail indented below when it did not
    pass, then the tally."""
    lines = []
    id_width = max((len(r.case.id) for r in results), default=10)
    for r in results:
        lines.append(
            f"{r.case.id:<{id_width}}  {r.case.level.value:<6}  {r.outcome.value.upper():<4}  "
            f"{r.case.spec}"
        )
        if r.outcome is not Outcome.PASS and r.detail:
            lines.append(" " * (id_width + 2) + r.detail[: width * 4])
    t = tally(results)
    lines.append(
        f"{t['total']} cases: {t['pass']} passed, {t['fail']} failed, {t['skip']} skipped; "
        f"{t['must_failed']} MUST failed"
    )
    return "\n".join(lines)


def to_junit(target: str, results: Sequence[CaseResult]) -> bytes:
    """JUnit XML: one ``testsuite`` per suite, one ``testcase`` per case (classname = suite),
    ``failure`` for a failed case (``type`` is its level), ``skipped`` for a skipped one."""
    root = ET.Element("testsuites", name=f"p2pchat conformance {target}")
    suites: dict[str, ET.Element] = {}
    for r in results:
        suite = suites.get(r.case.suite)
        if suite is None:
            suite = suites[r.case.suite] = ET.SubElement(root, "testsuite", name=r.case.suite)
        case = ET.SubElement(
            suite,
            "testcase",
            classname=r.case.suite,
            name=r.case.id,
            time=f"{r.seconds:.4f}",
        )
        ET.SubElement(case, "properties").extend(
            [
                ET.Element("property", name="level", value=r.case.level.value),
                ET.Element("property", name="spec", value=r.case.spec),
            ]
        )
        if r.outcome is Outcome.FAIL:
            failure = ET.SubElement(case, "failure", type=r.case.level.value, message=r.detail)
            failure.text = f"{r.case.title} ({r.case.spec}): {r.detail}"
        elif r.outcome is Outcome.SKIP:
            ET.SubElement(case, "skipped", message=r.detail)
    for name, suite in suites.items():
        mine = [r for r in results if r.case.suite == name]
        suite.set("tests", str(len(mine)))
        suite.set("failures", str(sum(r.outcome is Outcome.FAIL for r in mine)))
        suite.set("skipped", str(sum(r.outcome is Outcome.SKIP for r in mine)))
        suite.set("errors", "0")
        suite.set("time", f"{sum(r.seconds for r in mine):.4f}")
    ET.indent(root)
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document + b"\n"
