"""Query bodies written as JSON, for ``p2pchat query`` and the control socket (specs/plugins.md
"Bodies in JSON").

A chat body is a CBOR map (specs/chat.md §2); JSON has no byte strings, so a byte string is
written as a one-key object ``{"$bytes": "<standard Base64>"}``, both ways: what
:func:`body_to_json` gives, :func:`body_from_json` reads back to the same CBOR value. Every other
JSON value maps to its CBOR counterpart, except fractional numbers: the chat's CBOR has no
floats (specs/chat.md §1), so they are refused. A CBOR value JSON cannot hold (a map key that is not
text, a tag, an undefined) is shown by :func:`body_to_json` as its ``repr`` text: the JSON view
of a response is for reading, and loses only what no JSON could carry.
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any, Final

from ...errors import LocalProtocolError

#: The key of the one-key object that stands for a byte string.
BYTES_KEY: Final = "$bytes"
#: Nesting deeper than this is refused: a frame's CBOR nests at most 16 levels (specs/chat.md
#: §1) and the envelope around the body takes some.
MAX_DEPTH: Final = 14


def body_from_json(value: Any) -> dict[str, Any]:
    """The CBOR body a JSON value (from :func:`json.loads`) stands for.

    Raises:
        LocalProtocolError: not an object, a ``$bytes`` value that is not Base64, a number
            that is not a whole number in CBOR's range, or nesting deeper than
            :data:`MAX_DEPTH`.
    """
    if not isinstance(value, dict):
        raise LocalProtocolError("a query body is a JSON object", hint="malformed body")
    body: dict[str, Any] = _from(value, 0)
    return body


def _from(value: Any, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise LocalProtocolError(f"a body nests deeper than {MAX_DEPTH}", hint="malformed body")
    if isinstance(value, dict):
        if set(value) == {BYTES_KEY}:
            return _decode_bytes(value[BYTES_KEY])
        return {str(k): _from(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_from(v, depth + 1) for v in value]
    if isinstance(value, float):
        raise LocalProtocolError(
            f"a body number must be a whole number (the chat's CBOR has no floats): {value}",
            hint="malformed body",
        )
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**64) <= value < 2**64:
        raise LocalProtocolError(f"a body number is out of range: {value}", hint="malformed body")
    if value is None or isinstance(value, str | int | bool):
        return value
    raise LocalProtocolError(f"not a JSON value: {type(value).__name__}", hint="malformed body")


def _decode_bytes(text: Any) -> bytes:
    if not isinstance(text, str):
        raise LocalProtocolError(f"{BYTES_KEY} holds Base64 text", hint="malformed body")
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise LocalProtocolError(
            f"{BYTES_KEY} is not standard Base64: {text[:40]!r}", hint="malformed body"
        ) from None


def body_to_json(value: Any) -> Any:
    """The JSON view of a CBOR body (byte strings as ``{"$bytes": ...}``)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return {BYTES_KEY: base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, dict):
        return {k if isinstance(k, str) else repr(k): body_to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [body_to_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)
