"""The ratification and delivery checks, each reason and their order (specs/chat.md §6)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import pytest

from chat.core.groups import NOW, Group, certify, make_group, member, roster_packet, text_packet
from p2pchat.chat.core.group_state import GroupState
from p2pchat.chat.core.packet import Packet, sha256
from p2pchat.chat.core.roster import Member, Role
from p2pchat.chat.core.validate import (
    CLOCK_SKEW_MS,
    TIME_WINDOW_MS,
    check_for_delivery,
    check_for_ratification,
)

GROUP = make_group()
OTHER_GROUP = make_group(quorum=3)
PARENT = sha256(b"parent")
MISSING = sha256(b"missing")


def have(message_hash: bytes) -> bool:
    return message_hash == PARENT


def _members_epoch_1(group: Group) -> list[Member]:
    """Epoch 1: the viewer leaves, the outsider joins as a user."""
    kept = [m for m in group.signed.genesis.roster.members if m.peer != group.viewer.peer_id]
    return [*kept, member(group.outsider, Role.USER)]


def _state_at_epoch_1() -> tuple[GroupState, Packet]:
    state = GROUP.state()
    packet = certify(roster_packet(state, GROUP.owner, _members_epoch_1(GROUP)), GROUP.ratifiers)
    state.apply_roster_packet(packet)
    return state, packet


def _tamper_data(packet: Packet) -> Packet:
    art = attrs.evolve(packet.message.artifact, data=b"other bytes")
    return attrs.evolve(packet, message=attrs.evolve(packet.message, artifact=art))


def _forge(packet: Packet) -> Packet:
    return attrs.evolve(packet, signature=bytes(64))


def _swap_key(packet: Packet) -> Packet:
    return attrs.evolve(packet, aes_key=b"\x01" * 60)


def _claim_hash(packet: Packet) -> Packet:
    return attrs.evolve(packet, message_hash=sha256(b"claimed"))


# -- ratification --------------------------------------------------------------------------------


def _ratify(packet: Packet, state: GroupState | None = None, now_ms: int = NOW) -> str | None:
    return check_for_ratification(
        packet, GROUP.state() if state is None else state, now_ms=now_ms, have=have
    )


def test_ratification_accepts_a_good_packet() -> None:
    for author in (GROUP.owner, GROUP.ratifiers[1], GROUP.user):
        assert _ratify(text_packet(GROUP.group_id, author, parents=[PARENT])) is None


def test_ratification_accepts_the_owners_roster_message() -> None:
    state = GROUP.state()
    packet = roster_packet(state, GROUP.owner, _members_epoch_1(GROUP))
    assert _ratify(packet, state) is None


Builder = Callable[[], Packet]

RATIFICATION_CASES: list[tuple[str, Builder, str]] = [
    (
        "another-group",
        lambda: text_packet(OTHER_GROUP.group_id, GROUP.user),
        "unknown group",
    ),
    ("future-epoch", lambda: text_packet(GROUP.group_id, GROUP.user, epoch=1), "future epoch"),
    ("outsider", lambda: text_packet(GROUP.group_id, GROUP.outsider), "not a member"),
    ("viewer", lambda: text_packet(GROUP.group_id, GROUP.viewer), "not allowed"),
    (
        "user-roster",
        lambda: text_packet(GROUP.group_id, GROUP.user, message_type="roster"),
        "not allowed",
    ),
    (
        "ratifier-roster",
        lambda: text_packet(GROUP.group_id, GROUP.ratifiers[1], message_type="roster"),
        "not allowed",
    ),
    ("message-hash", lambda: _claim_hash(text_packet(GROUP.group_id, GROUP.user)), "bad hash"),
    ("artifact-hash", lambda: _tamper_data(text_packet(GROUP.group_id, GROUP.user)), "bad hash"),
    ("key-hash", lambda: _swap_key(text_packet(GROUP.group_id, GROUP.user)), "bad hash"),
    ("signature", lambda: _forge(text_packet(GROUP.group_id, GROUP.user)), "bad signature"),
    (
        "signed-by-another",
        lambda: attrs.evolve(
            text_packet(GROUP.group_id, GROUP.user),
            signature=text_packet(GROUP.group_id, GROUP.owner).signature,
        ),
        "bad signature",
    ),
    (
        "too-late",
        lambda: text_packet(GROUP.group_id, GROUP.user, time_stamp=NOW + TIME_WINDOW_MS + 1),
        "bad timestamp",
    ),
    (
        "too-early",
        lambda: text_packet(GROUP.group_id, GROUP.user, time_stamp=NOW - TIME_WINDOW_MS - 1),
        "bad timestamp",
    ),
    (
        "parents",
        lambda: text_packet(GROUP.group_id, GROUP.user, parents=[PARENT, MISSING]),
        "missing parents",
    ),
    (
        "roster-content",
        lambda: text_packet(GROUP.group_id, GROUP.owner, message_type="roster"),
        "malformed",
    ),
    # Several faults: the first check in §6 order decides.
    (
        "outsider-and-forged-and-late",
        lambda: _forge(text_packet(GROUP.group_id, GROUP.outsider, time_stamp=0)),
        "not a member",
    ),
    (
        "future-and-outsider",
        lambda: text_packet(GROUP.group_id, GROUP.outsider, epoch=5),
        "future epoch",
    ),
    (
        "hash-and-signature",
        lambda: _forge(_tamper_data(text_packet(GROUP.group_id, GROUP.user))),
        "bad hash",
    ),
    (
        "signature-and-time",
        lambda: _forge(text_packet(GROUP.group_id, GROUP.user, time_stamp=0)),
        "bad signature",
    ),
    (
        "time-and-parents",
        lambda: text_packet(GROUP.group_id, GROUP.user, time_stamp=0, parents=[MISSING]),
        "bad timestamp",
    ),
    (
        "parents-and-roster-content",
        lambda: text_packet(GROUP.group_id, GROUP.owner, message_type="roster", parents=[MISSING]),
        "missing parents",
    ),
]


@pytest.mark.parametrize(
    ("build", "reason"),
    [pytest.param(build, reason, id=name) for name, build, reason in RATIFICATION_CASES],
)
def test_ratification_reasons(build: Builder, reason: str) -> None:
    assert _ratify(build()) == reason


def test_ratification_refuses_a_stale_epoch() -> None:
    state, _ = _state_at_epoch_1()
    assert _ratify(text_packet(GROUP.group_id, GROUP.user), state) == "stale epoch"
    assert _ratify(text_packet(GROUP.group_id, GROUP.user, epoch=1), state) is None
    # The new member may send, the removed viewer is no longer a member.
    assert _ratify(text_packet(GROUP.group_id, GROUP.outsider, epoch=1), state) is None
    assert _ratify(text_packet(GROUP.group_id, GROUP.viewer, epoch=1), state) == "not a member"


@pytest.mark.parametrize("offset", [0, TIME_WINDOW_MS, -TIME_WINDOW_MS])
def test_ratification_time_window_is_inclusive(offset: int) -> None:
    packet = text_packet(GROUP.group_id, GROUP.user, time_stamp=NOW + offset)
    assert _ratify(packet) is None


# -- delivery ------------------------------------------------------------------------------------


def _deliver(packet: Packet, state: GroupState | None = None) -> str | None:
    return check_for_delivery(packet, GROUP.state() if state is None else state, have=have)


def _certified(author: Any = None, **kwargs: Any) -> Packet:
    return certify(text_packet(GROUP.group_id, author or GROUP.user, **kwargs), GROUP.ratifiers[:2])


def test_delivery_accepts_a_certified_packet_out_of_the_time_window() -> None:
    assert _deliver(_certified(parents=[PARENT])) is None
    assert _deliver(_certified(parents=[PARENT], time_stamp=0)) is None


def test_delivery_refuses_a_parentless_message_back_dated_before_the_genesis() -> None:
    # §6 "Order and time": only the group's first message has no parents, and it is not
    # earlier than the genesis (give or take the clock skew).
    created = GROUP.state().genesis.genesis.created
    assert _deliver(_certified(time_stamp=created)) is None
    assert _deliver(_certified(time_stamp=created - CLOCK_SKEW_MS - 1)) == "bad timestamp"


def test_delivery_refuses_a_message_stamped_before_its_parents() -> None:
    def time_of(message_hash: bytes) -> int | None:
        return NOW if message_hash == PARENT else None

    def deliver(time_stamp: int) -> str | None:
        packet = _certified(parents=[PARENT], time_stamp=time_stamp)
        return check_for_delivery(packet, GROUP.state(), have=have, time_of=time_of)

    assert deliver(NOW - CLOCK_SKEW_MS) is None
    assert deliver(NOW - CLOCK_SKEW_MS - 1) == "bad timestamp"


def test_ratification_refuses_a_fresh_branch_and_a_late_parentless_message() -> None:
    def ratify(packet: Packet, **kwargs: Any) -> str | None:
        return check_for_ratification(packet, GROUP.state(), now_ms=NOW, have=have, **kwargs)

    parentless = text_packet(GROUP.group_id, GROUP.user, time_stamp=NOW)
    assert ratify(parentless, holds_any=False) is None
    assert ratify(parentless, holds_any=True) == "bad parents"
    on_parent = text_packet(GROUP.group_id, GROUP.user, time_stamp=NOW, parents=[PARENT])
    # The author's latest message is not a parent: fine if it is recent, refused if older.
    recent = (NOW - CLOCK_SKEW_MS, MISSING)
    old = (NOW - CLOCK_SKEW_MS - 1, MISSING)
    assert ratify(on_parent, holds_any=True, author_latest=recent) is None
    assert ratify(on_parent, holds_any=True, author_latest=old) == "bad parents"
    assert ratify(on_parent, holds_any=True, author_latest=(0, PARENT)) is None


def test_delivery_accepts_an_earlier_epoch() -> None:
    state, _ = _state_at_epoch_1()
    # The viewer was removed in epoch 1, but a user's epoch-0 message is still good.
    assert _deliver(_certified(), state) is None
    assert _deliver(certify(text_packet(GROUP.group_id, GROUP.viewer), GROUP.ratifiers), state) == (
        "not allowed"
    )


DELIVERY_CASES: list[tuple[str, Builder, str]] = [
    (
        "another-group",
        lambda: certify(text_packet(OTHER_GROUP.group_id, GROUP.user), OTHER_GROUP.ratifiers),
        "unknown group",
    ),
    ("future-epoch", lambda: _certified(epoch=1), "future epoch"),
    ("no-certificate", lambda: text_packet(GROUP.group_id, GROUP.user), "bad certificate"),
    (
        "short-certificate",
        lambda: certify(text_packet(GROUP.group_id, GROUP.user), GROUP.ratifiers[:1]),
        "bad certificate",
    ),
    (
        "certificate-epoch",
        lambda: certify(text_packet(GROUP.group_id, GROUP.user), GROUP.ratifiers, epoch=1),
        "bad certificate",
    ),
    (
        "non-ratifier-votes",
        lambda: certify(text_packet(GROUP.group_id, GROUP.user), [GROUP.user, GROUP.owner]),
        "bad certificate",
    ),
    ("outsider", lambda: _certified(GROUP.outsider), "not a member"),
    ("viewer", lambda: _certified(GROUP.viewer), "not allowed"),
    ("user-roster", lambda: _certified(message_type="roster"), "not allowed"),
    (
        "artifact-hash",
        lambda: certify(_tamper_data(text_packet(GROUP.group_id, GROUP.user)), GROUP.ratifiers),
        "bad hash",
    ),
    (
        "key-hash",
        lambda: certify(_swap_key(text_packet(GROUP.group_id, GROUP.user)), GROUP.ratifiers),
        "bad hash",
    ),
    (
        "signature",
        lambda: certify(_forge(text_packet(GROUP.group_id, GROUP.user)), GROUP.ratifiers),
        "bad signature",
    ),
    ("parents", lambda: _certified(parents=[MISSING]), "missing parents"),
    ("roster-content", lambda: _certified(GROUP.owner, message_type="roster"), "malformed"),
    # Order: the certificate comes before membership, hashes before the signature.
    (
        "outsider-uncertified",
        lambda: text_packet(GROUP.group_id, GROUP.outsider),
        "bad certificate",
    ),
    (
        "viewer-forged",
        lambda: certify(_forge(text_packet(GROUP.group_id, GROUP.viewer)), GROUP.ratifiers),
        "not allowed",
    ),
    (
        "forged-missing-parents",
        lambda: certify(
            _forge(text_packet(GROUP.group_id, GROUP.user, parents=[MISSING])), GROUP.ratifiers
        ),
        "bad signature",
    ),
]


@pytest.mark.parametrize(
    ("build", "reason"),
    [pytest.param(build, reason, id=name) for name, build, reason in DELIVERY_CASES],
)
def test_delivery_reasons(build: Builder, reason: str) -> None:
    assert _deliver(build()) == reason


def test_delivery_of_roster_messages() -> None:
    state = GROUP.state()
    packet = certify(roster_packet(state, GROUP.owner, _members_epoch_1(GROUP)), GROUP.ratifiers)
    assert _deliver(packet, state) is None
    state.apply_roster_packet(packet)
    # The roster message the chain holds is still good; a rival one for the same epoch is not.
    assert _deliver(packet, state) is None
    rival = certify(
        roster_packet(GROUP.state(), GROUP.owner, list(GROUP.signed.genesis.roster.members)),
        GROUP.ratifiers,
    )
    assert rival.message_hash != packet.message_hash
    assert _deliver(rival, state) == "stale epoch"
