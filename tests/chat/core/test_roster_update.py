"""Roster updates: the artifact of a roster message (specs/chat.md §3, §7)."""

from __future__ import annotations

import pytest

from chat.core.groups import (
    key,
    member,
)
from p2pchat.chat.core import cbor
from p2pchat.chat.core.roster import (
    Role,
    Roster,
    RosterDecodeError,
)
from p2pchat.chat.core.roster_update import (
    RosterUpdate,
    WrappedKey,
)

# -- roster updates ------------------------------------------------------------------------------


def _update_roster() -> Roster:
    return Roster(1, [member(key(1), Role.RATIFIER), member(key(2), Role.USER)])


def test_roster_update_round_trip_sorts_keys() -> None:
    roster = _update_roster()
    a, b = key(1).peer_id, key(2).peer_id
    keys = [WrappedKey(b, 1, b"kb"), WrappedKey(a, 1, b"ka")]
    history = [WrappedKey(b, 0, b"hb")]
    update = RosterUpdate(roster, keys, history)
    assert [k.peer for k in update.keys] == sorted([a, b], key=lambda p: p.to_bytes())
    data = update.encode()
    assert RosterUpdate.decode(data) == update
    assert cbor.loads(data, max_size=1 << 20)["history_keys"] == [
        {"peer": b.to_bytes(), "epoch": 0, "enc": b"hb"}
    ]


@pytest.mark.parametrize(
    ("keys", "history", "error"),
    [
        ([(3, 1)], [], "non-member"),
        ([(1, 0)], [], "for epoch 1"),
        ([(1, 1), (1, 1)], [], "twice"),
        ([], [(2, 1)], "before 1"),
        ([], [(3, 0)], "non-member"),
    ],
)
def test_roster_update_refuses_inconsistent_keys(
    keys: list[tuple[int, int]], history: list[tuple[int, int]], error: str
) -> None:
    wrap = [WrappedKey(key(n).peer_id, e, b"k") for n, e in keys]
    hist = [WrappedKey(key(n).peer_id, e, b"k") for n, e in history]
    with pytest.raises(ValueError, match=error):
        RosterUpdate(_update_roster(), wrap, hist)


def test_roster_update_decoder_refuses_unsorted_keys() -> None:
    roster = _update_roster()
    keys = [WrappedKey(key(n).peer_id, 1, b"k") for n in (1, 2)]
    value = RosterUpdate(roster, keys).to_cbor()
    value["keys"].reverse()
    with pytest.raises(RosterDecodeError, match="sorted"):
        RosterUpdate.decode(cbor.dumps(value))
