"""Signed envelopes and peer records (libp2p RFC 0002 and RFC 0003), sans-IO.

A peer record says where a peer listens: ``PeerRecord {peer_id = 1, seq = 2, addresses = 3
(AddressInfo {multiaddr = 1})}``. It travels inside a signed envelope, ``Envelope {public_key = 1,
payload_type = 2, payload = 3, signature = 5}``, signed by the peer itself over

    uvarint(len(domain)) || domain || uvarint(len(payload_type)) || payload_type
    || uvarint(len(payload)) || payload

with the domain ``"libp2p-peer-record"`` and the payload type ``0x03 0x01`` (the multicodec
``libp2p-peer-record``, 0x0301, as two bytes, not a varint), as go-, rust-, js- and py-libp2p
write it (specs/peer-record.md). A record is accepted only if the signature verifies, the
payload type and domain are those, and the record's ``peer_id`` is the envelope key's peer ID;
a newer ``seq`` replaces an older one (:func:`newer`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import attrs

from .errors import DecodeError
from .identity import KeyPair, PeerID, PublicKey
from .multiaddr import Multiaddr, MultiaddrError
from .protobuf import WT_LEN, WT_VARINT, decode_message, encode_bytes_field, encode_varint_field
from .varint import encode_uvarint

PEER_RECORD_DOMAIN: Final = "libp2p-peer-record"
#: The multicodec ``libp2p-peer-record`` (0x0301) as two big-endian bytes, as go-libp2p writes
#: it (and every implementation after it), not as a varint.
PEER_RECORD_PAYLOAD_TYPE: Final = b"\x03\x01"
#: Bounds on what we decode: an envelope, the addresses of one record, one address.
MAX_ENVELOPE_SIZE: Final = 4096
MAX_ADDRESSES: Final = 32
MAX_ADDRESS_SIZE: Final = 256

_ENVELOPE_SCHEMA: Final = {1: WT_LEN, 2: WT_LEN, 3: WT_LEN, 5: WT_LEN}
_RECORD_SCHEMA: Final = {1: WT_LEN, 2: WT_VARINT, 3: WT_LEN}
_ADDRESS_SCHEMA: Final = {1: WT_LEN}


class RecordError(DecodeError):
    """An envelope or a peer record that is malformed, too large, or not validly signed."""


def _one(fields: dict[int, list[int | bytes]], number: int, what: str) -> bytes:
    values = fields.get(number)
    if not values or len(values) != 1 or not isinstance(values[0], bytes):
        raise RecordError(f"{what}: field {number} missing or repeated", hint="bad record")
    return values[0]


def signing_bytes(domain: str, payload_type: bytes, payload: bytes) -> bytes:
    """What an envelope's signature covers (RFC 0002, "Signature Production")."""
    encoded = domain.encode()
    return b"".join(
        (
            encode_uvarint(len(encoded)),
            encoded,
            encode_uvarint(len(payload_type)),
            payload_type,
            encode_uvarint(len(payload)),
            payload,
        )
    )


@attrs.frozen
class Envelope:
    """A signed envelope: who signed, what kind of payload, the payload, the signature."""

    public_key: PublicKey
    payload_type: bytes
    payload: bytes
    signature: bytes

    @classmethod
    def seal(cls, signer: KeyPair, domain: str, payload_type: bytes, payload: bytes) -> Envelope:
        """Sign ``payload`` in ``domain``."""
        signature = signer.sign(signing_bytes(domain, payload_type, payload))
        return cls(signer.public_key, payload_type, payload, signature)

    def encode(self) -> bytes:
        return b"".join(
            (
                encode_bytes_field(1, self.public_key.to_protobuf()),
                encode_bytes_field(2, self.payload_type),
                encode_bytes_field(3, self.payload),
                encode_bytes_field(5, self.signature),
            )
        )

    @classmethod
    def decode(cls, data: bytes) -> Envelope:
        """Parse an envelope (the signature is not checked: see :meth:`open`).

        Raises:
            RecordError: malformed, too large, or an unusable public key.
        """
        if len(data) > MAX_ENVELOPE_SIZE:
            raise RecordError(f"envelope of {len(data)} bytes", hint="record too large")
        try:
            fields = decode_message(data, _ENVELOPE_SCHEMA)
            key = PublicKey.from_protobuf(_one(fields, 1, "envelope"))
        except RecordError:
            raise
        except DecodeError as exc:
            raise RecordError(f"malformed envelope: {exc}", hint="bad record") from exc
        return cls(
            key,
            _one(fields, 2, "envelope"),
            _one(fields, 3, "envelope"),
            _one(fields, 5, "envelope"),
        )

    def open(self, domain: str, payload_type: bytes) -> bytes:
        """The payload, once the signature verifies for ``domain`` and the type matches.

        Raises:
            RecordError: another payload type, or a signature that does not verify.
        """
        if self.payload_type != payload_type:
            raise RecordError("unexpected envelope payload type", hint="bad record type")
        message = signing_bytes(domain, self.payload_type, self.payload)
        if not self.public_key.verify(self.signature, message):
            raise RecordError("the envelope's signature does not verify", hint="bad signature")
        return self.payload


@attrs.frozen
class PeerRecord:
    """Where ``peer`` listens, as of ``seq`` (higher is newer)."""

    peer: PeerID
    seq: int
    addresses: tuple[Multiaddr, ...]

    def encode(self) -> bytes:
        parts = [encode_bytes_field(1, self.peer.to_bytes()), encode_varint_field(2, self.seq)]
        parts += [
            encode_bytes_field(3, encode_bytes_field(1, a.to_bytes())) for a in self.addresses
        ]
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes) -> PeerRecord:
        """Parse a record payload.

        Raises:
            RecordError: malformed, or more addresses than :data:`MAX_ADDRESSES`.
        """
        try:
            return _parse_record(data)
        except RecordError:
            raise
        except (DecodeError, MultiaddrError) as exc:
            raise RecordError(f"malformed peer record: {exc}", hint="bad record") from exc

    def seal(self, signer: KeyPair) -> Envelope:
        """The record in an envelope signed by ``signer``, which must be the record's peer.

        Raises:
            ValueError: ``signer`` is not ``peer``.
        """
        if signer.peer_id != self.peer:
            raise ValueError("a peer record is signed by its own peer")
        return Envelope.seal(signer, PEER_RECORD_DOMAIN, PEER_RECORD_PAYLOAD_TYPE, self.encode())


def _parse_record(data: bytes) -> PeerRecord:
    fields = decode_message(data, _RECORD_SCHEMA)
    peer = PeerID.from_bytes(_one(fields, 1, "peer record"))
    seqs = fields.get(2, [0])
    if len(seqs) != 1 or not isinstance(seqs[0], int):
        raise RecordError("peer record: seq repeated", hint="bad record")
    raw_addresses = fields.get(3, [])
    if len(raw_addresses) > MAX_ADDRESSES:
        raise RecordError("peer record: too many addresses", hint="record too large")
    addresses = []
    for info in raw_addresses:
        if not isinstance(info, bytes):
            raise RecordError("peer record: bad address info", hint="bad record")
        raw = _one(decode_message(info, _ADDRESS_SCHEMA), 1, "address info")
        if len(raw) > MAX_ADDRESS_SIZE:
            raise RecordError("peer record: address too long", hint="record too large")
        addresses.append(Multiaddr.from_bytes(raw))
    return PeerRecord(peer, seqs[0], tuple(addresses))


def make_peer_record(signer: KeyPair, seq: int, addresses: Sequence[Multiaddr]) -> Envelope:
    """Our signed record of ``addresses`` (without ``/p2p`` suffixes, as libp2p writes them)."""
    plain = tuple(a.without_peer_id() for a in addresses)
    return PeerRecord(signer.peer_id, seq, plain).seal(signer)


def open_peer_record(data: bytes) -> tuple[PeerRecord, Envelope]:
    """Verify a signed peer record (envelope bytes) and return it with its envelope.

    Raises:
        RecordError: malformed, not a peer record, a bad signature, or a record whose peer is
            not the signer.
    """
    envelope = Envelope.decode(data)
    record = PeerRecord.decode(envelope.open(PEER_RECORD_DOMAIN, PEER_RECORD_PAYLOAD_TYPE))
    if not record.peer.matches(envelope.public_key):
        raise RecordError("the peer record is signed by another peer", hint="bad signature")
    return record, envelope


def newer(candidate: PeerRecord, held: PeerRecord | None) -> bool:
    """True if ``candidate`` replaces ``held`` (same peer, strictly higher ``seq``)."""
    if held is None:
        return True
    return candidate.peer == held.peer and candidate.seq > held.seq
