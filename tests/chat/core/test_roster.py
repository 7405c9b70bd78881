"""Roles, members, rosters; the roster records' decoders on any input (specs/chat.md §3)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chat.core.groups import (
    key,
    make_group,
    member,
)
from p2pchat.chat.core import cbor
from p2pchat.chat.core.genesis import Genesis, SignedGenesis
from p2pchat.chat.core.roster import (
    KEM_MLKEM768_X25519,
    KEM_X25519,
    Member,
    Role,
    Roster,
    RosterDecodeError,
    default_quorum,
)
from p2pchat.chat.core.roster_update import (
    RosterUpdate,
    WrappedKey,
)
from p2pchat.errors import DecodeError

# -- roles, members, rosters ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "value", "can_send", "can_ratify"),
    [
        (Role.RATIFIER, "ratifier", True, True),
        (Role.USER, "user", True, False),
        (Role.VIEWER, "viewer", False, False),
    ],
)
def test_role_values_and_rights(role: Role, value: str, can_send: bool, can_ratify: bool) -> None:
    assert role.value == value
    assert Role(value) is role
    assert role.can_send is can_send
    assert role.can_ratify is can_ratify


@pytest.mark.parametrize(("n", "q"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (7, 4), (10, 6)])
def test_default_quorum_is_a_majority(n: int, q: int) -> None:
    assert default_quorum(n) == q


def test_member_hpke_key_sizes() -> None:
    peer = key(1).peer_id
    assert Member(peer, Role.USER, KEM_X25519, bytes(32)).kem == KEM_X25519
    assert len(Member(peer, Role.USER, KEM_MLKEM768_X25519, bytes(1216)).hpke) == 1216
    with pytest.raises(ValueError, match="32 bytes"):
        Member(peer, Role.USER, KEM_X25519, bytes(31))
    with pytest.raises(ValueError, match="1216 bytes"):
        Member(peer, Role.USER, KEM_MLKEM768_X25519, bytes(32))
    with pytest.raises(ValueError, match="unknown KEM"):
        Member(peer, Role.USER, "P256", bytes(32))


def test_member_cbor_round_trip() -> None:
    entry = member(key(1), Role.VIEWER)
    encoded = entry.to_cbor()
    assert encoded == {
        "peer": key(1).peer_id.to_bytes(),
        "role": "viewer",
        "kem": "X25519",
        "hpke": entry.hpke,
    }
    assert Member.from_cbor(encoded) == entry


def test_roster_sorts_members_and_defaults_quorum() -> None:
    pairs = [key(n) for n in range(1, 6)]
    members = [member(p, Role.RATIFIER) for p in pairs]
    roster = Roster(3, reversed(members))
    assert [m.peer.to_bytes() for m in roster.members] == sorted(
        p.peer_id.to_bytes() for p in pairs
    )
    assert roster.quorum == 3
    assert roster.history == "all"
    assert roster == Roster(3, members)


def test_roster_lookups() -> None:
    group = make_group()
    roster = group.signed.genesis.roster
    assert roster.ratifiers == frozenset(r.peer_id for r in group.ratifiers)
    assert roster.role_of(group.user.peer_id) is Role.USER
    assert roster.role_of(group.viewer.peer_id) is Role.VIEWER
    assert roster.role_of(group.outsider.peer_id) is None
    assert roster.member(group.outsider.peer_id) is None
    viewer = roster.member(group.viewer.peer_id)
    assert viewer is not None
    assert viewer.peer == group.viewer.peer_id
    assert group.user.peer_id in roster
    assert group.outsider.peer_id not in roster


@pytest.mark.parametrize(
    ("members", "quorum", "history", "error"),
    [
        ([(1, Role.USER)], 1, "all", "at least one ratifier"),
        ([(1, Role.RATIFIER), (1, Role.USER)], 1, "all", "twice"),
        ([(1, Role.RATIFIER), (2, Role.RATIFIER)], 0, "all", "quorum 0"),
        ([(1, Role.RATIFIER), (2, Role.RATIFIER), (3, Role.USER)], 3, "all", "quorum 3"),
        ([(1, Role.RATIFIER)], 1, "forever", "history"),
    ],
)
def test_roster_refuses_invalid(
    members: list[tuple[int, Role]], quorum: int, history: Any, error: str
) -> None:
    entries = [member(key(n), role) for n, role in members]
    with pytest.raises(ValueError, match=error):
        Roster(0, entries, quorum, history)


def test_roster_cbor_round_trip_is_byte_stable() -> None:
    roster = make_group().signed.genesis.roster
    data = cbor.dumps(roster.to_cbor())
    again = Roster.from_cbor(cbor.loads(data, max_size=1 << 20))
    assert again == roster
    assert cbor.dumps(again.to_cbor()) == data


def test_roster_decoder_refuses_unsorted_members() -> None:
    value = make_group().signed.genesis.roster.to_cbor()
    value["members"].reverse()
    with pytest.raises(RosterDecodeError, match="sorted"):
        Roster.from_cbor(value)


def test_roster_decoder_refuses_invalid_roster() -> None:
    value = make_group().signed.genesis.roster.to_cbor()
    value["quorum"] = 4
    with pytest.raises(RosterDecodeError, match="quorum"):
        Roster.from_cbor(value)


# -- decoders on arbitrary input -----------------------------------------------------------------

cbor_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.binary(max_size=40)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "peer",
                    "role",
                    "kem",
                    "hpke",
                    "epoch",
                    "members",
                    "quorum",
                    "history",
                    "v",
                    "name",
                    "owner",
                    "created",
                    "nonce",
                    "roster",
                    "genesis",
                    "sig",
                    "keys",
                    "history_keys",
                    "enc",
                    "x",
                ]
            ),
            inner,
            max_size=6,
        )
    ),
    max_leaves=20,
)

DECODERS = [
    Member.from_cbor,
    Roster.from_cbor,
    Genesis.from_cbor,
    SignedGenesis.from_cbor,
    WrappedKey.from_cbor,
    RosterUpdate.from_cbor,
]


@given(st.sampled_from(DECODERS), cbor_values)
@settings(max_examples=400)
def test_from_cbor_raises_only_decode_errors(decoder: Any, value: Any) -> None:
    try:
        decoder(value)
    except DecodeError:
        pass


_VALID_GENESIS = make_group().signed.to_cbor()


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


_GENESIS_PATHS = _paths(_VALID_GENESIS)[1:]


@given(st.sampled_from(_GENESIS_PATHS), st.integers(0, 3) | st.text(max_size=8) | cbor_values)
@settings(max_examples=400)
def test_signed_genesis_decoder_on_mutated_fields(path: tuple[Any, ...], value: Any) -> None:
    mutated = cbor.loads(cbor.dumps(_VALID_GENESIS), max_size=1 << 20)
    target = mutated
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    try:
        decoded = SignedGenesis.from_cbor(mutated)
    except DecodeError:
        return
    assert decoded.to_cbor() == mutated


@given(st.binary(max_size=300))
@settings(max_examples=300)
def test_decode_raises_only_decode_errors(data: bytes) -> None:
    for decode in (SignedGenesis.decode, RosterUpdate.decode):
        try:
            decode(data)
        except DecodeError:
            pass
