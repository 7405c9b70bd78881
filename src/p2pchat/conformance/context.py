"""What a case is handed: the target, and connections to it opened layer by layer.

Every connection a case opens is closed when the case ends, however it ends (the runner enters
:meth:`CaseContext.closing`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import attrs

from ..identity import KeyPair, PeerID
from ..multiaddr import Multiaddr
from .mux import MuxClient, StreamResetError, open_mux
from .registry import NotApplicableError
from .secure import NoiseFault, SecureChannel, noise_handshake
from .transport import RawConnection, Transcript, connect_raw

__all__ = ["CaseContext"]


@attrs.define
class CaseContext:
    """One case's view of the target."""

    target: Multiaddr
    identity: KeyPair
    #: Seconds a case waits to see that something does (or does not) happen.
    step: float
    #: Seconds the whole case may take (cases that measure stop a little before).
    timeout: float
    #: Protocols found offered (True) or refused (False) by earlier cases of the run.
    offered: dict[str, bool] = attrs.Factory(dict)
    transcript: Transcript = attrs.Factory(Transcript)
    _stack: AsyncExitStack | None = None

    @property
    def expected_peer(self) -> PeerID | None:
        """The peer ID in the target address, if it has one."""
        return self.target.peer_id

    @asynccontextmanager
    async def closing(self) -> AsyncIterator[None]:
        """Close every connection opened through this context on the way out."""
        async with AsyncExitStack() as stack:
            self._stack = stack
            try:
                yield
            finally:
                self._stack = None

    async def raw(self) -> RawConnection:
        """A new TCP connection to the target.

        Raises:
            TargetUnreachableError: it cannot be reached.
        """
        conn = await connect_raw(self.target, self.transcript, self.step * 2)
        assert self._stack is not None, "connections are opened inside closing()"
        self._stack.push_async_callback(conn.aclose)
        return conn

    async def secure(
        self, *, fault: NoiseFault = NoiseFault.NONE, muxers: tuple[str, ...] = ()
    ) -> SecureChannel:
        """A new connection through the Noise handshake (done wrong as ``fault`` says).

        Raises:
            ViolationError: the target broke multistream-select or Noise.
            PeerClosedError: it closed during the handshake.
        """
        conn = await self.raw()
        return await noise_handshake(
            conn, self.identity, expected_peer=self.expected_peer, muxers=muxers, fault=fault
        )

    async def mux(self) -> MuxClient:
        """A new connection up to yamux (negotiated with multistream-select after Noise).

        Raises:
            ViolationError: the target broke a rule on the way.
            PeerClosedError: it closed on the way.
        """
        return await open_mux(await self.secure())

    async def stream(self, protocol: str, extra: bytes = b"") -> tuple[MuxClient, int]:
        """A new connection and a stream on it speaking ``protocol``.

        Raises:
            NotApplicableError: the target does not offer ``protocol``.
            StreamResetError: it reset the stream while negotiating.
            ViolationError: it broke a rule on the way.
            PeerClosedError: it closed on the way.
        """
        if self.offered.get(protocol) is False:
            raise NotApplicableError(f"the target does not offer {protocol}")
        client = await self.mux()
        try:
            stream_id, agreed = await client.select(protocol, extra)
        except StreamResetError:
            self.offered[protocol] = False
            raise NotApplicableError(f"the target reset a stream proposing {protocol}") from None
        self.offered[protocol] = agreed is not None
        if agreed is None:
            raise NotApplicableError(f"the target does not offer {protocol} (it answered na)")
        return client, stream_id
