"""Seeded randomness for the engine under simulation, so that a run is a function of its seed.

The engine draws keys, nonces and IVs from ``os.urandom`` (in ``chat/core/crypto.py``), and HPKE
draws its ephemeral key inside OpenSSL. :func:`seeded_crypto` replaces both for a block: random
bytes come from the seed, and wrapping an epoch key uses an HPKE base-mode encryption (RFC 9180
§5.1, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM) whose ephemeral key comes from the
seed. Unwrapping stays the library's own, so every wrapped key is checked by the real HPKE.
Message and roster hashes are then the same in every run of a seed, and so are the display
order's ties, the outbox order, and everything the simulator does after them.
"""

from __future__ import annotations

import random
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from p2pchat.chat.core import crypto
from p2pchat.chat.core.packet import Packet
from p2pchat.chat.core.roster_update import RosterUpdate
from p2pchat.identity import PeerID, PublicKey

_KEM_ID = b"\x00\x20"  # DHKEM(X25519, HKDF-SHA256)
_KEM_SUITE = b"KEM" + _KEM_ID
_HPKE_SUITE = b"HPKE" + _KEM_ID + b"\x00\x01" + b"\x00\x02"  # HKDF-SHA256, AES-256-GCM


def _extract(salt: bytes, ikm: bytes) -> bytes:
    mac = hmac.HMAC(salt or bytes(32), hashes.SHA256())
    mac.update(ikm)
    return mac.finalize()


def _expand(prk: bytes, info: bytes, length: int) -> bytes:
    out = b""
    block = b""
    counter = 1
    while len(out) < length:
        mac = hmac.HMAC(prk, hashes.SHA256())
        mac.update(block + info + bytes([counter]))
        block = mac.finalize()
        out += block
        counter += 1
    return out[:length]


def _labeled_extract(suite: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return _extract(salt, b"HPKE-v1" + suite + label + ikm)


def _labeled_expand(suite: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    return _expand(prk, length.to_bytes(2, "big") + b"HPKE-v1" + suite + label + info, length)


class SeededX25519Suite:
    """HPKE base mode with X25519 whose ephemeral keys come from ``rng``; decrypts with the
    library's suite."""

    def __init__(self, rng: random.Random, real: Any) -> None:
        self._rng = rng
        self._real = real

    def encrypt(self, plaintext: bytes, public_key: x25519.X25519PublicKey, info: bytes) -> bytes:
        ephemeral = x25519.X25519PrivateKey.from_private_bytes(self._rng.randbytes(32))
        enc = ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        recipient = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        dh = ephemeral.exchange(public_key)
        prk = _labeled_extract(_KEM_SUITE, b"", b"eae_prk", dh)
        shared = _labeled_expand(_KEM_SUITE, prk, b"shared_secret", enc + recipient, 32)
        psk_id_hash = _labeled_extract(_HPKE_SUITE, b"", b"psk_id_hash", b"")
        info_hash = _labeled_extract(_HPKE_SUITE, b"", b"info_hash", info)
        context = b"\x00" + psk_id_hash + info_hash
        secret = _labeled_extract(_HPKE_SUITE, shared, b"secret", b"")
        key = _labeled_expand(_HPKE_SUITE, secret, b"key", context, 32)
        nonce = _labeled_expand(_HPKE_SUITE, secret, b"base_nonce", context, 12)
        return enc + AESGCM(key).encrypt(nonce, plaintext, b"")

    def decrypt(self, ciphertext: bytes, private_key: Any, info: bytes) -> bytes:
        result: bytes = self._real.decrypt(ciphertext, private_key, info=info)
        return result


@contextmanager
def seeded_crypto(seed: int) -> Iterator[None]:
    """Draw the engine's random bytes and HPKE ephemeral keys from ``seed`` for the block."""
    rng = random.Random(f"crypto-{seed}")
    module: Any = crypto  # its ``os`` is the one name replaced
    saved_os = module.os
    suites = crypto._SUITES
    saved_suite = suites[crypto.KEM_X25519]
    module.os = types.SimpleNamespace(urandom=rng.randbytes)
    suites[crypto.KEM_X25519] = SeededX25519Suite(rng, saved_suite)  # type: ignore[assignment]
    try:
        yield
    finally:
        module.os = saved_os
        suites[crypto.KEM_X25519] = saved_suite


@contextmanager
def memoized_pure() -> Iterator[None]:
    """Remember the results of pure functions for the block: signature checks, parsed peer IDs,
    decoded packets and roster updates (all immutable values).

    Every node of a simulation checks the same signatures and decodes the same bytes; on one
    core, doing each once makes a run several times faster without changing what it decides.
    A call that raises is not remembered (it raises again next time).
    """
    verified: dict[tuple[bytes, bytes, bytes], bool] = {}
    real_verify = PublicKey.verify

    def verify(self: PublicKey, signature: bytes, message: bytes) -> bool:
        key = (self.data, signature, message)
        known = verified.get(key)
        if known is None:
            known = verified[key] = real_verify(self, signature, message)
        return known

    classes: list[tuple[Any, str]] = [
        (PeerID, "from_bytes"),
        (Packet, "decode"),
        (RosterUpdate, "decode"),
    ]
    saved = [(cls, name, cls.__dict__[name]) for cls, name in classes]
    for cls, name, method in saved:
        setattr(cls, name, classmethod(_remembering(method.__func__)))
    PublicKey.verify = verify  # type: ignore[method-assign]
    try:
        yield
    finally:
        PublicKey.verify = real_verify  # type: ignore[method-assign]
        for cls, name, method in saved:
            setattr(cls, name, method)


def _remembering(decode: Any) -> Any:
    results: dict[bytes, Any] = {}

    def remembered(cls: Any, data: bytes) -> Any:
        value = results.get(data)
        if value is None:
            value = results[data] = decode(cls, data)
        return value

    return remembered
