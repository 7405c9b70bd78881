"""Genesis, rosters, roles and the verified roster chain (specs/chat.md §3, §7)."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chat.core.groups import (
    NONCE,
    NOW,
    certify,
    key,
    make_group,
    member,
    roster_packet,
    text_packet,
)
from p2pchat.chat.core import cbor
from p2pchat.chat.core.genesis import Genesis, SignedGenesis, new_group
from p2pchat.chat.core.group_state import GroupState
from p2pchat.chat.core.packet import Artifact, Message, sha256, sign_message
from p2pchat.chat.core.roster import (
    KEM_MLKEM768_X25519,
    KEM_X25519,
    Member,
    Role,
    Roster,
    RosterDecodeError,
    RosterError,
    default_quorum,
)
from p2pchat.chat.core.roster_update import (
    ROSTER_MIME_TYPE,
    RosterUpdate,
    WrappedKey,
    build_roster_message,
)
from p2pchat.errors import DecodeError, LocalProtocolError, RemoteProtocolError

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


# -- genesis -------------------------------------------------------------------------------------


def test_new_group_signs_a_verifiable_genesis() -> None:
    group = make_group()
    signed = group.signed
    genesis = signed.genesis
    assert genesis.v == 1
    assert genesis.owner == group.owner.peer_id
    assert genesis.created == NOW
    assert genesis.nonce == NONCE
    assert genesis.roster.epoch == 0
    assert genesis.roster.quorum == 2
    assert signed.verify()
    assert group.owner.public_key.verify(signed.sig, b"p2pchat/genesis/v1" + genesis.encode())
    assert signed.group_id == sha256(cbor.dumps(genesis.to_cbor()))
    assert len(signed.group_id) == 32


def test_signed_genesis_round_trip() -> None:
    signed = make_group(quorum=3).signed
    data = signed.encode()
    again = SignedGenesis.decode(data)
    assert again == signed
    assert again.encode() == data
    assert again.group_id == signed.group_id
    assert again.genesis.roster.quorum == 3


def test_genesis_signature_tampering_is_detected() -> None:
    signed = make_group().signed
    bad_sig = attrs.evolve(signed, sig=bytes(64))
    assert not bad_sig.verify()
    renamed = attrs.evolve(signed, genesis=attrs.evolve(signed.genesis, name="other"))
    assert not renamed.verify()
    assert renamed.group_id != signed.group_id
    with pytest.raises(RosterError) as info:
        GroupState.from_genesis(bad_sig)
    assert info.value.hint == "bad signature"
    assert isinstance(info.value, RemoteProtocolError)


def test_only_the_owner_signs_the_genesis() -> None:
    genesis = make_group().signed.genesis
    with pytest.raises(ValueError, match="owner"):
        SignedGenesis.sign(key(2), genesis)


def test_owner_must_be_a_ratifier() -> None:
    owner = key(1)
    members = [member(owner, Role.USER), member(key(2), Role.RATIFIER)]
    with pytest.raises(ValueError, match="owner must be a ratifier"):
        new_group(owner, "g", members, now_ms=NOW, nonce=NONCE)
    with pytest.raises(ValueError, match="owner must be a ratifier"):
        new_group(owner, "g", members[1:], now_ms=NOW, nonce=NONCE)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"v": 2}, "version"),
        ({"name": "x" * 129}, "128"),
        ({"nonce": bytes(15)}, "16 bytes"),
    ],
)
def test_genesis_refuses_invalid(change: dict[str, Any], error: str) -> None:
    genesis = make_group().signed.genesis
    with pytest.raises(ValueError, match=error):
        attrs.evolve(genesis, **change)


def test_genesis_roster_must_be_epoch_zero() -> None:
    genesis = make_group().signed.genesis
    roster = attrs.evolve(genesis.roster, epoch=1)
    with pytest.raises(ValueError, match="epoch 0"):
        attrs.evolve(genesis, roster=roster)


def test_new_group_options() -> None:
    owner = key(1)
    members = [member(key(n), Role.RATIFIER) for n in range(1, 5)]
    signed = new_group(owner, "g", members, quorum=4, history="since_join", now_ms=NOW, nonce=NONCE)
    assert signed.genesis.roster.quorum == 4
    assert signed.genesis.roster.history == "since_join"
    assert signed.genesis.name == "g"


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


# -- the chain -----------------------------------------------------------------------------------


def test_fresh_state_queries() -> None:
    group = make_group()
    state = group.state()
    assert state.current_epoch == 0
    assert state.group_id == group.group_id
    assert state.owner == group.owner.peer_id
    assert state.name == "test group"
    assert state.roster(0) == group.signed.genesis.roster
    assert state.current_roster == state.roster(0)
    assert state.roster_packets == ()
    with pytest.raises(KeyError):
        state.roster(1)
    assert state.find_roster(1) is None
    assert state.find_roster(-1) is None
    assert state.role(group.user.peer_id, 0) is Role.USER
    assert state.role(group.user.peer_id, 1) is None
    assert state.is_member(group.viewer.peer_id, 0)
    assert not state.is_member(group.outsider.peer_id, 0)


@pytest.mark.parametrize(
    ("who", "message_type", "allowed"),
    [
        ("owner", "roster", True),
        ("owner", "text", True),
        ("ratifier", "text", True),
        ("ratifier", "roster", False),
        ("user", "file", True),
        ("user", "roster", False),
        ("viewer", "text", False),
        ("outsider", "text", False),
    ],
)
def test_can_send(who: str, message_type: str, allowed: bool) -> None:
    group = make_group()
    pair = {
        "owner": group.owner,
        "ratifier": group.ratifiers[1],
        "user": group.user,
        "viewer": group.viewer,
        "outsider": group.outsider,
    }[who]
    state = group.state()
    assert state.can_send(pair.peer_id, 0, message_type) is allowed
    assert not state.can_send(pair.peer_id, 1, message_type)


def _members_after(
    group: Any, *, drop_viewer: bool = True, add_outsider: bool = True
) -> list[Member]:
    members = list(group.signed.genesis.roster.members)
    if drop_viewer:
        members = [m for m in members if m.peer != group.viewer.peer_id]
    if add_outsider:
        members.append(member(group.outsider, Role.RATIFIER))
    return members


def test_apply_roster_packet_advances_the_epoch() -> None:
    group = make_group()
    state = group.state()
    packet = certify(roster_packet(state, group.owner, _members_after(group)), group.ratifiers[1:])
    update = state.apply_roster_packet(packet)
    assert state.current_epoch == 1
    assert state.roster(1) == update.roster
    assert state.roster_packets == (packet,)
    assert state.roster_packet(0) == packet
    assert state.roster_packet(1) is None
    assert state.role(group.viewer.peer_id, 1) is None
    assert state.role(group.viewer.peer_id, 0) is Role.VIEWER
    assert state.role(group.outsider.peer_id, 1) is Role.RATIFIER
    assert state.roster(1).quorum == 3  # majority of 4 ratifiers
    # The next change is ratified by the ratifiers of epoch 1.
    second = roster_packet(state, group.owner, _members_after(group, add_outsider=False))
    short = certify(second, group.ratifiers[:2])
    with pytest.raises(RosterError) as info:
        state.apply_roster_packet(short)
    assert info.value.hint == "bad certificate"
    state.apply_roster_packet(certify(second, [*group.ratifiers[:2], group.outsider]))
    assert state.current_epoch == 2
    rebuilt = GroupState.from_chain(group.signed, state.roster_packets)
    assert rebuilt.current_epoch == 2
    assert rebuilt.roster(2) == state.roster(2)


def test_build_roster_message_is_plaintext_roster_type() -> None:
    group = make_group()
    state = group.state()
    roster = Roster(1, _members_after(group))
    update = RosterUpdate(roster)
    message, data = build_roster_message(state, update, now_ms=NOW + 5, parents=[b"\x02" * 32])
    assert data == update.encode()
    assert message.message_type == "roster"
    assert message.epoch == 0
    assert message.author == group.owner.peer_id
    assert message.group_id == group.group_id
    assert message.time_stamp == NOW + 5
    assert message.parents == (b"\x02" * 32,)
    assert message.artifact == Artifact(ROSTER_MIME_TYPE, data, sha256(data), sha256(b""))


def test_build_roster_message_refusals() -> None:
    group = make_group()
    state = group.state()
    with pytest.raises(LocalProtocolError, match="opens epoch 2"):
        build_roster_message(state, RosterUpdate(Roster(2, _members_after(group))), now_ms=NOW)
    without_owner = [m for m in _members_after(group) if m.peer != group.owner.peer_id]
    with pytest.raises(LocalProtocolError, match="owner"):
        build_roster_message(state, RosterUpdate(Roster(1, without_owner)), now_ms=NOW)


def _reason(state: GroupState, packet: Any) -> str:
    before = (state.current_epoch, state.roster_packets)
    with pytest.raises(RosterError) as info:
        state.apply_roster_packet(packet)
    assert (state.current_epoch, state.roster_packets) == before
    return info.value.hint


def _signed_roster_message(group: Any, author: Any, **changes: Any) -> Any:
    """A roster message built by hand, so that it may break the content rules."""
    state = group.state()
    message, _ = build_roster_message(
        state, RosterUpdate(Roster(1, _members_after(group))), now_ms=NOW
    )
    aes_key = changes.pop("aes_key", b"")
    iv = changes.pop("iv", b"")
    if "data" in changes:
        data = changes.pop("data")
        art = attrs.evolve(message.artifact, data=data, hash=sha256(data))
        message = attrs.evolve(message, artifact=art)
    if "type" in changes:
        message = attrs.evolve(
            message, artifact=attrs.evolve(message.artifact, type=changes.pop("type"))
        )
    message = attrs.evolve(
        message,
        author=author.peer_id,
        artifact=attrs.evolve(message.artifact, key_hash=sha256(aes_key + iv)),
        **changes,
    )
    return certify(sign_message(author, message, aes_key, iv), group.ratifiers)


def test_apply_refuses_another_group() -> None:
    group = make_group()
    other = make_group(quorum=3)
    state = other.state()
    assert state.group_id != group.group_id
    packet = certify(
        roster_packet(group.state(), group.owner, _members_after(group)), group.ratifiers
    )
    assert _reason(state, packet) == "unknown group"


def test_apply_refuses_a_non_roster_message() -> None:
    group = make_group()
    packet = certify(text_packet(group.group_id, group.owner), group.ratifiers)
    assert _reason(group.state(), packet) == "malformed"


def test_apply_refuses_a_roster_message_not_by_the_owner() -> None:
    group = make_group()
    packet = _signed_roster_message(group, group.ratifiers[1])
    assert _reason(group.state(), packet) == "not allowed"


def test_apply_refuses_stale_and_future_epochs() -> None:
    group = make_group()
    state = group.state()
    packet = certify(roster_packet(state, group.owner, _members_after(group)), group.ratifiers)
    state.apply_roster_packet(packet)
    assert _reason(state, packet) == "stale epoch"
    future = _signed_roster_message(group, group.owner, epoch=3)
    assert _reason(group.state(), future) == "future epoch"


def test_apply_refuses_missing_or_insufficient_certificate() -> None:
    group = make_group()
    packet = roster_packet(group.state(), group.owner, _members_after(group))
    assert _reason(group.state(), packet) == "bad certificate"
    assert _reason(group.state(), certify(packet, group.ratifiers[:1])) == "bad certificate"
    non_ratifiers = [group.ratifiers[0], group.user, group.viewer]
    assert _reason(group.state(), certify(packet, non_ratifiers)) == "bad certificate"
    wrong_epoch = certify(packet, group.ratifiers, epoch=1)
    assert _reason(group.state(), wrong_epoch) == "bad certificate"


def test_apply_refuses_bad_hash_and_bad_signature() -> None:
    group = make_group()
    packet = roster_packet(group.state(), group.owner, _members_after(group))
    art = attrs.evolve(packet.message.artifact, data=packet.message.artifact.data + b"x")
    tampered = certify(
        attrs.evolve(packet, message=attrs.evolve(packet.message, artifact=art)), group.ratifiers
    )
    assert _reason(group.state(), tampered) == "bad hash"
    forged = certify(attrs.evolve(packet, signature=bytes(64)), group.ratifiers)
    assert _reason(group.state(), forged) == "bad signature"


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"aes_key": bytes(60), "iv": bytes(12)}, id="encrypted"),
        pytest.param({"type": "text/plain"}, id="mime-type"),
        pytest.param({"data": b"not cbor"}, id="not-cbor"),
        pytest.param({"data": cbor.dumps({"roster": 1})}, id="not-an-update"),
    ],
)
def test_apply_refuses_malformed_content(changes: dict[str, Any]) -> None:
    group = make_group()
    assert (
        _reason(group.state(), _signed_roster_message(group, group.owner, **changes)) == "malformed"
    )


def test_apply_refuses_an_update_skipping_an_epoch_or_dropping_the_owner() -> None:
    group = make_group()
    skip = RosterUpdate(Roster(2, _members_after(group)))
    assert (
        _reason(group.state(), _signed_roster_message(group, group.owner, data=skip.encode()))
        == "malformed"
    )
    members = [
        m if m.peer != group.owner.peer_id else attrs.evolve(m, role=Role.VIEWER)
        for m in _members_after(group)
    ]
    demoted = RosterUpdate(Roster(1, members))
    assert (
        _reason(group.state(), _signed_roster_message(group, group.owner, data=demoted.encode()))
        == "malformed"
    )


def test_message_fields_of_roster_packet_helper() -> None:
    group = make_group()
    packet = roster_packet(group.state(), group.owner, _members_after(group))
    assert isinstance(packet.message, Message)
    assert packet.aes_key == b""
    assert packet.iv == b""
    assert packet.check_hashes()


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
