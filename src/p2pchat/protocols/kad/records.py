"""DHT value records: a validator per namespace, and a bounded store.

kad-dht/README.md "Value storage and retrieval": a key ``/<namespace>/<rest>`` is validated by
the namespace's validator, which also selects the best of several values. We know two
namespaces (specs/kad.md "Records"):

* ``/pk/<peer id bytes>``: the protobuf public key whose peer ID is ``<peer id bytes>``
  (as go-libp2p's ``PublicKeyValidator``); every valid value is equally good.
* ``/p2pchat-peer/<peer id bytes>``: a signed peer record (RFC 0003 envelope) of that peer;
  the highest ``seq`` wins.

Keys of any other namespace are refused: a DHT node stores only what it can check.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Protocol

import attrs

from ...errors import DecodeError
from ...identity import PeerID, PublicKey
from ...records import RecordError, open_peer_record
from .messages import MAX_KEY_SIZE, MAX_VALUE_SIZE

PK_NAMESPACE: Final = b"/pk/"
PEER_NAMESPACE: Final = b"/p2pchat-peer/"
#: Records a node stores for others (specs/kad.md "Limits").
MAX_RECORDS: Final = 4096
#: kad-dht/README.md: records older than this are not served (go-libp2p: 36 h).
MAX_RECORD_AGE: Final = 36 * 3600.0


class InvalidRecordError(DecodeError):
    """A record that its namespace's validator refuses, or of an unknown namespace."""


class Validator(Protocol):
    """Checks the values of one namespace."""

    def validate(self, key: bytes, value: bytes) -> None:
        """Raises InvalidRecordError if ``value`` is not valid under ``key``."""

    def select(self, key: bytes, values: Sequence[bytes]) -> int:
        """The index of the best of ``values`` (all valid)."""


def _peer_of(key: bytes, namespace: bytes) -> PeerID:
    try:
        return PeerID.from_bytes(key[len(namespace) :])
    except DecodeError as exc:
        raise InvalidRecordError("record key does not end in a peer id", hint="bad key") from exc


class PublicKeyValidator:
    """``/pk/<peer id>``: the value is the public key of that peer."""

    def validate(self, key: bytes, value: bytes) -> None:
        peer = _peer_of(key, PK_NAMESPACE)
        try:
            public = PublicKey.from_protobuf(value)
        except DecodeError as exc:
            raise InvalidRecordError("not a public key", hint="bad /pk value") from exc
        if not peer.matches(public):
            raise InvalidRecordError("public key of another peer", hint="bad /pk value")

    def select(self, key: bytes, values: Sequence[bytes]) -> int:
        return 0


class PeerRecordValidator:
    """``/p2pchat-peer/<peer id>``: a signed peer record of that peer; highest seq wins."""

    def validate(self, key: bytes, value: bytes) -> None:
        peer = _peer_of(key, PEER_NAMESPACE)
        try:
            record, _ = open_peer_record(value)
        except RecordError as exc:
            raise InvalidRecordError(f"bad signed peer record: {exc}", hint=exc.hint) from exc
        if record.peer != peer:
            raise InvalidRecordError("peer record of another peer", hint="bad peer record")

    def select(self, key: bytes, values: Sequence[bytes]) -> int:
        seqs = [open_peer_record(v)[0].seq for v in values]
        return max(range(len(values)), key=lambda i: seqs[i])


def default_validators() -> dict[bytes, Validator]:
    """The validators of the namespaces we store, by key prefix."""
    return {PK_NAMESPACE: PublicKeyValidator(), PEER_NAMESPACE: PeerRecordValidator()}


def pk_key(peer: PeerID) -> bytes:
    """The ``/pk/`` key of ``peer``."""
    return PK_NAMESPACE + peer.to_bytes()


def peer_record_key(peer: PeerID) -> bytes:
    """The ``/p2pchat-peer/`` key of ``peer``."""
    return PEER_NAMESPACE + peer.to_bytes()


def validator_for(validators: dict[bytes, Validator], key: bytes) -> Validator:
    """The validator of ``key``'s namespace.

    Raises:
        InvalidRecordError: the key is too long or of a namespace we do not know.
    """
    if len(key) > MAX_KEY_SIZE:
        raise InvalidRecordError("record key too long", hint="bad key")
    for prefix, validator in validators.items():
        if key.startswith(prefix):
            return validator
    raise InvalidRecordError("record key of an unknown namespace", hint="unknown namespace")


@attrs.define
class StoredRecord:
    value: bytes
    received: float


class RecordStore:
    """Values stored for others: validated, bounded in count and size, expiring.

    No clock: callers pass ``now``.
    """

    def __init__(
        self,
        validators: dict[bytes, Validator] | None = None,
        *,
        max_records: int = MAX_RECORDS,
        max_age: float = MAX_RECORD_AGE,
    ) -> None:
        self.validators = validators if validators is not None else default_validators()
        self.max_records = max_records
        self.max_age = max_age
        self._records: dict[bytes, StoredRecord] = {}

    def __len__(self) -> int:
        return len(self._records)

    def validate(self, key: bytes, value: bytes) -> None:
        """Check ``value`` under ``key``.

        Raises:
            InvalidRecordError: refused by its namespace, or too large.
        """
        if len(value) > MAX_VALUE_SIZE:
            raise InvalidRecordError("record value too large", hint="value too large")
        validator_for(self.validators, key).validate(key, value)

    def put(self, key: bytes, value: bytes, now: float) -> bool:
        """Store ``value`` if valid and better than the one held; True if stored.

        Raises:
            InvalidRecordError: refused by its namespace, too large, or the store is full.
        """
        self.validate(key, value)
        held = self.get(key, now)
        if held is not None:
            if held == value:
                self._records[key].received = now
                return True
            validator = validator_for(self.validators, key)
            if validator.select(key, [held, value]) == 0:
                return False
        elif len(self._records) >= self.max_records:
            self.expire(now)
            if len(self._records) >= self.max_records:
                raise InvalidRecordError("record store full", hint="store full")
        self._records[key] = StoredRecord(value, now)
        return True

    def get(self, key: bytes, now: float) -> bytes | None:
        """The value held under ``key``, if any and not too old."""
        stored = self._records.get(key)
        if stored is None:
            return None
        if now - stored.received > self.max_age:
            del self._records[key]
            return None
        return stored.value

    def expire(self, now: float) -> int:
        """Drop records older than ``max_age``; how many went."""
        old = [k for k, r in self._records.items() if now - r.received > self.max_age]
        for key in old:
            del self._records[key]
        return len(old)
