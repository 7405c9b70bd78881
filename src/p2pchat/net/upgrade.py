"""Connection upgrade: TCP -> ``/noise`` -> stream muxer -> :class:`MuxedConnection`.

The muxer is taken from the Noise handshake when both sides listed muxers there (libp2p/specs
``connections/inlined-muxer-negotiation.md``: the first of the initiator's muxers that both
support; no overlap fails the upgrade). Otherwise it is negotiated with multistream-select over
the secure channel. The whole upgrade runs under one deadline.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

from ..identity import KeyPair, PeerID
from ..multiaddr import Multiaddr
from .muxer import MuxedConnection, MuxerConfig, muxer_protocols
from .negotiate import NegotiationError, negotiate_inbound, negotiate_outbound
from .secure import HandshakeError, SecureStream, secure_inbound, secure_outbound


def _inlined_muxer(initiator: Sequence[str], responder: Sequence[str]) -> str | None:
    """The muxer chosen in the Noise handshake, or None to negotiate it afterwards.

    Raises:
        HandshakeError: both listed muxers and none is common.
    """
    if not initiator or not responder:
        return None
    for muxer in initiator:
        if muxer in responder:
            return muxer
    raise HandshakeError("no stream muxer in common (from the Noise handshake)")


async def _choose_muxer(secure: SecureStream, *, outbound: bool) -> bytes:
    ours = list(muxer_protocols())
    theirs = list(secure.remote_stream_muxers)
    inlined = _inlined_muxer(ours, theirs) if outbound else _inlined_muxer(theirs, ours)
    if inlined is not None:
        return b""
    try:
        if outbound:
            _muxer, trailing = await negotiate_outbound(secure, ours)
        else:
            _muxer, trailing = await negotiate_inbound(secure, ours)
    except NegotiationError as exc:
        raise HandshakeError(f"muxer negotiation: {exc}") from exc
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        raise HandshakeError("connection lost during muxer negotiation") from exc
    return trailing


async def upgrade(
    transport: trio.abc.Stream,
    identity: KeyPair,
    *,
    outbound: bool,
    expected_peer: PeerID | None = None,
    remote_addr: Multiaddr | None = None,
    handshake_timeout: float,
    config: MuxerConfig | None = None,
) -> MuxedConnection:
    """Secure ``transport`` and put a muxer on it; the caller runs the result.

    Raises:
        PeerMismatchError: the peer is not ``expected_peer``.
        HandshakeError: any other failure, timeout included. ``transport`` is closed.
    """
    secure: SecureStream | None = None
    try:
        with trio.fail_after(handshake_timeout):
            if outbound:
                secure = await secure_outbound(
                    transport,
                    identity,
                    expected_peer=expected_peer,
                    stream_muxers=muxer_protocols(),
                    handshake_timeout=handshake_timeout,
                )
            else:
                secure = await secure_inbound(
                    transport,
                    identity,
                    stream_muxers=muxer_protocols(),
                    handshake_timeout=handshake_timeout,
                )
            trailing = await _choose_muxer(secure, outbound=outbound)
    except trio.TooSlowError:
        await trio.aclose_forcefully(transport)
        raise HandshakeError(f"upgrade timed out after {handshake_timeout:g} s") from None
    except BaseException:
        # Any failure, a cancellation from outside (a dial deadline, a shutdown) included,
        # leaves no socket open behind it.
        await trio.aclose_forcefully(transport)
        raise
    return MuxedConnection(
        secure,
        is_client=outbound,
        config=config,
        remote_addr=remote_addr,
        initial_data=trailing,
    )
