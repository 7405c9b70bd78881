"""The two text encodings libp2p peer IDs use: base58btc and RFC 4648 base32.

base58btc (the Bitcoin alphabet) is the legacy, canonical display form of a peer ID;
base32 lower-case without padding is the default multibase (prefix ``b``) of CIDv1.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final

from .errors import DecodeError

BASE58_ALPHABET: Final = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX: Final = {c: i for i, c in enumerate(BASE58_ALPHABET)}
MAX_TEXT: Final = 1024  # no peer ID or multihash we accept is anywhere near this long


def b58encode(data: bytes) -> str:
    """Encode bytes as base58btc (leading zero bytes become ``1``)."""
    zeros = len(data) - len(data.lstrip(b"\0"))
    num = int.from_bytes(data, "big")
    out: list[str] = []
    while num:
        num, rem = divmod(num, 58)
        out.append(BASE58_ALPHABET[rem])
    return "1" * zeros + "".join(reversed(out))


def b58decode(text: str) -> bytes:
    """Decode base58btc text.

    Raises:
        DecodeError: a character outside the alphabet, or text longer than 1024.
    """
    if len(text) > MAX_TEXT:
        raise DecodeError("base58 text too long", hint="base58 too long")
    num = 0
    for ch in text:
        digit = _B58_INDEX.get(ch)
        if digit is None:
            raise DecodeError(f"invalid base58 character {ch!r}", hint="bad base58")
        num = num * 58 + digit
    zeros = len(text) - len(text.lstrip("1"))
    body = num.to_bytes((num.bit_length() + 7) // 8, "big") if num else b""
    return b"\0" * zeros + body


def b32encode(data: bytes) -> str:
    """Encode bytes as RFC 4648 base32, lower case, no padding."""
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def b32decode(text: str) -> bytes:
    """Decode RFC 4648 base32 without padding (either case).

    Raises:
        DecodeError: invalid characters or length.
    """
    if len(text) > MAX_TEXT:
        raise DecodeError("base32 text too long", hint="base32 too long")
    if not text.isascii():
        raise DecodeError("invalid base32 text", hint="bad base32")
    padded = text.upper() + "=" * (-len(text) % 8)
    try:
        return base64.b32decode(padded)
    except (binascii.Error, ValueError) as exc:
        raise DecodeError("invalid base32 text", hint="bad base32") from exc
