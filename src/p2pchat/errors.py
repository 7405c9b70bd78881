"""The error hierarchy shared by every layer.

A protocol core raises :class:`LocalProtocolError` when *we* misuse its API and
:class:`RemoteProtocolError` when the *peer* sent something it must not. Decoders
raise :class:`DecodeError`, a :class:`RemoteProtocolError`, for malformed bytes.
Each carries a short ``hint`` that adapters log as the reason for closing.
"""

from __future__ import annotations


class P2PChatError(Exception):
    """Base class of every error this package raises on purpose."""


class ProtocolError(P2PChatError):
    """A protocol rule was broken.

    ``hint`` names the rule in a few words, suitable for a log line or a close reason.
    """

    def __init__(self, msg: str, *, hint: str | None = None) -> None:
        super().__init__(msg)
        self.hint = hint if hint is not None else msg


class LocalProtocolError(ProtocolError):
    """We asked a protocol core to do something the protocol forbids."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol forbids."""


class DecodeError(RemoteProtocolError):
    """Bytes could not be decoded: truncated, oversized or malformed."""


class HandshakeError(P2PChatError):
    """A connection's secure handshake failed; ``reason`` says why in a few words.

    Raised by the secure stream (``p2pchat.net.secure``) for every failure of the upgrade,
    timeouts and lost connections included. It lives here, not in the driver, so that the
    Noise core's ``PeerMismatchError`` can be one too.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
