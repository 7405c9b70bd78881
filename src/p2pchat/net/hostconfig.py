"""The Host's configuration (:class:`HostConfig`) and the types and errors of its API; the Host
itself is in ``net/host.py``, which exports all of these too."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

import attrs

from .. import __version__
from ..errors import P2PChatError
from ..multiaddr import Multiaddr
from .muxer import MuxedStream, MuxerConfig
from .resources import ResourceLimits

DEFAULT_LISTEN: Final = "/ip4/127.0.0.1/tcp/0"

StreamHandler = Callable[[MuxedStream], Awaitable[None]]


class StreamOpenError(P2PChatError):
    """A stream could not be opened, or the peer supports none of the protocols asked for."""


class HandlerExistsError(ValueError):
    """A protocol (or a chat code) already has a handler, and replacing it was not asked for
    (``replace=True``): replacing one silently would take its service down."""


@attrs.frozen
class HostConfig:
    """How a host listens, dials and limits its peers. Defaults suit a node on loopback.

    The limits are those of specs/host.md "Resource limits" (see ``net/resources.py``).

    Raises:
        ValueError: a limit out of range (on construction).
    """

    listen: tuple[Multiaddr, ...] = (Multiaddr.from_string(DEFAULT_LISTEN),)
    handshake_timeout: float = 10.0
    negotiate_timeout: float = 10.0
    dial_timeout: float = 15.0
    #: Connection and handshake limits (specs/host.md, "Resource limits").
    limits: ResourceLimits = attrs.Factory(ResourceLimits)
    muxer: MuxerConfig = attrs.Factory(MuxerConfig)
    agent_version: str = f"p2pchat/{__version__}"
    #: Run identify with every new connection (both directions).
    identify_on_connect: bool = True
    #: Dial TCP from the listen port (SO_REUSEPORT), as hole punching needs (specs/dcutr.md).
    reuse_port: bool = False
    #: When a peer also has relayed addresses, the seconds its direct ones may take in all
    #: before the relayed ones are tried (specs/host.md "Connections").
    relay_fallback_after: float = 3.0
