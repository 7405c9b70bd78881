"""Holding a group: the rows of a new group and of a join, and of a certified message
(sans-IO; the engine commits them, chat/core/engine.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from ...errors import ProtocolError
from ...identity import KeyPair, PeerID
from . import crypto
from .genesis import SignedGenesis, new_group
from .group_state import GroupState
from .packet import Packet
from .roster import History, Member
from .txn import AddGroup, PutEpochKey, PutPacket, PutRoster, Transaction
from .view import ChatError, GroupView, unwrap_keys

ROSTER: Final = "roster"


def accept_rows(
    group_id: bytes, packet: Packet, keys: dict[int, bytes], now: int
) -> list[PutPacket | PutRoster | PutEpochKey]:
    """The rows of a certified ``packet``: the packet and, for a roster message, the roster of
    the epoch it opens and the epoch ``keys`` it brings us."""
    rows: list[PutPacket | PutRoster | PutEpochKey] = [PutPacket(packet, received_at=now)]
    if packet.message.message_type == ROSTER:
        rows.append(PutRoster(group_id, packet.message.epoch + 1, packet.encode()))
        rows += [PutEpochKey(group_id, e, k) for e, k in sorted(keys.items())]
    return rows


def new_group_rows(
    owner: KeyPair,
    entry: Member,
    name: str,
    quorum: int | None,
    history: History,
    now: int,
    nonce: bytes,
) -> tuple[GroupView, Transaction]:
    """A new group with ``owner`` (as ``entry``) its sole ratifier: its record and its rows.

    Raises:
        ValueError: a bad name, quorum or history setting.
    """
    signed = new_group(
        owner, name, [entry], quorum=quorum, history=history, now_ms=now, nonce=nonce
    )
    key = crypto.new_epoch_key()
    view = GroupView(signed, GroupState.from_genesis(signed), {0: key})
    txn = Transaction(
        (AddGroup(signed.group_id, signed.encode(), now), PutEpochKey(signed.group_id, 0, key))
    )
    return view, txn


def join_rows(
    group_id: bytes,
    body: Mapping[str, Any],
    keypair: crypto.HpkeKeyPair,
    me: PeerID,
    now: int,
) -> tuple[GroupView, Transaction]:
    """Verify a ``pktR`` body (genesis and roster chain) and return the group as ``me`` would
    hold it, with the rows of the join (group, every roster message, every key for us).

    Raises:
        ChatError: the chain does not verify or ``me`` is not in its current roster.
    """
    try:
        signed = SignedGenesis.from_cbor(body["genesis"])
        rosters = body["rosters"]
        if not isinstance(rosters, list):
            raise ChatError("the roster chain is not a list")
        packets = [Packet.from_cbor(p) for p in rosters]
        if signed.group_id != group_id or not signed.verify():
            raise ChatError("the genesis does not match the group id or its signature")
        state = GroupState.from_chain(signed, packets)
    except (KeyError, TypeError, ProtocolError) as exc:
        raise ChatError(f"the group's roster chain does not verify: {exc}") from exc
    return join_state_rows(state, keypair, me, now)


def join_state_rows(
    state: GroupState, keypair: crypto.HpkeKeyPair, me: PeerID, now: int
) -> tuple[GroupView, Transaction]:
    """The group of a verified chain (e.g. paged in by
    :class:`~p2pchat.chat.core.roster_sync.ChainFetch`) as ``me`` would hold it, with the rows
    of the join (group, every roster message, every key for us).

    Raises:
        ChatError: ``me`` is not in the chain's current roster.
    """
    if not state.is_member(me, state.current_epoch):
        raise ChatError("we are not a member of that group (ask its owner for an invite)")
    signed = state.genesis
    group_id = state.group_id
    view = GroupView(signed, state)
    operations: list[AddGroup | PutPacket | PutRoster | PutEpochKey] = [
        AddGroup(group_id, signed.encode(), now)
    ]
    for packet in state.roster_packets:
        keys = unwrap_keys(view, packet, keypair, me)
        view.epoch_keys.update(keys)
        view.hold(packet)
        operations += accept_rows(group_id, packet, keys, now)
    return view, Transaction(tuple(operations))
