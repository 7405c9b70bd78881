"""The verified roster chain, and roster messages built from it (specs/chat.md §3, §7)."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from chat.core.groups import (
    NOW,
    certify,
    make_group,
    member,
    roster_packet,
    text_packet,
)
from p2pchat.chat.core import cbor
from p2pchat.chat.core.group_state import GroupState
from p2pchat.chat.core.packet import Artifact, Message, sha256, sign_message
from p2pchat.chat.core.roster import (
    Member,
    Role,
    Roster,
    RosterError,
)
from p2pchat.chat.core.roster_update import (
    ROSTER_MIME_TYPE,
    RosterUpdate,
    build_roster_message,
)
from p2pchat.errors import LocalProtocolError

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
