"""Packets, messages, votes and certificates (specs/chat.md §4–§6): CBOR and JSON forms, every
refusal of the decoders, hashes and signatures."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from typing import Any, Final

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pchat.chat.core import cbor
from p2pchat.chat.core.packet import (
    EMPTY_HASH,
    MAX_ARTIFACT_DATA,
    MAX_PACKET_SIZE,
    MAX_PARENTS,
    MAX_VOTES,
    MSG_DOMAIN,
    RATIFY_DOMAIN,
    Artifact,
    Certificate,
    Headers,
    Message,
    Packet,
    PacketError,
    Vote,
    make_vote,
    message_signing_bytes,
    sha256,
    sign_message,
    u64,
    verify_author,
    verify_vote,
    vote_signing_bytes,
)
from p2pchat.chat.core.packet_json import (
    JSON_PEER_KEYS,
    packet_from_json,
    packet_to_json,
    to_json_view,
)
from p2pchat.errors import DecodeError
from p2pchat.identity import KeyPair, PeerID

AUTHOR: Final = KeyPair.from_seed(bytes([1]) * 32)
OTHER: Final = KeyPair.from_seed(bytes([2]) * 32)
RATIFIERS: Final = tuple(KeyPair.from_seed(bytes([10 + i]) * 32) for i in range(3))
# A peer id that names its key by SHA-256 instead of inlining it: valid, but not verifiable.
HASHED_PEER: Final = PeerID.from_bytes(bytes.fromhex("1220") + sha256(b"a long RSA key"))
GROUP_ID: Final = sha256(b"p2pchat packet tests")
AES_KEY: Final = bytes(range(60))
IV: Final = bytes(range(100, 112))
DATA: Final = b"ciphertext bytes"


def make_message(**overrides: Any) -> Message:
    fields: dict[str, Any] = {
        "group_id": GROUP_ID,
        "epoch": 2,
        "message_type": "text",
        "time_stamp": 1_700_000_000_000,
        "author": AUTHOR.peer_id,
        "ref_hash": sha256(b"earlier"),
        "parents": tuple(sorted((sha256(b"p1"), sha256(b"p2")))),
        "headers": Headers("greeting", 7),
        "artifact": Artifact("text/plain", DATA, sha256(DATA), sha256(AES_KEY + IV)),
    }
    fields.update(overrides)
    return Message(**fields)


def make_packet(*, certified: bool = True, **overrides: Any) -> Packet:
    packet = sign_message(AUTHOR, make_message(**overrides), AES_KEY, IV)
    if certified:
        votes = [
            make_vote(r, GROUP_ID, packet.message.epoch, packet.message_hash) for r in RATIFIERS
        ]
        votes.sort(key=lambda v: v.ratifier.to_bytes())
        packet = packet.with_certificate(Certificate(packet.message.epoch, tuple(votes)))
    return packet


PACKET: Final = make_packet()
PACKET_MAP: Final = PACKET.to_cbor()


# -- round trips -----------------------------------------------------------------------------------


def test_headers_default_and_round_trip() -> None:
    assert Headers().to_cbor() == {"identifier": "", "response_code": 0}
    headers = Headers("x", 2**64 - 1)
    assert Headers.from_cbor(headers.to_cbor()) == headers


def test_artifact_round_trip() -> None:
    artifact = PACKET.message.artifact
    assert artifact.to_cbor() == {
        "type": "text/plain",
        "data": DATA,
        "hash": sha256(DATA),
        "key_hash": sha256(AES_KEY + IV),
    }
    assert Artifact.from_cbor(artifact.to_cbor()) == artifact


@pytest.mark.parametrize(
    "message",
    [
        PACKET.message,
        make_message(ref_hash=None, parents=()),
        make_message(author=HASHED_PEER),
        make_message(epoch=2**64 - 1, time_stamp=0, message_type="roster"),
    ],
)
def test_message_round_trip(message: Message) -> None:
    assert Message.from_cbor(message.to_cbor()) == message
    assert cbor.loads(message.encode(), max_size=MAX_PACKET_SIZE) == message.to_cbor()


def test_vote_and_certificate_round_trip() -> None:
    certificate = PACKET.certificate
    assert certificate is not None
    for vote in certificate.votes:
        assert Vote.from_cbor(vote.to_cbor()) == vote
    assert Certificate.from_cbor(certificate.to_cbor()) == certificate
    assert Certificate.from_cbor(Certificate(0, ()).to_cbor()) == Certificate(0, ())


def test_certificate_encodes_votes_sorted_by_ratifier() -> None:
    certificate = PACKET.certificate
    assert certificate is not None
    shuffled = Certificate(certificate.epoch, tuple(reversed(certificate.votes)))
    assert shuffled.to_cbor() == certificate.to_cbor()
    ratifiers = [v["ratifier"] for v in certificate.to_cbor()["votes"]]
    assert ratifiers == sorted(ratifiers)


@pytest.mark.parametrize("packet", [PACKET, make_packet(certified=False)])
def test_packet_round_trip(packet: Packet) -> None:
    data = packet.encode()
    assert Packet.decode(data) == packet
    assert Packet.from_cbor(packet.to_cbor()) == packet
    assert ("certificate" in cbor.loads(data, max_size=len(data))) == (
        packet.certificate is not None
    )


def test_packet_map_layout() -> None:
    assert set(PACKET_MAP) == {
        "message_hash",
        "aes_key",
        "iv",
        "signature",
        "message",
        "certificate",
    }
    assert set(PACKET_MAP["message"]) == {
        "group_id",
        "epoch",
        "message_type",
        "time_stamp",
        "author",
        "ref_hash",
        "parents",
        "headers",
        "artifact",
    }
    assert PACKET_MAP["message"]["author"] == AUTHOR.peer_id.to_bytes()


def test_with_certificate_keeps_the_signed_part() -> None:
    bare = make_packet(certified=False)
    assert PACKET.certificate is not None
    certified = bare.with_certificate(PACKET.certificate)
    assert certified == PACKET
    assert bare.certificate is None


def test_encode_is_computed_once_and_a_decoded_packet_keeps_its_bytes() -> None:
    data = make_packet(certified=True).encode()
    decoded = Packet.decode(data)
    assert decoded.encode() == data
    assert decoded.encode() is decoded.encode()
    assert decoded.message.encode() is decoded.message.encode()
    assert decoded.message.encode() == cbor.dumps(decoded.message.to_cbor())
    # The cache is not part of the value: an evolved packet encodes afresh.
    bare = attrs.evolve(decoded, certificate=None)
    assert bare.encode() == cbor.dumps(bare.to_cbor()) != data
    assert decoded == make_packet(certified=True)


def test_encode_refuses_packets_over_1_mib() -> None:
    big = attrs.evolve(
        PACKET,
        message=make_message(
            artifact=Artifact("a/b", bytes(MAX_PACKET_SIZE), EMPTY_HASH, EMPTY_HASH)
        ),
    )
    with pytest.raises(ValueError, match="exceeds"):
        big.encode()
    with pytest.raises(DecodeError):
        Packet.decode(cbor.dumps(big.to_cbor()))


def test_largest_artifact_is_accepted() -> None:
    data = bytes(MAX_ARTIFACT_DATA)
    packet = make_packet(artifact=Artifact("a/b", data, sha256(data), sha256(AES_KEY + IV)))
    assert Packet.decode(packet.encode()) == packet


# -- every refusal of from_cbor --------------------------------------------------------------------

Edit = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Edit:
    """Set the field at a dotted path (list indices as numbers) of a packet map."""

    def edit(m: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = m
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value

    return edit


def _drop(path: str) -> Edit:
    def edit(m: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = m
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        del target[last]

    return edit


_REQUIRED: Final = [
    "message_hash",
    "aes_key",
    "iv",
    "signature",
    "message",
    *(
        f"message.{k}"
        for k in (
            "group_id",
            "epoch",
            "message_type",
            "time_stamp",
            "author",
            "ref_hash",
            "parents",
            "headers",
            "artifact",
        )
    ),
    "message.headers.identifier",
    "message.headers.response_code",
    *(f"message.artifact.{k}" for k in ("type", "data", "hash", "key_hash")),
    "certificate.epoch",
    "certificate.votes",
    "certificate.votes.0.ratifier",
    "certificate.votes.0.sig",
]

_MAPS: Final = [
    "",
    "message",
    "message.headers",
    "message.artifact",
    "certificate",
    "certificate.votes.0",
]

_TWO_HASHES: Final = sorted((sha256(b"a"), sha256(b"b")))

_BAD_FIELDS: Final[list[tuple[str, Any]]] = [
    # wrong types
    ("message_hash", "text"),
    ("aes_key", None),
    ("iv", 12),
    ("signature", [bytes(64)]),
    ("message", []),
    ("message.group_id", list(range(32))),
    ("message.epoch", -1),
    ("message.epoch", True),
    ("message.epoch", b"\x02"),
    ("message.epoch", "2"),
    ("message.message_type", b"text"),
    ("message.time_stamp", None),
    ("message.author", "12D3KooW"),
    ("message.ref_hash", "none"),
    ("message.parents", sha256(b"p")),
    ("message.parents", [1]),
    ("message.headers", []),
    ("message.headers.identifier", 5),
    ("message.headers.response_code", False),
    ("message.headers.response_code", -3),
    ("message.artifact", b""),
    ("message.artifact.type", None),
    ("message.artifact.data", "data"),
    ("certificate", []),
    ("certificate.epoch", "2"),
    ("certificate.votes", {}),
    ("certificate.votes.0", b"vote"),
    ("certificate.votes.0.ratifier", 1),
    ("certificate.votes.0.sig", None),
    # sizes
    ("message_hash", bytes(31)),
    ("message_hash", bytes(33)),
    ("aes_key", bytes(129)),
    ("iv", bytes(11)),
    ("iv", bytes(13)),
    ("signature", bytes(63)),
    ("signature", bytes(65)),
    ("message.group_id", bytes(31)),
    ("message.group_id", b""),
    ("message.ref_hash", bytes(33)),
    ("message.parents", [bytes(31)]),
    ("message.parents", sorted(sha256(bytes([i])) for i in range(MAX_PARENTS + 1))),
    ("message.headers.identifier", "é" * 129),  # 258 bytes
    ("message.artifact.type", "t" * 129),
    ("message.artifact.data", bytes(MAX_ARTIFACT_DATA + 1)),
    ("message.artifact.hash", bytes(31)),
    ("message.artifact.key_hash", bytes(33)),
    ("certificate.votes", [PACKET_MAP["certificate"]["votes"][0]] * (MAX_VOTES + 1)),
    ("certificate.votes.0.sig", bytes(63)),
    # parents out of order or repeated
    ("message.parents", _TWO_HASHES[::-1]),
    ("message.parents", [_TWO_HASHES[0]] * 2),
    # peer ids that do not parse
    ("message.author", b""),
    ("message.author", b"\x00\x03abc"),
    ("message.author", bytes.fromhex("1220") + bytes(31)),
    ("message.author", bytes.fromhex("1300")),
    ("message.author", bytes(129)),
    ("certificate.votes.0.ratifier", bytes.fromhex("0024") + bytes(36)),
    # message types outside [a-z][a-z0-9_.+-]{0,63}
    ("message.message_type", ""),
    ("message.message_type", "Text"),
    ("message.message_type", "1text"),
    ("message.message_type", "te xt"),
    ("message.message_type", "t" * 65),
    ("message.message_type", "text/plain"),
    ("message.message_type", "tëxt"),
]


def _refusal_cases() -> list[Any]:
    cases: list[Any] = [pytest.param(_drop(path), id=f"missing {path}") for path in _REQUIRED]
    for path in _MAPS:
        key = f"{path}.unknown" if path else "unknown"
        cases.append(pytest.param(_set(key, 0), id=f"unknown key in {path or 'packet'}"))
    cases.append(pytest.param(_set("message.headers.extra", ""), id="extra header"))
    cases += [
        pytest.param(_set(path, value), id=f"{path}={value!r:.40}") for path, value in _BAD_FIELDS
    ]
    return cases


@pytest.mark.parametrize("edit", _refusal_cases())
def test_from_cbor_refuses(edit: Edit) -> None:
    m = copy.deepcopy(PACKET_MAP)
    edit(m)
    with pytest.raises(DecodeError):
        Packet.from_cbor(m)
    data = cbor.dumps(m)
    with pytest.raises(DecodeError):
        Packet.decode(data)


@pytest.mark.parametrize("value", [None, 0, b"", "packet", [], [PACKET_MAP]])
def test_from_cbor_refuses_non_maps(value: Any) -> None:
    with pytest.raises(PacketError):
        Packet.from_cbor(value)


def test_from_cbor_errors_are_packet_errors_with_a_hint() -> None:
    m = copy.deepcopy(PACKET_MAP)
    m["message"]["parents"] = _TWO_HASHES[::-1]
    with pytest.raises(PacketError) as info:
        Packet.from_cbor(m)
    assert info.value.hint == "malformed"
    assert "sorted" in str(info.value)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("message.ref_hash", None),
        ("message.parents", []),
        ("message.parents", sorted(sha256(bytes([i])) for i in range(MAX_PARENTS))),
        ("message.message_type", "a" + "z" * 63),
        ("message.message_type", "x-app.v2+cbor_1"),
        ("message.headers.identifier", "é" * 128),
        ("certificate.votes", []),
        ("message.author", HASHED_PEER.to_bytes()),
    ],
)
def test_from_cbor_accepts_the_limits(path: str, value: Any) -> None:
    m = copy.deepcopy(PACKET_MAP)
    _set(path, value)(m)
    packet = Packet.from_cbor(m)
    assert packet.to_cbor() == m


def test_a_packet_may_have_neither_wrapped_key_nor_iv_but_not_just_one() -> None:
    m = copy.deepcopy(PACKET_MAP)
    m["aes_key"], m["iv"] = b"", b""
    assert Packet.from_cbor(m).to_cbor() == m
    for key, iv in [(b"", m["iv"] or bytes(12)), (bytes(60), b""), (bytes(59), bytes(12))]:
        m["aes_key"], m["iv"] = key, iv
        with pytest.raises(PacketError, match="60/12"):
            Packet.from_cbor(m)


def test_decode_refuses_non_canonical_cbor() -> None:
    data = PACKET.encode()
    assert data[0] == 0xA6  # a map of six entries
    with pytest.raises(DecodeError):
        Packet.decode(b"\xb8\x06" + data[1:])  # the same map, its length in two bytes
    with pytest.raises(DecodeError):
        Packet.decode(data + b"\x00")


# -- hashes ----------------------------------------------------------------------------------------


def test_sha256_and_u64() -> None:
    assert sha256(b"abc").hex() == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert sha256(b"") == EMPTY_HASH
    assert u64(0) == bytes(8)
    assert u64(0x0102030405060708) == bytes(range(1, 9))
    assert u64(2**64 - 1) == b"\xff" * 8
    with pytest.raises(OverflowError):
        u64(2**64)


def test_message_hash_is_sha256_of_the_messages_cbor() -> None:
    message = PACKET.message
    assert message.hash() == sha256(cbor.dumps(message.to_cbor()))
    assert PACKET.message_hash == message.hash()
    assert Message.from_cbor(message.to_cbor()).hash() == message.hash()


def test_check_hashes_holds_for_a_good_packet() -> None:
    assert PACKET.check_hashes()
    roster_like = make_packet(artifact=Artifact("application/cbor", DATA, sha256(DATA), EMPTY_HASH))
    assert not roster_like.check_hashes()  # key_hash of AES_KEY || IV expected
    unencrypted = sign_message(
        AUTHOR,
        make_message(artifact=Artifact("application/cbor", DATA, sha256(DATA), EMPTY_HASH)),
        b"",
        b"",
    )
    assert unencrypted.check_hashes()


def _with_artifact(packet: Packet, **changes: Any) -> Packet:
    artifact = attrs.evolve(packet.message.artifact, **changes)
    return attrs.evolve(packet, message=attrs.evolve(packet.message, artifact=artifact))


@pytest.mark.parametrize(
    ("what", "tamper"),
    [
        ("message_hash", lambda p: attrs.evolve(p, message_hash=_flip(p.message_hash))),
        ("artifact data", lambda p: _with_artifact(p, data=_flip(p.message.artifact.data))),
        ("artifact hash", lambda p: _with_artifact(p, hash=_flip(p.message.artifact.hash))),
        ("key_hash", lambda p: _with_artifact(p, key_hash=_flip(p.message.artifact.key_hash))),
        ("aes_key", lambda p: attrs.evolve(p, aes_key=_flip(p.aes_key))),
        ("iv", lambda p: attrs.evolve(p, iv=_flip(p.iv))),
        ("aes_key and iv swapped", lambda p: attrs.evolve(p, aes_key=p.iv, iv=p.aes_key[:12])),
        ("epoch", lambda p: attrs.evolve(p, message=attrs.evolve(p.message, epoch=3))),
    ],
)
def test_check_hashes_fails_on_tampering(what: str, tamper: Callable[[Packet], Packet]) -> None:
    assert not tamper(PACKET).check_hashes()


def test_key_hash_binds_aes_key_and_iv() -> None:
    artifact = PACKET.message.artifact
    assert artifact.key_hash == sha256(PACKET.aes_key + PACKET.iv)
    # Moving bytes between aes_key and iv keeps their concatenation, hence the key hash: the
    # sizes fixed by §4 (iv of 12 bytes) are what makes this impossible on the wire.
    moved = attrs.evolve(PACKET, aes_key=AES_KEY + IV[:1], iv=IV[1:])
    assert moved.check_hashes()
    m = moved.to_cbor()
    with pytest.raises(PacketError):
        Packet.from_cbor(m)


def test_aes_key_and_iv_cannot_trade_bytes() -> None:
    moved = attrs.evolve(PACKET, aes_key=PACKET.aes_key + PACKET.iv, iv=b"")
    assert moved.check_hashes()
    assert verify_author(moved)
    with pytest.raises(PacketError):
        Packet.from_cbor(moved.to_cbor())


def test_message_type_refuses_a_final_newline() -> None:
    m = copy.deepcopy(PACKET_MAP)
    m["message"]["message_type"] = "text\n"
    with pytest.raises(PacketError):
        Packet.from_cbor(m)


# -- signatures ------------------------------------------------------------------------------------


def _flip(data: bytes, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def test_message_signing_bytes_layout() -> None:
    mh = PACKET.message_hash
    assert message_signing_bytes(GROUP_ID, mh) == b"p2pchat/msg/v1" + GROUP_ID + mh
    assert MSG_DOMAIN == b"p2pchat/msg/v1"
    assert AUTHOR.public_key.verify(PACKET.signature, message_signing_bytes(GROUP_ID, mh))


def test_vote_signing_bytes_layout() -> None:
    mh = PACKET.message_hash
    assert RATIFY_DOMAIN == b"p2pchat/ratify/v1"
    assert vote_signing_bytes(GROUP_ID, 0x0102, mh) == (
        b"p2pchat/ratify/v1" + GROUP_ID + bytes([0, 0, 0, 0, 0, 0, 1, 2]) + mh
    )


def test_sign_and_verify() -> None:
    assert verify_author(PACKET)
    assert len(PACKET.signature) == 64
    assert sign_message(AUTHOR, PACKET.message, AES_KEY, IV) == make_packet(certified=False)


def test_sign_refuses_another_key() -> None:
    with pytest.raises(ValueError, match="author"):
        sign_message(OTHER, PACKET.message, AES_KEY, IV)


def test_verify_refuses_a_hashed_peer_id() -> None:
    packet = attrs.evolve(PACKET, message=attrs.evolve(PACKET.message, author=HASHED_PEER))
    assert not verify_author(packet)


def _message_variants() -> list[Any]:
    """One message per signed field, that field changed (the first bit flipped where it is
    bytes)."""
    m = PACKET.message
    art = m.artifact
    variants = {
        "group_id": attrs.evolve(m, group_id=_flip(m.group_id)),
        "epoch": attrs.evolve(m, epoch=m.epoch ^ 1),
        "message_type": attrs.evolve(m, message_type="texu"),
        "time_stamp": attrs.evolve(m, time_stamp=m.time_stamp ^ 1),
        "author": attrs.evolve(m, author=OTHER.peer_id),
        "ref_hash": attrs.evolve(m, ref_hash=_flip(m.ref_hash or bytes(32))),
        "ref_hash null": attrs.evolve(m, ref_hash=None),
        "parents": attrs.evolve(m, parents=(_flip(m.parents[0]), *m.parents[1:])),
        "parents dropped": attrs.evolve(m, parents=m.parents[1:]),
        "identifier": attrs.evolve(m, headers=Headers("greetinf", 7)),
        "response_code": attrs.evolve(m, headers=Headers("greeting", 6)),
        "artifact type": attrs.evolve(m, artifact=attrs.evolve(art, type="text/plaio")),
        "artifact data": attrs.evolve(m, artifact=attrs.evolve(art, data=_flip(art.data))),
        "artifact hash": attrs.evolve(m, artifact=attrs.evolve(art, hash=_flip(art.hash))),
        "key_hash": attrs.evolve(m, artifact=attrs.evolve(art, key_hash=_flip(art.key_hash))),
    }
    return [pytest.param(v, id=k) for k, v in variants.items()]


@pytest.mark.parametrize("message", _message_variants())
def test_a_changed_signed_field_breaks_the_packet(message: Message) -> None:
    assert message != PACKET.message
    kept_hash = attrs.evolve(PACKET, message=message)
    assert not kept_hash.check_hashes()  # the old message_hash no longer matches
    rehashed = attrs.evolve(kept_hash, message_hash=message.hash())
    assert rehashed.message_hash != PACKET.message_hash
    assert not verify_author(rehashed)  # and the signature does not cover the new one


@pytest.mark.parametrize("bit", [0, 7, 100, 255])
def test_a_flipped_bit_in_message_hash_breaks_the_signature(bit: int) -> None:
    assert not verify_author(attrs.evolve(PACKET, message_hash=_flip(PACKET.message_hash, bit)))


@pytest.mark.parametrize("bit", [0, 9, 300, 511])
def test_a_flipped_bit_in_the_signature_breaks_it(bit: int) -> None:
    assert not verify_author(attrs.evolve(PACKET, signature=_flip(PACKET.signature, bit)))


def test_the_certificate_is_outside_the_signed_part() -> None:
    bare = make_packet(certified=False)
    assert verify_author(bare)
    assert bare.check_hashes()
    assert bare.signature == PACKET.signature


# -- votes -----------------------------------------------------------------------------------------


def test_vote_sign_and_verify() -> None:
    mh = PACKET.message_hash
    vote = make_vote(RATIFIERS[0], GROUP_ID, 2, mh)
    assert vote.ratifier == RATIFIERS[0].peer_id
    assert len(vote.sig) == 64
    assert RATIFIERS[0].public_key.verify(vote.sig, vote_signing_bytes(GROUP_ID, 2, mh))
    assert verify_vote(vote, GROUP_ID, 2, mh)
    assert make_vote(RATIFIERS[0], GROUP_ID, 2, mh) == vote  # Ed25519 is deterministic


@pytest.mark.parametrize("epoch", [0, 1, 3, 2**32 + 2, 2**64 - 1])
def test_a_vote_is_bound_to_its_epoch(epoch: int) -> None:
    mh = PACKET.message_hash
    vote = make_vote(RATIFIERS[1], GROUP_ID, 2, mh)
    assert not verify_vote(vote, GROUP_ID, epoch, mh)
    assert verify_vote(make_vote(RATIFIERS[1], GROUP_ID, epoch, mh), GROUP_ID, epoch, mh)


def test_a_vote_is_bound_to_group_message_and_ratifier() -> None:
    mh = PACKET.message_hash
    vote = make_vote(RATIFIERS[0], GROUP_ID, 2, mh)
    assert not verify_vote(vote, _flip(GROUP_ID), 2, mh)
    assert not verify_vote(vote, GROUP_ID, 2, _flip(mh, 255))
    assert not verify_vote(attrs.evolve(vote, sig=_flip(vote.sig, 3)), GROUP_ID, 2, mh)
    assert not verify_vote(attrs.evolve(vote, ratifier=RATIFIERS[1].peer_id), GROUP_ID, 2, mh)
    assert not verify_vote(attrs.evolve(vote, ratifier=HASHED_PEER), GROUP_ID, 2, mh)


def test_a_vote_is_not_an_author_signature() -> None:
    mh = PACKET.message_hash
    vote = make_vote(AUTHOR, GROUP_ID, 2, mh)
    assert not verify_author(attrs.evolve(PACKET, signature=vote.sig))
    assert not verify_vote(Vote(AUTHOR.peer_id, PACKET.signature), GROUP_ID, 2, mh)


# -- JSON view -------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_json_view_layout() -> None:
    view = packet_to_json(PACKET)
    message = PACKET.message
    assert PACKET.certificate is not None
    assert view == {
        "message_hash": _b64(PACKET.message_hash),
        "aes_key": _b64(AES_KEY),
        "iv": _b64(IV),
        "signature": _b64(PACKET.signature),
        "message": {
            "group_id": _b64(GROUP_ID),
            "epoch": 2,
            "message_type": "text",
            "time_stamp": 1_700_000_000_000,
            "author": str(AUTHOR.peer_id),
            "ref_hash": _b64(sha256(b"earlier")),
            "parents": [_b64(p) for p in message.parents],
            "headers": {"identifier": "greeting", "response_code": 7},
            "artifact": {
                "type": "text/plain",
                "data": "Y2lwaGVydGV4dCBieXRlcw==",
                "hash": _b64(sha256(DATA)),
                "key_hash": _b64(sha256(AES_KEY + IV)),
            },
        },
        "certificate": {
            "epoch": 2,
            "votes": [
                {"ratifier": str(v.ratifier), "sig": _b64(v.sig)}
                for v in sorted(PACKET.certificate.votes, key=lambda v: v.ratifier.to_bytes())
            ],
        },
    }
    assert str(AUTHOR.peer_id).startswith("12D3KooW")
    assert packet_from_json(view) == PACKET


def test_json_view_without_certificate_and_with_null_ref_hash() -> None:
    packet = make_packet(certified=False, ref_hash=None, parents=())
    view = packet_to_json(packet)
    assert "certificate" not in view
    assert view["message"]["ref_hash"] is None
    assert view["message"]["parents"] == []
    assert packet_from_json(json.loads(json.dumps(view))) == packet


def test_to_json_view_converts_peer_keys_anywhere() -> None:
    peer = AUTHOR.peer_id
    value = {
        "owner": peer.to_bytes(),
        "roster": {"members": [{"peer": peer.to_bytes(), "hpke": b"\xfb\xff"}]},
        "list": [b"\x00", {"ratifier": peer.to_bytes()}],
        "n": 5,
        "t": "peer",
        "none": None,
    }
    assert to_json_view(value) == {
        "owner": str(peer),
        "roster": {"members": [{"peer": str(peer), "hpke": "+/8="}]},
        "list": ["AA==", {"ratifier": str(peer)}],
        "n": 5,
        "t": "peer",
        "none": None,
    }
    assert {"author", "ratifier", "owner", "peer"} == JSON_PEER_KEYS
    assert to_json_view(PACKET.to_cbor()) == packet_to_json(PACKET)


_VIEW: Final = packet_to_json(PACKET)
_VIEW_WITH_INT_KEY: Final[dict[Any, Any]] = {**_VIEW, 3: 4}

_BAD_JSON: Final[list[tuple[str, Any]]] = [
    ("message_hash", PACKET.message_hash.hex()),  # hex is not Base64
    ("message_hash", _b64(PACKET.message_hash).rstrip("=")),  # padding is required
    ("message_hash", _b64(bytes(32))[:-2] + "B="),  # padding bits must be zero
    ("message_hash", " " + _b64(PACKET.message_hash)),
    ("message_hash", _b64(PACKET.message_hash)[:20] + "\n" + _b64(PACKET.message_hash)[20:]),
    ("message_hash", base64.urlsafe_b64encode(b"\xfb" * 32).decode()),  # not the URL alphabet
    ("message_hash", "é" * 44),
    ("message_hash", "\ud800"),
    ("message_hash", list(PACKET.message_hash)),
    ("message_hash", None),
    ("aes_key", 5),
    ("iv", _b64(bytes(11))),
    ("signature", _b64(bytes(65))),
    ("message.group_id", _b64(bytes(31))),
    ("message.author", AUTHOR.peer_id.to_cid()),  # only the base58btc form
    ("message.author", _b64(AUTHOR.peer_id.to_bytes())),
    ("message.author", "1" + str(AUTHOR.peer_id)),
    ("message.author", "12D3KooW"),
    ("message.author", "Qm0OIl"),
    ("message.author", ""),
    ("message.author", AUTHOR.peer_id.to_bytes()),
    ("message.author", None),
    ("message.ref_hash", _b64(bytes(31))),
    ("message.ref_hash", 0),
    ("message.parents", [_b64(p) for p in reversed(PACKET.message.parents)]),
    ("message.parents", _b64(PACKET.message.parents[0])),
    ("message.parents", [None]),
    ("message.epoch", 2.0),
    ("message.epoch", "2"),
    ("message.epoch", True),
    ("message.time_stamp", -1),
    ("message.headers.identifier", None),
    ("message.headers", "greeting"),
    ("message.artifact.data", b"raw bytes"),
    ("message.artifact", None),
    ("certificate", None),  # absent is absent, not null
    ("certificate.votes.0.ratifier", str(HASHED_PEER)[:-1]),
    ("certificate.votes.0.sig", _b64(bytes(63))),
    ("certificate.votes", None),
    ("message.unknown", 1),
    ("unknown", "x"),
]


@pytest.mark.parametrize(
    ("path", "value"), [pytest.param(p, v, id=f"{p}={v!r:.30}") for p, v in _BAD_JSON]
)
def test_packet_from_json_refuses(path: str, value: Any) -> None:
    view = copy.deepcopy(_VIEW)
    _set(path, value)(view)
    with pytest.raises(PacketError):
        packet_from_json(view)


@pytest.mark.parametrize(
    "value",
    [
        None,
        [],
        "packet",
        {1: 2},
        _VIEW_WITH_INT_KEY,
        {"message_hash": b"x"},
        {"message": {"headers": {"identifier": {(1, 2): 3}}}},
        {"x": [[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]},
        {"x": {1, 2}},
    ],
)
def test_packet_from_json_refuses_non_json(value: Any) -> None:
    with pytest.raises(PacketError):
        packet_from_json(value)


def test_the_largest_packet_fits_in_1_mib_and_round_trips_through_json() -> None:
    """Every field at its limit: the field limits alone keep a packet under 1 MiB."""
    parents = tuple(sorted(sha256(bytes([i])) for i in range(MAX_PARENTS)))
    data = bytes(MAX_ARTIFACT_DATA)
    message = make_message(
        message_type="x" * 64,
        parents=parents,
        headers=Headers("é" * 128, 2**64 - 1),
        artifact=Artifact("t" * 128, data, sha256(data), sha256(bytes(60) + IV)),
    )
    voters = sorted(KeyPair.from_seed(i.to_bytes(32, "big")).peer_id for i in range(MAX_VOTES))
    votes = tuple(Vote(peer, bytes(64)) for peer in voters)
    packet = Packet(sha256(b"h"), bytes(60), IV, bytes(64), message, Certificate(2**64 - 1, votes))
    assert len(packet.encode()) < MAX_PACKET_SIZE
    view = json.loads(json.dumps(packet_to_json(packet)))
    assert packet_from_json(view) == packet


def test_packet_from_json_refuses_oversized_base64() -> None:
    view = copy.deepcopy(_VIEW)
    view["message"]["artifact"]["data"] = _b64(bytes(MAX_ARTIFACT_DATA + 1))
    with pytest.raises(PacketError):
        packet_from_json(view)
    view["message"]["artifact"]["data"] = "A" * (4 * MAX_PACKET_SIZE)
    with pytest.raises(PacketError, match="too long"):
        packet_from_json(view)


# -- properties ------------------------------------------------------------------------------------

_PEERS: Final = [AUTHOR.peer_id, OTHER.peer_id, *(r.peer_id for r in RATIFIERS), HASHED_PEER]
_hash = st.binary(min_size=32, max_size=32)


@st.composite
def _packets(draw: st.DrawFn) -> Packet:
    headers = Headers(
        draw(st.text(max_size=40)), draw(st.integers(min_value=0, max_value=2**64 - 1))
    )
    artifact = Artifact(
        draw(st.text(max_size=32)), draw(st.binary(max_size=200)), draw(_hash), draw(_hash)
    )
    message = Message(
        group_id=draw(_hash),
        epoch=draw(st.integers(min_value=0, max_value=2**64 - 1)),
        message_type=draw(st.from_regex(r"[a-z][a-z0-9_.+-]{0,63}", fullmatch=True)),
        time_stamp=draw(st.integers(min_value=0, max_value=2**64 - 1)),
        author=draw(st.sampled_from(_PEERS)),
        ref_hash=draw(st.none() | _hash),
        parents=tuple(sorted(draw(st.sets(_hash, max_size=MAX_PARENTS)))),
        headers=headers,
        artifact=artifact,
    )
    certificate = None
    if draw(st.booleans()):
        ratifiers = draw(st.lists(st.sampled_from(_PEERS), unique=True, max_size=4))
        votes = [Vote(r, draw(st.binary(min_size=64, max_size=64))) for r in ratifiers]
        votes.sort(key=lambda v: v.ratifier.to_bytes())
        certificate = Certificate(draw(st.integers(0, 2**64 - 1)), tuple(votes))
    aes_key, iv = draw(
        st.just((b"", b"")) | st.binary(min_size=60, max_size=60).map(lambda key: (key, IV))
    )
    return Packet(
        message_hash=draw(_hash),
        aes_key=aes_key,
        iv=iv,
        signature=draw(st.binary(min_size=64, max_size=64)),
        message=message,
        certificate=certificate,
    )


@settings(max_examples=300, deadline=None)
@given(_packets())
def test_valid_packets_round_trip_through_cbor_and_json(packet: Packet) -> None:
    data = packet.encode()
    assert Packet.decode(data) == packet
    view = packet_to_json(packet)
    text = json.dumps(view)
    assert packet_from_json(json.loads(text)) == packet
    assert packet_to_json(packet_from_json(json.loads(text))) == view


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_into_decode_raise_only_decode_error(data: bytes) -> None:
    try:
        packet = Packet.decode(data)
    except DecodeError:
        return
    assert packet.encode() == data


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_corrupted_packets_raise_only_decode_error(data: st.DataObject) -> None:
    encoded = bytearray(PACKET.encode())
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(encoded) - 1))
        encoded[index] = data.draw(st.integers(0, 255))
    try:
        packet = Packet.decode(bytes(encoded))
    except DecodeError:
        return
    assert packet.encode() == bytes(encoded)


_cbor_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64 - 1),
    st.binary(max_size=70),
    st.text(max_size=10),
    st.sampled_from([p.to_bytes() for p in _PEERS]),
    _hash,
)
_cbor_values = st.recursive(
    _cbor_leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every position inside a nested map/list, as a tuple of keys and indices."""
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out += _paths(item, (*prefix, index))
    return out


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, *rest = path
    if isinstance(value, dict):
        return {k: (_replace(v, tuple(rest), new) if k == head else v) for k, v in value.items()}
    return [(_replace(v, tuple(rest), new) if i == head else v) for i, v in enumerate(value)]


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_cbor_shaped_maps_into_from_cbor_raise_only_decode_error(data: st.DataObject) -> None:
    """Start from a valid packet map, replace any part with an arbitrary CBOR value, maybe add
    or remove a key; from_cbor must either refuse it or accept exactly what it re-encodes."""
    m: Any = PACKET.to_cbor()
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(_paths(m)))
        m = _replace(m, path, data.draw(_cbor_values))
    try:
        packet = Packet.from_cbor(m)
    except DecodeError:
        return
    assert Packet.from_cbor(packet.to_cbor()) == packet


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=12), _cbor_values, max_size=6))
def test_arbitrary_maps_into_from_cbor_raise_only_decode_error(m: dict[str, Any]) -> None:
    with pytest.raises(DecodeError):
        Packet.from_cbor(m)


_json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**65), max_value=2**65),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from([str(p) for p in _PEERS] + [_b64(bytes(32)), _b64(bytes(64)), "", "="]),
)
_json_values = st.recursive(
    _json_leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_json_shaped_values_into_packet_from_json_raise_only_packet_error(
    data: st.DataObject,
) -> None:
    view: Any = packet_to_json(PACKET)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(_paths(view)))
        view = _replace(view, path, data.draw(_json_values))
    try:
        packet = packet_from_json(view)
    except PacketError:
        return
    assert packet_from_json(packet_to_json(packet)) == packet
