"""Epoch key confirmation (specs/chat.md §15): every key a member takes matches the check the
owner signed in the roster message, and the chain fixes each epoch's check once."""

from __future__ import annotations

import pytest

from chat.core.enginesim import Sim
from chat.core.groups import certify
from p2pchat.chat.core import cbor, crypto
from p2pchat.chat.core.engine import ChatEngine
from p2pchat.chat.core.packet import Packet, sign_message
from p2pchat.chat.core.roster import Role, Roster, RosterError
from p2pchat.chat.core.roster_delta import RosterDelta, decode_roster_artifact
from p2pchat.chat.core.roster_update import (
    KeyCheck,
    RosterUpdate,
    build_roster_message,
    epoch_key_check,
)
from p2pchat.chat.core.validate import check_for_ratification
from p2pchat.chat.core.view import unwrap_keys, wrap_key
from p2pchat.errors import DecodeError


def group() -> tuple[Sim, bytes, ChatEngine, ChatEngine]:
    """A owns a group (sole ratifier); M is a user who joined with the history."""
    sim = Sim()
    a, m = sim.add(), sim.add()
    group_id = sim.create(a, quorum=None)
    sim.invite(a, group_id, m, Role.USER)
    return sim, group_id, a, m


def crafted(
    owner: ChatEngine, group_id: bytes, key: bytes, checks: tuple[KeyCheck, ...], now: int
) -> Packet:
    """The owner's roster message opening the next epoch with ``key`` wrapped for every member
    and the given key checks (right or wrong)."""
    view = owner.view(group_id)
    state = view.state
    epoch = state.current_epoch + 1
    roster = Roster(epoch, state.current_roster.members, state.current_roster.quorum)
    keys = tuple(wrap_key(key, m, group_id, epoch) for m in roster.members)
    update = RosterUpdate(roster, keys, (), checks)
    message, _ = build_roster_message(state, update, now_ms=now, parents=view.heads.heads())
    return sign_message(owner.identity, message, b"", b"")


def test_a_roster_change_checks_every_key_it_carries() -> None:
    sim, group_id, a, m = group()
    n = sim.add()
    sim.invite(a, group_id, n, Role.USER)
    state = a.view(group_id).state
    first = decode_roster_artifact(state.roster_packets[0])
    update = decode_roster_artifact(state.roster_packets[-1])
    assert isinstance(first, RosterDelta)
    assert isinstance(update, RosterDelta)
    assert {c.epoch for c in first.key_checks} == {0, 1}  # epoch 0's check written once, here
    assert {c.epoch for c in update.key_checks} == {2}  # the chain fixed 0 and 1 already
    for epoch in (0, 1, 2):
        key = a.view(group_id).epoch_keys[epoch]
        assert state.key_check(epoch) == epoch_key_check(group_id, epoch, key)
    # Every member holds the keys the checks confirm.
    for member in (m, n):
        for epoch, key in member.view(group_id).epoch_keys.items():
            assert key == a.view(group_id).epoch_keys[epoch]


def test_a_key_that_does_not_match_the_check_is_not_taken() -> None:
    sim, group_id, a, m = group()
    view = m.view(group_id)
    epoch = view.state.current_epoch + 1
    key, other = crypto.new_epoch_key(), crypto.new_epoch_key()
    right = (KeyCheck(epoch, epoch_key_check(group_id, epoch, key)),)
    wrong = (KeyCheck(epoch, epoch_key_check(group_id, epoch, other)),)
    assert unwrap_keys(view, crafted(a, group_id, key, right, sim.now), m.hpke, m.peer_id) == {
        epoch: key
    }
    assert unwrap_keys(view, crafted(a, group_id, key, wrong, sim.now), m.hpke, m.peer_id) == {}
    assert unwrap_keys(view, crafted(a, group_id, key, (), sim.now), m.hpke, m.peer_id) == {}


def test_a_check_that_contradicts_the_chain_is_refused_at_ratification_and_delivery() -> None:
    sim, group_id, a, _m = group()
    state = a.view(group_id).state
    assert state.key_check(0) is not None  # fixed by the invite that sent M the history
    epoch = state.current_epoch + 1
    key = crypto.new_epoch_key()
    checks = (
        KeyCheck(0, epoch_key_check(group_id, 0, crypto.new_epoch_key())),  # not K_0's
        KeyCheck(epoch, epoch_key_check(group_id, epoch, key)),
    )
    # A history key for the owner itself makes epoch 0 one of the carried epochs.
    view = a.view(group_id)
    roster = Roster(epoch, state.current_roster.members, state.current_roster.quorum)
    owner = roster.member(a.peer_id)
    assert owner is not None
    update = RosterUpdate(
        roster,
        tuple(wrap_key(key, mm, group_id, epoch) for mm in roster.members),
        (wrap_key(view.epoch_keys[0], owner, group_id, 0),),
        checks,
    )
    assert state.key_check_conflict(update) is not None
    message, _ = build_roster_message(state, update, now_ms=sim.now, parents=view.heads.heads())
    packet = sign_message(a.identity, message, b"", b"")
    reason = check_for_ratification(packet, state, now_ms=sim.now, have=view.has)
    assert reason == "malformed"
    with pytest.raises(RosterError, match="key check"):
        state.apply_roster_packet(certify(packet, [a.identity]))
    assert state.current_epoch == epoch - 1


def test_key_checks_decode_strictly() -> None:
    _sim, group_id, a, _m = group()
    view = a.view(group_id)
    state = view.state
    epoch = state.current_epoch + 1
    key = crypto.new_epoch_key()
    roster = Roster(epoch, state.current_roster.members, state.current_roster.quorum)
    owner = roster.member(a.peer_id)
    assert owner is not None
    update = RosterUpdate(  # format 1: a history key of epoch 0 for the owner, both checked
        roster,
        tuple(wrap_key(key, mm, group_id, epoch) for mm in roster.members),
        (wrap_key(view.epoch_keys[0], owner, group_id, 0),),
        (
            KeyCheck(0, epoch_key_check(group_id, 0, view.epoch_keys[0])),
            KeyCheck(epoch, epoch_key_check(group_id, epoch, key)),
        ),
    )
    raw = update.to_cbor()
    assert RosterUpdate.from_cbor(raw) == update
    with pytest.raises(DecodeError, match="not empty"):
        RosterUpdate.from_cbor({**raw, "key_checks": []})
    extra = KeyCheck(99, bytes(32))
    with pytest.raises(DecodeError, match="cover exactly"):
        RosterUpdate.from_cbor({**raw, "key_checks": [*raw["key_checks"], extra.to_cbor()]})
    assert len(raw["key_checks"]) == 2  # the new key and the history key of epoch 0
    with pytest.raises(DecodeError, match="sorted"):
        RosterUpdate.from_cbor({**raw, "key_checks": raw["key_checks"][::-1]})
    without = {k: v for k, v in raw.items() if k != "key_checks"}
    assert RosterUpdate.from_cbor(without).key_checks == ()
    assert cbor.dumps(RosterUpdate.from_cbor(without).to_cbor()) == cbor.dumps(without)
    with pytest.raises(ValueError, match="32 bytes"):
        KeyCheck(0, b"short")
