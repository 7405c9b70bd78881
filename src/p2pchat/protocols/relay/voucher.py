"""Reservation vouchers (circuit-v2.md "Reservation Vouchers"), sans-IO.

A relay that accepts a reservation may return a voucher: ``ReservationVoucher {relay = 1,
peer = 2, expiration = 3}`` in a signed envelope (RFC 0002) with the domain
``"libp2p-relay-rsvp"`` and the payload type ``0x03 0x02`` (multicodec ``libp2p-relay-rsvp``,
0x0302, as two bytes, as go-libp2p writes it), signed by the relay.
"""

from __future__ import annotations

from typing import Final

import attrs

from ...errors import DecodeError
from ...identity import KeyPair, PeerID
from ...protobuf import WT_LEN, WT_VARINT, decode_message, encode_bytes_field, encode_varint_field
from ...records import Envelope, RecordError

VOUCHER_DOMAIN: Final = "libp2p-relay-rsvp"
VOUCHER_PAYLOAD_TYPE: Final = b"\x03\x02"

_VOUCHER: Final = {1: WT_LEN, 2: WT_LEN, 3: WT_VARINT}


@attrs.frozen
class ReservationVoucher:
    """``relay`` lets ``peer`` be reached through it until ``expiration`` (UNIX seconds)."""

    relay: PeerID
    peer: PeerID
    expiration: int

    def encode(self) -> bytes:
        return b"".join(
            (
                encode_bytes_field(1, self.relay.to_bytes()),
                encode_bytes_field(2, self.peer.to_bytes()),
                encode_varint_field(3, self.expiration),
            )
        )

    @classmethod
    def decode(cls, data: bytes) -> ReservationVoucher:
        """Parse a voucher payload.

        Raises:
            RecordError: malformed or a field missing.
        """
        try:
            fields = decode_message(data, _VOUCHER)
        except DecodeError as exc:
            raise RecordError(f"malformed voucher: {exc}", hint="bad voucher") from exc
        relay, peer, when = fields.get(1), fields.get(2), fields.get(3)
        if not relay or not peer or not when:
            raise RecordError("voucher: a field is missing", hint="bad voucher")
        raw_relay, raw_peer, expiration = relay[-1], peer[-1], when[-1]
        if not isinstance(raw_relay, bytes) or not isinstance(raw_peer, bytes):
            raise RecordError("voucher: bad peer ids", hint="bad voucher")
        if not isinstance(expiration, int):
            raise RecordError("voucher: bad expiration", hint="bad voucher")
        try:
            return cls(PeerID.from_bytes(raw_relay), PeerID.from_bytes(raw_peer), expiration)
        except DecodeError as exc:
            raise RecordError(f"voucher: {exc}", hint="bad voucher") from exc

    def seal(self, relay: KeyPair) -> Envelope:
        """The voucher signed by ``relay``, which must be the voucher's relay.

        Raises:
            ValueError: ``relay`` is not :attr:`relay`.
        """
        if relay.peer_id != self.relay:
            raise ValueError("a voucher is signed by its relay")
        return Envelope.seal(relay, VOUCHER_DOMAIN, VOUCHER_PAYLOAD_TYPE, self.encode())


def open_voucher(data: bytes, *, relay: PeerID, peer: PeerID) -> ReservationVoucher:
    """Verify a voucher (envelope bytes) that ``relay`` issued to ``peer``.

    Raises:
        RecordError: malformed, a bad signature, not signed by ``relay``, or for other peers.
    """
    envelope = Envelope.decode(data)
    voucher = ReservationVoucher.decode(envelope.open(VOUCHER_DOMAIN, VOUCHER_PAYLOAD_TYPE))
    if not relay.matches(envelope.public_key) or voucher.relay != relay:
        raise RecordError("the voucher is not signed by its relay", hint="bad voucher")
    if voucher.peer != peer:
        raise RecordError("the voucher is for another peer", hint="bad voucher")
    return voucher
