"""The text of ``p2pchat status`` (cli/control.py): its relay lines (specs/cli.md "Relay")."""

from __future__ import annotations

from p2pchat.cli.control import relay_lines

HELD = {"relay": "12D3KooWRelay", "expires_in": 3500, "addrs": []}


def _punched(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("punched:")]


def test_no_punched_line_before_any_hole_punch_or_reservation() -> None:
    relay = {"serving": False, "reservations": [], "hole_punches": {"upgraded": 0, "failed": 0}}
    assert relay_lines(relay) == []


def test_the_punched_line_shows_once_a_hole_punch_ended() -> None:
    relay = {"reservations": [], "hole_punches": {"upgraded": 0, "failed": 1}}
    assert _punched(relay_lines(relay)) == ["punched:   0 direct, 1 stayed relayed"]
    relay = {"reservations": [], "hole_punches": {"upgraded": 2, "failed": 0}}
    assert _punched(relay_lines(relay)) == ["punched:   2 direct, 0 stayed relayed"]


def test_the_punched_line_shows_while_a_reservation_is_held() -> None:
    relay = {"reservations": [HELD], "hole_punches": {"upgraded": 0, "failed": 0}}
    assert relay_lines(relay) == [
        "punched:   0 direct, 0 stayed relayed",
        "reserved:  on 12D3KooWRelay (expires in 3500 s)",
    ]


def test_no_punched_line_without_dcutr() -> None:
    # The relay client is off: the status has no hole_punches at all.
    relay = {"serving": True, "reserved_here": 1, "circuits": 0, "reservations": [HELD]}
    assert relay_lines(relay) == [
        "relay:     serving (1 reservations, 0 circuits)",
        "reserved:  on 12D3KooWRelay (expires in 3500 s)",
    ]
