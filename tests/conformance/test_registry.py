"""The table of cases: every case has its metadata; selection by suite and pattern."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pchat.cli.conformance import SUITE_NAMES
from p2pchat.conformance import CASES, SUITES, Level, load_suites, select
from p2pchat.conformance.registry import case


def test_every_case_cites_a_paragraph_and_belongs_to_a_suite() -> None:
    load_suites()
    assert len(CASES) >= 40
    for item in CASES.values():
        assert item.id.startswith(item.suite + ".")
        assert item.suite in SUITES
        assert isinstance(item.level, Level)
        assert "§" in item.spec, item.id
        assert item.title


def test_every_suite_has_cases_and_a_must() -> None:
    load_suites()
    for suite in SUITES:
        levels = {c.level for c in CASES.values() if c.suite == suite}
        assert Level.MUST in levels, suite


def test_select_by_suite_and_pattern() -> None:
    load_suites()
    ping = select(CASES.values(), suites=["ping"])
    assert {c.suite for c in ping} == {"ping"}
    assert [c.id for c in select(CASES.values(), patterns=["noise.bad-*"])] == [
        "noise.bad-signature"
    ]
    assert {c.id for c in select(CASES.values(), patterns=["half-close"])} == {
        "yamux.half-close-local",
        "yamux.half-close-remote",
    }
    both = select(CASES.values(), suites=["chat", "multistream"])
    assert both[0].suite == "multistream"  # suite order, not the order asked


def test_the_command_line_offers_every_suite() -> None:
    # cli/conformance.py keeps its own copy so that building the parser imports nothing more.
    assert SUITE_NAMES == SUITES


def test_select_refuses_an_unknown_suite() -> None:
    with pytest.raises(ValueError, match="unknown suite 'kad'"):
        select(CASES.values(), suites=["kad"])


def test_a_case_id_is_registered_once_and_in_a_known_suite() -> None:
    load_suites()
    with pytest.raises(ValueError, match="twice"):
        case("ping.echo", level=Level.MUST, spec="§", title="again")(_noop)
    with pytest.raises(ValueError, match="no known suite"):
        case("kad.find", level=Level.MUST, spec="§", title="later")


async def _noop(_ctx: object) -> None:
    return None


def test_the_spec_lists_every_case_with_its_level() -> None:
    load_suites()
    spec = (Path(__file__).parents[2] / "specs" / "conformance.md").read_text()
    for item in CASES.values():
        assert f"| `{item.id}` | {item.level.value} |" in spec, item.id
