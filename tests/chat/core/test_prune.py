"""Pruned packets: a deleted message without its content key (specs/chat.md §17)."""

from __future__ import annotations

import attrs
import pytest

from chat.core.enginesim import Sim
from chat.core.groups import NOW, certify, make_group, text_packet
from p2pchat.chat.core import cbor
from p2pchat.chat.core.engine import ChatEngine
from p2pchat.chat.core.packet import (
    Packet,
    PacketError,
    sha256,
)
from p2pchat.chat.core.packet_json import (
    packet_from_json,
    packet_to_json,
)
from p2pchat.chat.core.prune import BAD_TOMBSTONE, check_tombstone, is_prunable_delete, prune
from p2pchat.chat.core.refs import DELETE, RefInfo
from p2pchat.chat.core.roster import Role
from p2pchat.chat.core.txn import PrunePacket, PutPacket, Transaction
from p2pchat.chat.core.validate import check_for_delivery, check_for_ratification
from p2pchat.identity import KeyPair

GROUP = make_group()
RATIFIERS = GROUP.ratifiers[:2]
TEXT = certify(text_packet(GROUP.group_id, GROUP.user, data=b"secret words"), RATIFIERS)
HELD = {TEXT.message_hash: RefInfo(GROUP.user.peer_id, "text")}


def _delete(author: KeyPair, *, target: Packet = TEXT, message_type: str = DELETE) -> Packet:
    packet = text_packet(
        GROUP.group_id,
        author,
        message_type=message_type,
        time_stamp=NOW + 1000,
        parents=[target.message_hash],
        ref_hash=target.message_hash,
        data=b"",
    )
    return certify(packet, RATIFIERS)


DELETE_BY_AUTHOR = _delete(GROUP.user)
PRUNED = prune(TEXT, DELETE_BY_AUTHOR)


def _have(message_hash: bytes) -> bool:
    return message_hash in HELD


def test_a_pruned_packet_keeps_the_signed_message_and_drops_the_content_key() -> None:
    assert PRUNED.pruned
    assert (PRUNED.aes_key, PRUNED.iv) == (b"", b"")
    assert PRUNED.message == TEXT.message
    assert PRUNED.message_hash == TEXT.message_hash
    assert PRUNED.signature == TEXT.signature
    assert PRUNED.certificate == TEXT.certificate
    assert PRUNED.tombstone == DELETE_BY_AUTHOR
    assert PRUNED.check_hashes()
    assert not attrs.evolve(PRUNED, tombstone=None).check_hashes()  # key_hash fails without it


def test_a_pruned_packet_round_trips_in_cbor_and_json() -> None:
    decoded = Packet.decode(PRUNED.encode())
    assert decoded.pruned
    assert decoded.encode() == PRUNED.encode()
    assert packet_from_json(packet_to_json(decoded)) == decoded


def _raw(**changes: object) -> dict[str, object]:
    raw = PRUNED.to_cbor()
    raw.update(changes)
    return raw


@pytest.mark.parametrize(
    "raw",
    [
        _raw(aes_key=bytes(60), iv=bytes(12)),  # a pruned packet holds no key
        _raw(tombstone=attrs.evolve(DELETE_BY_AUTHOR, certificate=None).to_cbor()),
        _raw(tombstone=PRUNED.to_cbor()),  # a tombstone is not itself pruned
        _raw(tombstone=b"not a packet"),
    ],
)
def test_malformed_pruned_packets_are_refused(raw: dict[str, object]) -> None:
    with pytest.raises(PacketError):
        Packet.decode(cbor.dumps(raw))


def test_a_member_stores_a_pruned_packet_whose_tombstone_stands() -> None:
    state = GROUP.state()
    assert check_tombstone(PRUNED, state) is None
    assert check_for_delivery(PRUNED, state, have=_have, ref_of=HELD.get) is None
    moderated = prune(TEXT, _delete(GROUP.owner))  # the owner's moderation delete
    assert check_for_delivery(moderated, state, have=_have, ref_of=HELD.get) is None


def test_a_ratifier_never_votes_for_a_pruned_packet() -> None:
    bare = attrs.evolve(PRUNED, certificate=None)
    reason = check_for_ratification(bare, GROUP.state(), now_ms=NOW, have=_have)
    assert reason == "malformed"


def _forged(tombstone: Packet) -> Packet:
    return attrs.evolve(TEXT, aes_key=b"", iv=b"", tombstone=tombstone)


@pytest.mark.parametrize(
    ("tombstone", "reason"),
    [
        # a delete by a member that may not delete it, certified anyway
        (_delete(GROUP.ratifiers[1]), BAD_TOMBSTONE),
        # not a delete
        (_delete(GROUP.user, message_type="edit"), BAD_TOMBSTONE),
        # a delete of another message
        (
            certify(
                text_packet(
                    GROUP.group_id,
                    GROUP.user,
                    message_type=DELETE,
                    ref_hash=sha256(b"another message"),
                    data=b"",
                ),
                RATIFIERS,
            ),
            BAD_TOMBSTONE,
        ),
        # a certificate short of the quorum
        (certify(attrs.evolve(DELETE_BY_AUTHOR, certificate=None), RATIFIERS[:1]), BAD_TOMBSTONE),
        # a delete whose signature is not its author's
        (attrs.evolve(DELETE_BY_AUTHOR, signature=bytes(64)), BAD_TOMBSTONE),
        # a delete of an epoch this member has not learnt
        (
            _delete_epoch := certify(
                text_packet(
                    GROUP.group_id,
                    GROUP.user,
                    epoch=3,
                    message_type=DELETE,
                    ref_hash=TEXT.message_hash,
                    data=b"",
                ),
                RATIFIERS,
            ),
            "future epoch",
        ),
    ],
)
def test_a_tombstone_that_does_not_stand_is_refused(tombstone: Packet, reason: str) -> None:
    forged = _forged(tombstone)
    assert check_tombstone(forged, GROUP.state()) == reason
    assert check_for_delivery(forged, GROUP.state(), have=_have, ref_of=HELD.get) == reason


def test_only_content_messages_are_pruned() -> None:
    roster_like = certify(
        text_packet(GROUP.group_id, GROUP.user, message_type="profile", data=b"name"), RATIFIERS
    )
    with pytest.raises(ValueError, match="not a certified delete"):
        prune(roster_like, _delete(GROUP.user, target=roster_like))
    with pytest.raises(ValueError, match="not a certified delete"):
        prune(TEXT, attrs.evolve(DELETE_BY_AUTHOR, certificate=None))
    assert check_tombstone(_forged(_delete(GROUP.user, target=roster_like)), GROUP.state()) == (
        BAD_TOMBSTONE
    )


def test_a_certified_delete_is_what_prunes() -> None:
    assert is_prunable_delete(DELETE_BY_AUTHOR)
    assert not is_prunable_delete(attrs.evolve(DELETE_BY_AUTHOR, certificate=None))
    assert not is_prunable_delete(TEXT)


def _prunes(sim: Sim, engine: ChatEngine, delete_hash: bytes) -> list[Transaction]:
    """The committed transactions of ``engine`` that store the certified delete."""
    return [
        c.txn
        for c in sim.commits[engine.peer_id]
        for op in c.txn.operations
        if isinstance(op, PutPacket)
        and op.packet.message_hash == delete_hash
        and op.packet.certificate is not None
    ]


def test_every_engine_commits_the_prune_with_the_certified_delete() -> None:
    """The author's node (quorum reached) and a member's (delivery) drop the content key in
    the transaction that stores the delete: a crash leaves both or neither."""
    sim = Sim()
    a, b, c = sim.add(), sim.add(), sim.add()
    group_id = sim.create(a)
    sim.invite(a, group_id, b, Role.RATIFIER)
    sim.invite(a, group_id, c, Role.USER)
    text, commit = c.author(
        group_id, b"oops", message_type="text", mime="text/plain", ref_hash=None, now=sim.now
    )
    sim.commit(c, commit)
    delete, commit = c.author(
        group_id,
        b"",
        message_type=DELETE,
        mime="text/plain",
        ref_hash=text.message_hash,
        now=sim.now,
    )
    sim.commit(c, commit)
    for engine in (a, b, c):
        (txn,) = _prunes(sim, engine, delete.message_hash)
        (prune_op,) = [op for op in txn.operations if isinstance(op, PrunePacket)]
        assert prune_op.group_id == group_id
        assert prune_op.tombstone.message_hash == delete.message_hash
        assert prune_op.tombstone.certificate is not None
    # A reply is certified like any message, and prunes nothing.
    reply, commit = c.author(
        group_id,
        b"re",
        message_type="text",
        mime="text/plain",
        ref_hash=text.message_hash,
        now=sim.now,
    )
    sim.commit(c, commit)
    (txn,) = _prunes(sim, a, reply.message_hash)
    assert not any(isinstance(op, PrunePacket) for op in txn.operations)
