"""Noise_XX_25519_ChaChaPoly_SHA256 and the libp2p Noise secure channel, sans-IO (specs/noise.md).

Three modules, one concern each:

* :mod:`.framework`: the Noise Protocol Framework as libp2p uses it (cipher, symmetric and
  handshake state for ``XX``), with injectable keys and prologue for the official vectors;
* :mod:`.payload`: the libp2p handshake payload (protobuf, the identity signature over the
  static key, the expected peer ID check);
* :mod:`.connection`: :class:`NoiseConnection`, the state machine over bytes that frames the
  handshake and transport messages and reports :class:`HandshakeComplete` and :class:`Data`.

This package re-exports the public names of all three.
"""

from __future__ import annotations

from .._need_data import NEED_DATA as NEED_DATA
from .connection import FRAME_HEADER_LEN as FRAME_HEADER_LEN
from .connection import PROTOCOL_ID as PROTOCOL_ID
from .connection import PROTOCOL_NAME as PROTOCOL_NAME
from .connection import Data as Data
from .connection import HandshakeComplete as HandshakeComplete
from .connection import NoiseConnection as NoiseConnection
from .connection import NoiseEvent as NoiseEvent
from .connection import NoiseState as NoiseState
from .connection import Role as Role
from .framework import MAX_MESSAGE_LEN as MAX_MESSAGE_LEN
from .framework import MAX_NONCE as MAX_NONCE
from .framework import MAX_PLAINTEXT_LEN as MAX_PLAINTEXT_LEN
from .framework import TAGLEN as TAGLEN
from .framework import CipherState as CipherState
from .framework import DecryptionError as DecryptionError
from .framework import HandshakeState as HandshakeState
from .framework import NonceExhaustedError as NonceExhaustedError
from .framework import SymmetricState as SymmetricState
from .framework import hkdf as hkdf
from .payload import STATIC_KEY_SIGNATURE_PREFIX as STATIC_KEY_SIGNATURE_PREFIX
from .payload import InvalidSignatureError as InvalidSignatureError
from .payload import NoiseExtensions as NoiseExtensions
from .payload import NoiseHandshakePayload as NoiseHandshakePayload
from .payload import PeerMismatchError as PeerMismatchError

__all__ = [
    "FRAME_HEADER_LEN",
    "MAX_MESSAGE_LEN",
    "MAX_NONCE",
    "MAX_PLAINTEXT_LEN",
    "NEED_DATA",
    "PROTOCOL_ID",
    "PROTOCOL_NAME",
    "STATIC_KEY_SIGNATURE_PREFIX",
    "TAGLEN",
    "CipherState",
    "Data",
    "DecryptionError",
    "HandshakeComplete",
    "HandshakeState",
    "InvalidSignatureError",
    "NoiseConnection",
    "NoiseEvent",
    "NoiseExtensions",
    "NoiseHandshakePayload",
    "NoiseState",
    "NonceExhaustedError",
    "PeerMismatchError",
    "Role",
    "SymmetricState",
    "hkdf",
]
