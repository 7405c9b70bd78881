"""Generate the chat protocol's test vectors, specs/vectors/chat/*.json (specs/chat.md §10).

    python tools/gen_chat_vectors.py            write the files
    python tools/gen_chat_vectors.py --check    regenerate in memory; exit 1 if the files differ

Every input is fixed: identity keys from seeds (``KeyPair.from_seed``), X25519 HPKE keys from
fixed private bytes, fixed epoch keys, content keys, IVs, nonces and timestamps, and Ed25519
signatures are deterministic. The one exception is HPKE: its encryption draws a fresh ephemeral
key that ``cryptography`` does not let us inject, so the wrapped epoch keys inside the roster
message were made once and are recorded in ``roster_message.json`` with each recipient's
private key. Both modes reuse the recorded ones after checking that each unwraps, with its
recipient's key and binding, to the epoch key it must carry; writing wraps afresh only a key
that is missing or does not unwrap, and ``--check`` fails on one instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import attrs

from p2pchat.chat.core import cbor, crypto, merkle
from p2pchat.chat.core.certificate import batch_signing_bytes, make_batch_votes, verify_vote
from p2pchat.chat.core.commitment import CloseCommitment, close_signing_bytes
from p2pchat.chat.core.genesis import SignedGenesis, new_group
from p2pchat.chat.core.group_state import GroupState
from p2pchat.chat.core.keyset import KeySet
from p2pchat.chat.core.packet import (
    Artifact,
    Certificate,
    Headers,
    Message,
    Packet,
    make_vote,
    message_signing_bytes,
    sha256,
    sign_message,
    verify_author,
    vote_signing_bytes,
)
from p2pchat.chat.core.packet_json import (
    to_json_view,
)
from p2pchat.chat.core.prune import check_tombstone, prune
from p2pchat.chat.core.roster import HISTORY_ALL, Member, Role, Roster
from p2pchat.chat.core.roster_delta import RosterDelta, delta_between
from p2pchat.chat.core.roster_update import (
    KeyCheck,
    RosterUpdate,
    WrappedKey,
    build_roster_message,
    epoch_key_check,
    roster_message,
)
from p2pchat.chat.core.validate import check_for_delivery
from p2pchat.chat.core.wire import Query, Response, encode_envelope
from p2pchat.errors import ProtocolError
from p2pchat.identity import KeyPair, PeerID

OUT_DIR: Final = Path(__file__).resolve().parent.parent / "specs" / "vectors" / "chat"

# -- the fixed inputs ----------------------------------------------------------------------------

KEM: Final = crypto.KEM_X25519
GROUP_NAME: Final = "vectors"
CREATED_MS: Final = 1_700_000_000_000
GENESIS_NONCE: Final = bytes(range(16))
EPOCH_KEYS: Final = {0: bytes(range(32)), 1: bytes(range(32, 64))}
#: The epoch-2 key of the delta vector (§20), whose check it carries.
EPOCH_KEY_2: Final = bytes(range(64, 96))
DELTA_TIME_MS: Final = CREATED_MS + 180_000
DELTA_NAME: Final = "vectors, renamed"

PENDING_HASH: Final = sha256(b"a message voted for, never certified")
TEXT_TIME_MS: Final = CREATED_MS + 60_000
TEXT_PLAINTEXT: Final = "hello, group"
TEXT_MIME: Final = "text/plain"
CONTENT_KEY: Final = b"\x11" * 32
CONTENT_IV: Final = b"\x22" * 12
KEY_NONCE: Final = b"\x33" * 12

ROSTER_TIME_MS: Final = CREATED_MS + 120_000
# The user's delete of its text message (specs/chat.md §17 "Pruned packets").
DELETE_TIME_MS: Final = CREATED_MS + 90_000
DELETE_KEY: Final = b"\x44" * 32
DELETE_IV: Final = b"\x55" * 12
DELETE_NONCE: Final = b"\x66" * 12
MRAT_RID: Final = 1
MRATB_RID: Final = 2
SMSGB_RID: Final = 3
#: §21: the user's two later messages of epoch 0 asked for as one batch, with a forged one
#: between them.
BATCH_TIMES: Final = (TEXT_TIME_MS + 1_000, TEXT_TIME_MS + 2_000)
BATCH_PLAINTEXTS: Final = ("second", "third")
#: Vector files kept by hand (reference data from elsewhere), not made by this generator.
FOREIGN: Final = frozenset({"merkle.json"})


class Person:
    """A vector participant: identity from ``seed`` x 32, X25519 HPKE key from ``hpke`` x 32."""

    def __init__(self, name: str, seed: int, hpke: int, role: Role) -> None:
        self.name = name
        self.seed = bytes([seed]) * 32
        self.keypair = KeyPair.from_seed(self.seed)
        self.peer: PeerID = self.keypair.peer_id
        self.hpke = crypto.HpkeKeyPair.from_private_bytes(KEM, bytes([hpke]) * 32)
        self.role = role

    def member(self) -> Member:
        return Member(self.peer, self.role, KEM, self.hpke.public_bytes())

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "seed": self.seed.hex(),
            "peer": str(self.peer),
            "role": self.role.value,
            "kem": KEM,
            "hpke_private": self.hpke.to_private_bytes().hex(),
            "hpke_public": self.hpke.public_bytes().hex(),
        }


OWNER: Final = Person("owner", 0x01, 0x41, Role.RATIFIER)
RATIFIER_2: Final = Person("ratifier-2", 0x02, 0x42, Role.RATIFIER)
RATIFIER_3: Final = Person("ratifier-3", 0x03, 0x43, Role.RATIFIER)
USER: Final = Person("user", 0x04, 0x44, Role.USER)
VIEWER: Final = Person("viewer", 0x05, 0x45, Role.VIEWER)  # joins in epoch 1
NEWCOMER: Final = Person("newcomer", 0x06, 0x46, Role.USER)  # joins in epoch 2 (§20 delta)
GENESIS_PEOPLE: Final = (OWNER, RATIFIER_2, RATIFIER_3, USER)
PEOPLE: Final = (*GENESIS_PEOPLE, VIEWER)

# (list name, peer bytes, epoch) -> enc: the wrapped epoch keys recorded in roster_message.json.
Recorded = Mapping[tuple[str, bytes, int], bytes]


class VectorError(Exception):
    """A recorded wrapped key is missing or does not unwrap, or a vector fails its check."""


# -- building ------------------------------------------------------------------------------------


def _certify(
    packet: Packet,
    voters: tuple[Person, ...],
    closes: Mapping[str, CloseCommitment] | None = None,
) -> Packet:
    """``packet`` certified by ``voters``; with ``closes`` (a roster message), closing votes
    with each voter's commitment (specs/chat.md §14)."""
    message = packet.message
    votes = [
        make_vote(
            p.keypair,
            message.group_id,
            message.epoch,
            packet.message_hash,
            None if closes is None else closes[p.name],
        )
        for p in voters
    ]
    votes.sort(key=lambda v: v.ratifier.to_bytes())
    return packet.with_certificate(Certificate(message.epoch, tuple(votes)))


def _wrap(
    what: str,
    person: Person,
    epoch: int,
    group_id: bytes,
    recorded: Recorded,
    *,
    fresh: bool,
) -> WrappedKey:
    """The epoch key of ``epoch`` wrapped for ``person``: the recorded one if it unwraps."""
    key = EPOCH_KEY_2 if epoch == 2 else EPOCH_KEYS[epoch]
    enc = recorded.get((what, person.peer.to_bytes(), epoch))
    if enc is not None:
        try:
            opened = crypto.unwrap_epoch_key(
                enc, keypair=person.hpke, group_id=group_id, epoch=epoch, peer=person.peer
            )
        except ProtocolError:
            opened = None
        if opened == key:
            return WrappedKey(person.peer, epoch, enc)
    if not fresh:
        state = "missing" if enc is None else "does not unwrap"
        raise VectorError(f"the recorded {what} entry for {person.name}, epoch {epoch}, {state}")
    enc = crypto.wrap_epoch_key(
        key,
        kem=KEM,
        hpke_public=person.hpke.public_bytes(),
        group_id=group_id,
        epoch=epoch,
        peer=person.peer,
    )
    return WrappedKey(person.peer, epoch, enc)


def _frame_vector(description: str, envelope: Query | Response, **derived: Any) -> dict[str, Any]:
    frame = encode_envelope(envelope)
    payload = cbor.dumps(envelope.to_map())
    _require(frame.endswith(payload), "a frame is its length prefix and the CBOR map")
    return {
        "description": description,
        "frame_hex": frame.hex(),
        "cbor_hex": payload.hex(),
        "json": to_json_view(envelope.to_map()),
        **derived,
    }


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise VectorError(f"a generated vector fails its own check: {what}")


def build(recorded: Recorded, *, fresh: bool) -> dict[str, dict[str, Any]]:
    """Every vector file's content, by file name.

    Raises:
        VectorError: a recorded wrapped key is missing or does not unwrap, and ``fresh`` is
            false.
    """
    signed = new_group(
        OWNER.keypair,
        GROUP_NAME,
        [p.member() for p in GENESIS_PEOPLE],
        history=HISTORY_ALL,
        now_ms=CREATED_MS,
        nonce=GENESIS_NONCE,
    )
    group_id = signed.group_id
    state = GroupState.from_genesis(signed)
    genesis_roster = state.current_roster

    # A text message of the user in epoch 0, encrypted, ratified by the owner and ratifier 2.
    text_message, text_aes_key, text_iv = _user_text(group_id, TEXT_PLAINTEXT, TEXT_TIME_MS, ())
    text_bare = sign_message(USER.keypair, text_message, text_aes_key, text_iv)
    text = _certify(text_bare, (OWNER, RATIFIER_2))

    # The user deletes its text message (empty content), certified by the owner and
    # ratifier 2; a node that stores the delete keeps the text message pruned (§17).
    delete_message, delete_aes_key, delete_iv = _user_text(
        group_id,
        "",
        DELETE_TIME_MS,
        (text.message_hash,),
        message_type="delete",
        ref_hash=text.message_hash,
        keys=(DELETE_KEY, DELETE_IV, DELETE_NONCE),
    )
    delete = _certify(
        sign_message(USER.keypair, delete_message, delete_aes_key, delete_iv),
        (OWNER, RATIFIER_2),
    )
    pruned = prune(text, delete)

    # The owner's roster message of epoch 0: the viewer joins, epoch 1 begins.
    roster_1 = Roster(1, tuple(p.member() for p in PEOPLE), history=genesis_roster.history)
    keys = [_wrap("keys", p, 1, group_id, recorded, fresh=fresh) for p in PEOPLE]
    history_keys = [_wrap("history_keys", VIEWER, 0, group_id, recorded, fresh=fresh)]
    checks = [KeyCheck(e, epoch_key_check(group_id, e, k)) for e, k in EPOCH_KEYS.items()]
    update = RosterUpdate(roster_1, tuple(keys), tuple(history_keys), tuple(checks))
    roster_message, _data = build_roster_message(
        state, update, now_ms=ROSTER_TIME_MS, parents=[text.message_hash]
    )
    # Closing votes (§14): both hold the text message certified (their one head); ratifier-3
    # also voted for a message it never saw certified.
    closes = {
        RATIFIER_2.name: CloseCommitment(heads=(text.message_hash,)),
        RATIFIER_3.name: CloseCommitment(heads=(text.message_hash,), pending=(PENDING_HASH,)),
    }
    roster = _certify(
        sign_message(OWNER.keypair, roster_message, b"", b""), (RATIFIER_2, RATIFIER_3), closes
    )
    assert roster.certificate is not None
    close_vote = next(v for v in roster.certificate.votes if v.ratifier == RATIFIER_3.peer)
    assert close_vote.close is not None

    # The checks a member makes, so that no broken vector is ever written.
    have = {text.message_hash}.__contains__
    _require(check_for_delivery(text, state, have=have) is None, "text message delivery")
    _require(check_for_delivery(roster, state, have=have) is None, "roster message delivery")
    _require(check_for_delivery(delete, state, have=have) is None, "delete delivery")
    _require(check_for_delivery(pruned, state, have=have) is None, "pruned message delivery")
    _require(check_tombstone(pruned, state) is None, "pruned message tombstone")
    plaintext = crypto.decrypt_packet(text, epoch_key=EPOCH_KEYS[0])
    _require(plaintext == TEXT_PLAINTEXT.encode(), "text message decryption")
    chain = GroupState.from_chain(signed, [roster])
    _require(chain.current_roster == roster_1, "roster chain")

    batch_vectors = _batch_vectors(group_id, text)
    delta, keyset, delta_packet = _delta_vector(chain, roster, recorded, fresh=fresh)
    after = GroupState.from_chain(signed, [roster, delta_packet])
    _require(after.owner == RATIFIER_2.peer and after.name == DELTA_NAME, "delta chain")

    mrat = Query("mrat", MRAT_RID, {"group_id": group_id, "packet": text_bare.to_cbor()})
    owner_vote = make_vote(OWNER.keypair, group_id, 0, text.message_hash)
    mrat_r = mrat.answer({"vote": owner_vote.to_cbor()})

    return {
        "genesis.json": _genesis_vector(signed),
        "text_message.json": {
            "description": (
                'The user\'s text message of epoch 0, "hello, group" (text/plain), encrypted '
                "with content key 11 x 32, iv 22 x 12 and key nonce 33 x 12 under the epoch-0 "
                "key, time_stamp 1700000060000, no parents, no ref_hash, default headers; "
                "signed by the user and certified by the owner and ratifier-2 (quorum 2)."
            ),
            "cbor_hex": text.encode().hex(),
            "json": to_json_view(text.to_cbor()),
            "group_id": group_id.hex(),
            "message_hash": text.message_hash.hex(),
            "message_cbor_hex": text.message.encode().hex(),
            "epoch_key": EPOCH_KEYS[0].hex(),
            "content_key": CONTENT_KEY.hex(),
            "key_nonce": KEY_NONCE.hex(),
            "plaintext": TEXT_PLAINTEXT,
        },
        "pruned_message.json": {
            "description": (
                "The text message pruned (specs/chat.md §17 'Pruned packets'): the user "
                "deleted it with a delete message of epoch 0 (time_stamp 1700000090000, "
                "ref_hash and parents: the text message, empty content encrypted with content "
                "key 44 x 32, iv 55 x 12, key nonce 66 x 12; certified by the owner and "
                "ratifier-2), which travels as its tombstone. The signed message, its hash, "
                "signature and certificate are the text message's; aes_key and iv are empty."
            ),
            "cbor_hex": pruned.encode().hex(),
            "json": to_json_view(pruned.to_cbor()),
            "group_id": group_id.hex(),
            "message_hash": pruned.message_hash.hex(),
            "message_cbor_hex": pruned.message.encode().hex(),
            "tombstone_hash": delete.message_hash.hex(),
            "key_hash": text.message.artifact.key_hash.hex(),
        },
        "roster_message.json": {
            "description": (
                "The owner's roster message of epoch 0 (parents: the text message), opening "
                "epoch 1 in which the viewer joins; keys: the epoch-1 key wrapped for every "
                "member, history_keys: the epoch-0 key wrapped for the viewer (history 'all'), "
                "key_checks: the checks of both keys (specs/chat.md §15); "
                "certified by the closing votes of ratifier-2 and ratifier-3 (see "
                "close_vote.json). HPKE wraps are randomized: the "
                "wrapped_keys below were made once and are kept."
            ),
            "cbor_hex": roster.encode().hex(),
            "json": to_json_view(roster.to_cbor()),
            "group_id": group_id.hex(),
            "message_hash": roster.message_hash.hex(),
            "update_json": to_json_view(update.to_cbor()),
            "epoch_keys": {str(e): k.hex() for e, k in EPOCH_KEYS.items()},
            "wrapped_keys": [
                {
                    "list": what,
                    "peer": str(w.peer),
                    "epoch": w.epoch,
                    "kem": KEM,
                    "enc": w.enc.hex(),
                    "hpke_private": _person(w.peer).hpke.to_private_bytes().hex(),
                }
                for what, ws in (("keys", update.keys), ("history_keys", update.history_keys))
                for w in ws
            ],
        },
        "roster_delta.json": {
            "description": (
                "The owner's roster message of epoch 1 in format 2 (specs/chat.md §20), "
                "parents: the roster message of epoch 0, opening epoch 2: the newcomer joins "
                "as a user, the user is removed, the viewer becomes a user, the group is "
                "renamed 'vectors, renamed' and handed to ratifier-2; roster_hash is SHA-256 "
                "of roster_json's CBOR; keyset commits (Merkle root, count) to the epoch-2 key "
                "40..5f wrapped for every member of epoch 2 and the keys of epochs 0 and 1 "
                "wrapped for the newcomer (keyset_cbor_hex, sorted by peer then epoch; "
                "newcomer_keys is its keysR answer with proofs); key_checks holds the check of "
                "the epoch-2 key only (the chain fixed epochs 0 and 1). HPKE wraps are "
                "randomized: wrapped_keys were made once and are kept. Certified by the "
                "closing votes of the owner and ratifier-2, each committing to the roster "
                "message of epoch 0 as its head."
            ),
            "cbor_hex": delta_packet.encode().hex(),
            "json": to_json_view(delta_packet.to_cbor()),
            "group_id": group_id.hex(),
            "message_hash": delta_packet.message_hash.hex(),
            "delta_cbor_hex": delta.encode().hex(),
            "delta_json": to_json_view(delta.to_cbor()),
            "roster_json": to_json_view(after.current_roster.to_cbor()),
            "roster_hash": delta.roster_hash.hex(),
            "owner": str(after.owner),
            "name": after.name,
            "epoch_key": EPOCH_KEY_2.hex(),
            "newcomer": NEWCOMER.describe(),
            "keyset_root": keyset.ref().root.hex(),
            "keyset_count": keyset.ref().count,
            "keyset_cbor_hex": keyset.encode().hex(),
            "newcomer_keys": to_json_view(keyset.mine(NEWCOMER.peer)),
            "wrapped_keys": [
                {
                    "list": "delta_keys",
                    "peer": str(w.peer),
                    "epoch": w.epoch,
                    "kem": KEM,
                    "enc": w.enc.hex(),
                    "hpke_private": _person(w.peer).hpke.to_private_bytes().hex(),
                }
                for w in keyset.keys
            ],
        },
        "close_vote.json": {
            "description": (
                "Ratifier-3's closing vote on the roster message of epoch 0 (specs/chat.md "
                "§14): it commits to its certified DAG heads (the text message) and to one "
                "message it voted for without holding it certified (pending: SHA-256 of "
                "'a message voted for, never certified'), and signs "
                "'p2pchat/close/v1' || group_id || u64(0) || message_hash || "
                "SHA-256(CBOR(close))."
            ),
            "cbor_hex": cbor.dumps(close_vote.to_cbor()).hex(),
            "json": to_json_view(close_vote.to_cbor()),
            "group_id": group_id.hex(),
            "epoch": 0,
            "message_hash": roster.message_hash.hex(),
            "close_cbor_hex": cbor.dumps(close_vote.close.to_cbor()).hex(),
            "close_digest": close_vote.close.digest().hex(),
            "signing_bytes_hex": close_signing_bytes(
                group_id, 0, roster.message_hash, close_vote.close
            ).hex(),
        },
        "mrat_query.json": _frame_vector(
            "An mrat query (rid 1) asking a ratifier to ratify the text message (its packet "
            "without certificate).",
            mrat,
            group_id=group_id.hex(),
            message_hash=text.message_hash.hex(),
        ),
        "mrat_response.json": _frame_vector(
            "The owner's mratR answer (rid 1, ok) with its vote for the text message in epoch 0.",
            mrat_r,
            group_id=group_id.hex(),
            message_hash=text.message_hash.hex(),
            epoch=0,
            vote_signing_bytes_hex=vote_signing_bytes(group_id, 0, text.message_hash).hex(),
        ),
        **batch_vectors,
    }


def _user_text(
    group_id: bytes,
    plaintext: str,
    time_ms: int,
    parents: tuple[bytes, ...],
    *,
    message_type: str = "text",
    ref_hash: bytes | None = None,
    keys: tuple[bytes, bytes, bytes] = (CONTENT_KEY, CONTENT_IV, KEY_NONCE),
) -> tuple[Message, bytes, bytes]:
    """A message of the user in epoch 0 (``text/plain``, encrypted with the content key, iv
    and key nonce ``keys``), and its wrapped content key and iv."""
    content_key, iv, key_nonce = keys
    sealed = crypto.encrypt_artifact(
        plaintext.encode(),
        epoch_key=EPOCH_KEYS[0],
        group_id=group_id,
        epoch=0,
        author=USER.peer,
        content_key=content_key,
        iv=iv,
        key_nonce=key_nonce,
    )
    message = Message(
        group_id=group_id,
        epoch=0,
        message_type=message_type,
        time_stamp=time_ms,
        author=USER.peer,
        ref_hash=ref_hash,
        parents=parents,
        headers=Headers(),
        artifact=Artifact(
            TEXT_MIME, sealed.data, sha256(sealed.data), sha256(sealed.aes_key + sealed.iv)
        ),
    )
    return message, sealed.aes_key, sealed.iv


def _batch_vectors(group_id: bytes, text: Packet) -> dict[str, dict[str, Any]]:
    """``mratb`` and its answer (§21): the user's chain of two messages after the text
    message, with a message signed by the wrong key between them; the owner votes for the two
    with one batch signature and refuses the middle one."""
    second = sign_message(
        USER.keypair,
        *_user_text(group_id, BATCH_PLAINTEXTS[0], BATCH_TIMES[0], (text.message_hash,)),
    )
    third = sign_message(
        USER.keypair,
        *_user_text(group_id, BATCH_PLAINTEXTS[1], BATCH_TIMES[1], (second.message_hash,)),
    )
    forged_message, aes_key, iv = _user_text(
        group_id, "forged", BATCH_TIMES[0], (text.message_hash,)
    )
    forged = attrs.evolve(
        sign_message(USER.keypair, forged_message, aes_key, iv),
        signature=RATIFIER_2.keypair.sign(message_signing_bytes(group_id, forged_message.hash())),
    )
    _require(not verify_author(forged), "the forged message does not verify")
    hashes = [second.message_hash, third.message_hash]
    votes = make_batch_votes(OWNER.keypair, group_id, 0, hashes)
    root = merkle.root(hashes)
    for vote, message_hash in zip(votes, hashes, strict=True):
        _require(verify_vote(vote, group_id, 0, message_hash), "batch vote")
    packets = [second.to_cbor(), forged.to_cbor(), third.to_cbor()]
    query = Query("mratb", MRATB_RID, {"group_id": group_id, "packets": packets})
    results = [
        {"vote": votes[0].to_cbor()},
        {"reason": "bad signature"},
        {"vote": votes[1].to_cbor()},
    ]
    answer = query.answer({"results": results})
    # The two certified by the owner and ratifier-2, each with one batch signature, delivered
    # together (smsgb); the member held the first already.
    r2_votes = make_batch_votes(RATIFIER_2.keypair, group_id, 0, hashes)
    certified = [
        p.with_certificate(
            Certificate(0, tuple(sorted((o, r), key=lambda v: v.ratifier.to_bytes())))
        )
        for p, o, r in zip((second, third), votes, r2_votes, strict=True)
    ]
    deliver = Query(
        "smsgb", SMSGB_RID, {"group_id": group_id, "packets": [p.to_cbor() for p in certified]}
    )
    delivered = deliver.answer({"results": [{"duplicate": True}, {}]})
    return {
        "smsgb_query.json": _frame_vector(
            "An smsgb query (rid 3, §21): 'second' and 'third' of mratb_query.json, each "
            "certified by the owner's and ratifier-2's batch votes (one signature each over the "
            "batch of the two), delivered together, in order, without relay.",
            deliver,
            group_id=group_id.hex(),
            message_hashes=[h.hex() for h in hashes],
        ),
        "smsgb_response.json": _frame_vector(
            "A member's smsgbR answer (rid 3, ok): it held 'second' already and stores 'third'.",
            delivered,
            group_id=group_id.hex(),
        ),
        "mratb_query.json": _frame_vector(
            "An mratb query (rid 2, §21): the user's messages 'second' (parent: the text "
            "message) and 'third' (parent: 'second'), epoch 0, with between them a message "
            "'forged' signed by ratifier-2's key instead of the user's. Encrypted like the "
            "text message (content key 11 x 32, iv 22 x 12, key nonce 33 x 12).",
            query,
            group_id=group_id.hex(),
            message_hashes=[
                second.message_hash.hex(),
                forged.message_hash.hex(),
                third.message_hash.hex(),
            ],
        ),
        "mratb_response.json": _frame_vector(
            "The owner's mratbR answer (rid 2, ok): one result per packet in order; 'second' "
            "and 'third' are voted for with one signature over the batch of the two (size 2, "
            "indexes 0 and 1), 'forged' is refused 'bad signature'.",
            answer,
            group_id=group_id.hex(),
            epoch=0,
            batch_hashes=[h.hex() for h in hashes],
            root=root.hex(),
            signing_bytes_hex=batch_signing_bytes(group_id, 0, len(hashes), root).hex(),
        ),
    }


def _delta_vector(
    chain: GroupState, previous: Packet, recorded: Recorded, *, fresh: bool
) -> tuple[RosterDelta, KeySet, Packet]:
    """The format-2 roster message of epoch 1 (§20) over ``chain`` (at epoch 1), certified,
    and its key set: the epoch-2 key for every member of epoch 2, the keys of epochs 0 and 1
    for the newcomer (history "all")."""
    before = chain.current_roster
    members = [
        Member(m.peer, Role.USER, m.kem, m.hpke) if m.peer == VIEWER.peer else m
        for m in before.members
        if m.peer != USER.peer
    ]
    after = Roster(2, (*members, NEWCOMER.member()), before.quorum, before.history)
    check = KeyCheck(2, epoch_key_check(chain.group_id, 2, EPOCH_KEY_2))
    people = [_person(m.peer) for m in after.members]
    keyset = KeySet(
        (
            *(_wrap("delta_keys", p, 2, chain.group_id, recorded, fresh=fresh) for p in people),
            *(
                _wrap("delta_keys", NEWCOMER, e, chain.group_id, recorded, fresh=fresh)
                for e in (0, 1)
            ),
        )
    )
    delta = delta_between(
        before, after, keyset.ref(), name=DELTA_NAME, owner=RATIFIER_2.peer, key_checks=(check,)
    )
    message, _ = roster_message(
        chain, delta.encode(), now_ms=DELTA_TIME_MS, parents=[previous.message_hash]
    )
    head = CloseCommitment(heads=(previous.message_hash,))
    packet = _certify(
        sign_message(OWNER.keypair, message, b"", b""),
        (OWNER, RATIFIER_2),
        {OWNER.name: head, RATIFIER_2.name: head},
    )
    _require(
        check_for_delivery(packet, chain, have={previous.message_hash}.__contains__) is None,
        "delta delivery",
    )
    return delta, keyset, packet


def _person(peer: PeerID) -> Person:
    return next(p for p in (*PEOPLE, NEWCOMER) if p.peer == peer)


def _genesis_vector(signed: SignedGenesis) -> dict[str, Any]:
    return {
        "description": (
            "A signed genesis: group 'vectors' of the owner, created 1700000000000, nonce "
            "00..0f; epoch-0 roster: owner, ratifier-2, ratifier-3 (ratifiers) and user, all "
            "with X25519 HPKE keys, quorum 2 (the default majority), history 'all'. "
            "Identity keys are KeyPair.from_seed(seed); HPKE keys come from hpke_private."
        ),
        "cbor_hex": signed.encode().hex(),
        "json": to_json_view(signed.to_cbor()),
        "group_id": signed.group_id.hex(),
        "genesis_cbor_hex": signed.genesis.encode().hex(),
        "people": [p.describe() for p in PEOPLE],
    }


# -- files ---------------------------------------------------------------------------------------


def render(vector: Mapping[str, Any]) -> str:
    """A vector file's text: two-space indented JSON, keys in the order built, final newline."""
    return json.dumps(vector, indent=2) + "\n"


def read_recorded(directory: Path) -> dict[tuple[str, bytes, int], bytes]:
    """The wrapped keys recorded in ``roster_message.json`` and ``roster_delta.json``; none
    from a file that is missing or unusable."""
    recorded: dict[tuple[str, bytes, int], bytes] = {}
    for name in ("roster_message.json", "roster_delta.json"):
        try:
            entries = json.loads((directory / name).read_text())["wrapped_keys"]
            recorded.update(
                {
                    (
                        e["list"],
                        PeerID.from_string(e["peer"]).to_bytes(),
                        int(e["epoch"]),
                    ): bytes.fromhex(e["enc"])
                    for e in entries
                }
            )
        except (OSError, ValueError, KeyError, TypeError, ProtocolError):
            continue
    return recorded


def check(directory: Path) -> list[str]:
    """The differences between the committed vectors and a regeneration (empty if none)."""
    try:
        expected = build(read_recorded(directory), fresh=False)
    except VectorError as exc:
        return [str(exc)]
    problems = []
    for name, vector in expected.items():
        path = directory / name
        if not path.exists():
            problems.append(f"{name}: missing")
        elif path.read_text() != render(vector):
            problems.append(f"{name}: differs from a regeneration")
    for path in sorted(directory.glob("*.json")):
        if path.name not in expected and path.name not in FOREIGN:
            problems.append(f"{path.name}: not made by this generator")
    return problems


def write(directory: Path) -> list[str]:
    """Write every vector file; return the names written."""
    directory.mkdir(parents=True, exist_ok=True)
    vectors = build(read_recorded(directory), fresh=True)
    for name, vector in vectors.items():
        (directory / name).write_text(render(vector))
    return sorted(vectors)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--dir", type=Path, default=OUT_DIR, help="the vector directory")
    args = parser.parse_args(argv)
    if args.check:
        problems = check(args.dir)
        for problem in problems:
            print(f"gen_chat_vectors: {problem}", file=sys.stderr)
        return 1 if problems else 0
    for name in write(args.dir):
        print(args.dir / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
