"""Writing our messages: a content message and a roster change, encrypted and signed (sans-IO).

Both are of the current epoch and name as parents the group's DAG heads and our latest held
message of that epoch; a content message also names the message it follows, our latest queued
one (specs/chat.md §6 "One author's order"). The engine decides when to write (a send, a
re-write after the epoch moved on or the message it followed left the outbox) and commits what
is written.
"""

from __future__ import annotations

from collections.abc import Sequence

from ...identity import KeyPair, PeerID
from . import crypto
from .artifact import ChunkedRef, decode_file_info, encode_file_info
from .keyset import MAX_KEY_SET, KeySet
from .packet import MAX_PARENTS, Artifact, Headers, Message, Packet, sha256, sign_message
from .refs import VIEWER_TYPES
from .roster import Member, Role, Roster, default_quorum
from .roster_delta import delta_between
from .roster_update import KeyCheck, WrappedKey, epoch_key_check, roster_message
from .view import ChatError, GroupView, NotAllowedError, wrap_key


def chain_parents(view: GroupView, author: PeerID, after: bytes | None) -> tuple[bytes, ...]:
    """The ``parents`` of ``author``'s next message: ``after`` (the message it follows, if
    any), the author's latest held message of the current epoch (the ratifiers' order rule,
    §6), and the DAG heads; sorted, at most 16, the first two always kept (the heads left out
    are named by later messages)."""
    kept: set[bytes] = set()
    if after is not None:
        kept.add(after)
    latest = view.latest.get((view.state.current_epoch, author))
    if latest is not None:
        kept.add(latest[1])
    heads = [h for h in view.next_parents() if h not in kept]
    return tuple(sorted(kept.union(heads[: MAX_PARENTS - len(kept)])))


def write_message(
    identity: KeyPair,
    view: GroupView,
    data: bytes,
    message_type: str,
    mime: str,
    ref_hash: bytes | None,
    now: int,
    *,
    after: bytes | None = None,
    content_key: bytes | None = None,
    chunked: ChunkedRef | None = None,
) -> Packet:
    """A message of ``data`` in the group's current epoch, sealed under its epoch key, that
    follows ``after`` (our latest queued message of the group, if any). With ``chunked`` the
    artifact's content travels as chunks sealed under ``content_key`` and ``data`` is what the
    message itself carries (the file name, specs/artifacts.md §3).

    Raises:
        NotAllowedError: our role cannot send ``message_type``.
        ChatError: we hold no key for the current epoch.
    """
    state = view.state
    epoch = state.current_epoch
    me = identity.peer_id
    viewer = state.role(me, epoch) is Role.VIEWER and message_type in VIEWER_TYPES
    if not (viewer or state.can_send(me, epoch, message_type)):  # specs/chat.md §17 "Viewers"
        if state.role(me, epoch) is None:
            raise NotAllowedError(f"we were removed from the group (it is at epoch {epoch})")
        raise NotAllowedError("our role in this group does not allow sending")
    key = view.epoch_keys.get(epoch)
    if key is None:
        raise ChatError(f"no key for epoch {epoch} of this group")
    sealed = crypto.encrypt_artifact(
        data,
        epoch_key=key,
        group_id=view.group_id,
        epoch=epoch,
        author=me,
        content_key=content_key,
    )
    artifact = Artifact(
        mime, sealed.data, sha256(sealed.data), sha256(sealed.aes_key + sealed.iv), chunked
    )
    message = Message(
        group_id=view.group_id,
        epoch=epoch,
        message_type=message_type,
        time_stamp=now,
        author=me,
        ref_hash=ref_hash,
        parents=chain_parents(view, me, after),
        headers=Headers(),
        artifact=artifact,
    )
    return sign_message(identity, message, sealed.aes_key, sealed.iv)


def write_roster_change(
    identity: KeyPair,
    view: GroupView,
    members: Sequence[Member],
    added: PeerID | None,
    now: int,
    *,
    name: str | None = None,
    owner: PeerID | None = None,
) -> tuple[Packet, KeySet]:
    """The roster message (a delta, §20) that opens the next epoch with ``members`` and a new
    epoch key, and the key set it commits to: the key wrapped for each of them; a newcomer
    ``added`` also gets the earlier keys when the group's history setting is ``"all"`` (the
    latest ones, when more would not fit a set). ``name`` renames the group, ``owner`` hands
    ownership to that member (a ratifier of ``members``). A group on the majority rule keeps
    it; another keeps its quorum, capped at the number of ratifiers.

    Raises:
        ChatError: the change breaks §3 or §20 (e.g. a member kept with another key).
    """
    state = view.state
    group_id = view.group_id
    current = state.current_roster
    epoch = state.current_epoch + 1
    ratifiers = sum(1 for m in members if m.role is Role.RATIFIER)
    if current.quorum == default_quorum(len(current.ratifiers)):
        quorum = default_quorum(ratifiers)
    else:
        quorum = min(current.quorum, ratifiers)
    try:
        roster = Roster(epoch, tuple(members), quorum, current.history)
    except ValueError as exc:
        raise ChatError(f"that roster is not valid: {exc}") from exc
    new_key = crypto.new_epoch_key()
    keys = [wrap_key(new_key, m, group_id, epoch) for m in roster.members]
    history_keys: list[WrappedKey] = []
    checks = [KeyCheck(epoch, epoch_key_check(group_id, epoch, new_key))]
    if added is not None and current.history == "all":
        newcomer = roster.member(added)
        if newcomer is not None and current.member(added) is None:
            for e, key in sorted(view.epoch_keys.items()):
                history_keys.append(wrap_key(key, newcomer, group_id, e))
                if state.key_check(e) is None:  # §20: each epoch's check is written once
                    checks.append(KeyCheck(e, epoch_key_check(group_id, e, key)))
    history_keys = history_keys[max(0, len(history_keys) - (MAX_KEY_SET - len(keys))) :]
    checks = [c for c in checks if c.epoch in {epoch, *(k.epoch for k in history_keys)}]
    keyset = KeySet((*keys, *history_keys))
    new_owner = state.owner if owner is None else owner
    role = roster.role_of(new_owner)
    if role is not Role.RATIFIER and (owner is not None or role is None or not role.can_send):
        raise ChatError("the owner must stay a member who may send (a new owner, a ratifier)")
    try:
        delta = delta_between(
            current, roster, keyset.ref(), name=name, owner=owner, key_checks=checks
        )
    except ValueError as exc:
        raise ChatError(f"that roster change is not valid: {exc}") from exc
    message, _ = roster_message(
        state, delta.encode(), now_ms=now, parents=chain_parents(view, identity.peer_id, None)
    )
    return sign_message(identity, message, b"", b""), keyset


def write_chunked_message(
    identity: KeyPair,
    view: GroupView,
    *,
    content_key: bytes,
    ref: ChunkedRef,
    name: str,
    mime: str,
    message_type: str,
    ref_hash: bytes | None,
    now: int,
    after: bytes | None = None,
) -> Packet:
    """A message whose artifact travels as chunks (specs/artifacts.md §3): ``data`` seals the
    file name under ``content_key`` (the key the chunks were sealed under, derived), and
    ``chunked`` names the manifest.

    Raises:
        NotAllowedError: our role cannot send ``message_type``.
        ChatError: we hold no key for the current epoch.
    """
    return write_message(
        identity,
        view,
        encode_file_info(name),
        message_type,
        mime,
        ref_hash,
        now,
        after=after,
        content_key=content_key,
        chunked=ref,
    )


def rewrite_message(
    identity: KeyPair,
    view: GroupView,
    packet: Packet,
    old_key: bytes,
    now: int,
    *,
    after: bytes | None = None,
) -> Packet:
    """A queued message written again in the current epoch (its epoch closed, or the message
    it followed can never be ratified), following ``after`` (specs/chat.md §11).

    An inline artifact is decrypted and sealed afresh. A chunked one keeps its content key (its
    chunks are sealed under a key derived from it, specs/artifacts.md §2), wrapped now under
    the current epoch key, with the file name sealed again under a fresh ``iv``.

    Raises:
        ProtocolError: the old packet does not decrypt.
        NotAllowedError, ChatError: as :func:`write_message`.
    """
    message = packet.message
    ref = message.artifact.chunked
    if ref is None:
        content = crypto.decrypt_packet(packet, epoch_key=old_key)
        return write_message(
            identity,
            view,
            content,
            message.message_type,
            message.artifact.type,
            message.ref_hash,
            now,
            after=after,
        )
    name = decode_file_info(crypto.decrypt_packet(packet, epoch_key=old_key))
    return write_chunked_message(
        identity,
        view,
        content_key=crypto.unwrap_content_key(packet, epoch_key=old_key),
        ref=ref,
        name=name,
        mime=message.artifact.type,
        message_type=message.message_type,
        ref_hash=message.ref_hash,
        now=now,
        after=after,
    )
