"""Roster changes as deltas (specs/chat.md §20): format 2 applied and refused, rename and
ownership hand-over, format 1 still read; the vector roster_delta.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import pytest

from chat.core.groups import NOW, Group, certify, key, make_group, member, roster_packet
from p2pchat.chat.core import cbor
from p2pchat.chat.core.genesis import SignedGenesis
from p2pchat.chat.core.group_state import GroupState
from p2pchat.chat.core.keyset import KeySetRef
from p2pchat.chat.core.packet import Packet, sha256, sign_message
from p2pchat.chat.core.roster import Role, Roster, RosterError
from p2pchat.chat.core.roster_delta import (
    RoleChange,
    RosterDelta,
    decode_roster_artifact,
    delta_between,
    roster_hash,
)
from p2pchat.chat.core.roster_update import KeyCheck, epoch_key_check, roster_message
from p2pchat.chat.core.validate import check_for_ratification
from p2pchat.errors import DecodeError
from p2pchat.identity import KeyPair

VECTORS = Path(__file__).resolve().parents[3] / "specs" / "vectors" / "chat"
NEW_KEY = bytes(range(32))
#: A commitment to wrapped keys (the sets themselves: tests/chat/core/test_keyset.py).
REF = KeySetRef(sha256(b"a key set"), 5)


def check_of(state: GroupState) -> KeyCheck:
    epoch = state.current_epoch + 1
    return KeyCheck(epoch, epoch_key_check(state.group_id, epoch, NEW_KEY))


def delta_packet(state: GroupState, author: KeyPair, delta: RosterDelta | dict[str, Any]) -> Packet:
    """``author``'s signed roster message of the current epoch carrying ``delta`` (a delta, or
    a raw CBOR map for a malformed one)."""
    data = delta.encode() if isinstance(delta, RosterDelta) else cbor.dumps(delta)
    message, _ = roster_message(state, data, now_ms=NOW)
    message = attrs.evolve(message, author=author.peer_id)
    return sign_message(author, message, b"", b"")


def change(
    group: Group, state: GroupState, after: Roster, author: KeyPair | None = None, **extra: Any
) -> Packet:
    """The certified roster message from ``state`` to ``after`` (with ``name``/``owner``)."""
    delta = delta_between(state.current_roster, after, REF, key_checks=(check_of(state),), **extra)
    packet = delta_packet(state, author or group.owner, delta)
    return certify(packet, group.ratifiers)


def reason(state: GroupState, packet: Packet) -> str:
    with pytest.raises(RosterError) as info:
        state.apply_roster_packet(packet)
    return str(info.value.hint)


def invite_outsider(group: Group) -> tuple[GroupState, Roster]:
    state = group.state()
    before = state.current_roster
    after = Roster(1, (*before.members, member(group.outsider, Role.USER)))
    return state, after


def test_a_delta_carries_only_the_change_and_gives_its_roster() -> None:
    group = make_group()
    state, after = invite_outsider(group)
    packet = change(group, state, after)
    delta = decode_roster_artifact(packet)
    assert isinstance(delta, RosterDelta)
    assert [m.peer for m in delta.add] == [group.outsider.peer_id]
    assert delta.remove == ()
    assert delta.roles == ()
    assert delta.quorum is None
    assert delta.roster_hash == roster_hash(after) == sha256(cbor.dumps(after.to_cbor()))
    state.apply_roster_packet(packet)
    assert state.current_roster == after
    assert state.owner == group.owner.peer_id
    assert state.name == "test group"
    # Removal, role change and a quorum change in one delta.
    members = [
        attrs.evolve(m, role=Role.RATIFIER) if m.peer == group.user.peer_id else m
        for m in after.members
        if m.peer != group.viewer.peer_id
    ]
    nxt = Roster(2, members, 4)
    second = change(group, state, nxt)
    raw = cbor.loads(second.message.artifact.data, max_size=1 << 20)
    assert raw["remove"] == [group.viewer.peer_id.to_bytes()]
    assert raw["roles"] == [{"peer": group.user.peer_id.to_bytes(), "role": "ratifier"}]
    assert raw["quorum"] == 4
    assert raw["add"] == []
    state.apply_roster_packet(second)
    assert state.current_roster == nxt


def test_a_delta_that_does_not_apply_is_malformed() -> None:
    group = make_group()
    state, after = invite_outsider(group)
    good = delta_between(state.current_roster, after, REF, key_checks=(check_of(state),))
    owner_entry = state.current_roster.member(group.owner.peer_id)
    assert owner_entry is not None
    bad = {
        "wrong roster_hash": attrs.evolve(good, roster_hash=bytes(32)),
        "adds a member": attrs.evolve(good, add=(*good.add, owner_entry)),
        "removes a non-member": attrs.evolve(good, remove=(key(9).peer_id,)),
        "same role": attrs.evolve(good, roles=(RoleChange(group.user.peer_id, Role.USER),)),
        "re-roles a non-member": attrs.evolve(good, roles=(RoleChange(key(9).peer_id, Role.USER),)),
        "quorum too high": attrs.evolve(good, quorum=4),
        "hand-over to a user": attrs.evolve(good, owner=group.user.peer_id),
        "hand-over to the owner": attrs.evolve(good, owner=group.owner.peer_id),
        "removes the owner": attrs.evolve(good, remove=(group.owner.peer_id,)),
        "wrong epoch": attrs.evolve(good, epoch=2, key_checks=(KeyCheck(2, bytes(32)),)),
    }
    for what, delta in bad.items():
        packet = certify(delta_packet(state, group.owner, delta), group.ratifiers)
        assert reason(state, packet) == "malformed", what
        assert check_for_ratification(
            delta_packet(state, group.owner, delta), state, now_ms=NOW, have=lambda _: False
        ) in ("malformed", "bad parents"), what
    assert state.current_epoch == 0


def test_a_delta_decodes_strictly() -> None:
    group = make_group()
    state, after = invite_outsider(group)
    members = [m for m in after.members if m.peer != group.viewer.peer_id]
    members = [
        attrs.evolve(m, role=Role.VIEWER) if m.peer == group.user.peer_id else m for m in members
    ]
    newer = Roster(1, (*members, member(key(8), Role.USER)))
    delta = delta_between(state.current_roster, newer, REF, key_checks=(check_of(state),))
    raw = delta.to_cbor()
    assert RosterDelta.from_cbor(raw) == delta
    assert len(raw["add"]) == 2
    with pytest.raises(DecodeError, match="sorted"):
        RosterDelta.from_cbor({**raw, "add": raw["add"][::-1]})
    with pytest.raises(DecodeError, match="version"):
        RosterDelta.from_cbor({**raw, "v": 3})
    with pytest.raises(DecodeError, match="unknown"):
        RosterDelta.from_cbor({**raw, "members": []})
    with pytest.raises(DecodeError, match="named twice"):
        RosterDelta.from_cbor({**raw, "remove": [raw["add"][0]["peer"]]})
    with pytest.raises(DecodeError, match="new epoch's check"):
        RosterDelta.from_cbor({**raw, "key_checks": []})
    with pytest.raises(DecodeError, match="128 bytes"):
        RosterDelta.from_cbor({**raw, "name": "x" * 129})
    # A raw map that is not a delta, sent as a roster message: malformed, state unchanged.
    packet = certify(delta_packet(state, group.owner, {**raw, "v": 3}), group.ratifiers)
    assert reason(state, packet) == "malformed"


def test_a_rename_and_a_hand_over_move_the_name_and_the_owner() -> None:
    group = make_group()
    state = group.state()
    same = Roster(1, state.current_roster.members)
    state.apply_roster_packet(change(group, state, same, name="renamed"))
    assert state.name == "renamed"
    assert state.genesis.genesis.name == "test group"
    # Hand the group to the user, who becomes a ratifier in the same change.
    members = [
        attrs.evolve(m, role=Role.RATIFIER) if m.peer == group.user.peer_id else m
        for m in state.current_roster.members
    ]
    handed = Roster(2, members)
    state.apply_roster_packet(change(group, state, handed, owner=group.user.peer_id))
    assert state.owner == group.user.peer_id
    assert state.owner_at(0) == state.owner_at(1) == group.owner.peer_id
    assert state.can_send(group.user.peer_id, 2, "roster")
    assert not state.can_send(group.owner.peer_id, 2, "roster")
    assert state.can_send(group.owner.peer_id, 1, "roster")  # it owned epoch 1
    # The old owner's change is refused; the new owner's applies (voters: epoch 2's ratifiers).
    voters = (*group.ratifiers, group.user)
    nxt = Roster(3, (*state.current_roster.members, member(group.outsider, Role.USER)))
    delta = delta_between(state.current_roster, nxt, REF, key_checks=(check_of(state),))
    old = certify(delta_packet(state, group.owner, delta), voters)
    assert reason(state, old) == "not allowed"
    bare = delta_packet(state, group.owner, delta)
    assert check_for_ratification(bare, state, now_ms=NOW, have=lambda _: False) == "not allowed"
    state.apply_roster_packet(certify(delta_packet(state, group.user, delta), voters))
    assert group.outsider.peer_id in state.current_roster
    assert state.name == "renamed"


def test_format_1_roster_messages_are_still_read() -> None:
    group = make_group()
    state, after = invite_outsider(group)
    legacy = certify(roster_packet(state, group.owner, after.members), group.ratifiers)
    state.apply_roster_packet(legacy)
    assert state.current_roster == after
    # ...and a delta may follow one.
    nxt = Roster(2, [m for m in after.members if m.peer != group.outsider.peer_id])
    state.apply_roster_packet(change(group, state, nxt))
    assert group.outsider.peer_id not in state.current_roster


def test_the_delta_vector() -> None:
    vector = json.loads((VECTORS / "roster_delta.json").read_text())
    chain_vector = json.loads((VECTORS / "roster_message.json").read_text())
    genesis = json.loads((VECTORS / "genesis.json").read_text())
    signed = SignedGenesis.decode(bytes.fromhex(genesis["cbor_hex"]))
    first = Packet.decode(bytes.fromhex(chain_vector["cbor_hex"]))
    packet = Packet.decode(bytes.fromhex(vector["cbor_hex"]))
    assert packet.message_hash.hex() == vector["message_hash"]
    assert packet.message.artifact.data.hex() == vector["delta_cbor_hex"]
    delta = decode_roster_artifact(packet)
    assert isinstance(delta, RosterDelta)
    assert delta.encode().hex() == vector["delta_cbor_hex"]
    assert delta.roster_hash.hex() == vector["roster_hash"]
    state = GroupState.from_chain(signed, [first, packet])
    assert str(state.owner) == vector["owner"]
    assert state.name == vector["name"]
    assert sha256(cbor.dumps(state.current_roster.to_cbor())).hex() == vector["roster_hash"]
    expected_epoch_2 = KeyCheck(
        2, epoch_key_check(signed.group_id, 2, bytes.fromhex(vector["epoch_key"]))
    )
    assert delta.key_checks == (expected_epoch_2,)
    # Tampered and signed again by the same owner and ratifiers: a different roster_hash, or
    # the add list out of order, is refused as malformed; the genuine one applies.
    owner, ratifier_2 = (KeyPair.from_seed(bytes([n]) * 32) for n in (1, 2))
    raw = cbor.loads(bytes.fromhex(vector["delta_cbor_hex"]), max_size=1 << 20)
    twice = [raw["add"][0], raw["add"][0]]
    for forged in ({**raw, "roster_hash": bytes(32)}, {**raw, "add": twice}):
        chain = GroupState.from_chain(signed, [first])
        message, _ = roster_message(chain, cbor.dumps(forged), now_ms=packet.message.time_stamp)
        resigned = certify(sign_message(owner, message, b"", b""), (owner, ratifier_2))
        assert reason(chain, resigned) == "malformed"
    chain = GroupState.from_chain(signed, [first])
    message, _ = roster_message(chain, delta.encode(), now_ms=packet.message.time_stamp)
    chain.apply_roster_packet(certify(sign_message(owner, message, b"", b""), (owner, ratifier_2)))
    assert chain.current_roster == state.current_roster
