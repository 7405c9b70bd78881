"""The node's circuit relay: ``[relay]`` of the configuration.

:func:`open_relaying` runs the relay client while ``[relay] client`` is on (the default): the
node accepts relayed connections from relays it reserved on, dials ``/p2p-circuit`` addresses,
upgrades relayed connections to direct ones with DCUtR (effective through a NAT with
``[relay] hole_punch``, which makes the Host dial from its listen port), and holds reservations
on the relays that ``[relay] reserve`` names (none by default), advertising the circuit
addresses they give. With ``[relay] enabled`` it also serves as a relay for others
(specs/relay.md "Relay policy"). While AutoNAT says the node is private, ``app/internet.py``
reserves on more relays by itself, up to ``[relay] auto_relays`` (``net/autorelay.py``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import attrs

from ..multiaddr import Multiaddr
from ..net.dcutr import DCUtR, open_dcutr
from ..net.host import Host
from ..net.relay import (
    RelayClient,
    RelayService,
    is_relayed,
    open_relay_client,
    open_relay_service,
)


@attrs.frozen
class RelayOptions:
    """``[relay]``: serve as a relay, use relays, and which ones to reserve on."""

    serve: bool = False
    client: bool = True
    reserve: tuple[Multiaddr, ...] = ()
    #: Dial TCP from the listen port (HostConfig.reuse_port), which hole punching through a NAT
    #: needs; DCUtR itself runs whenever the client does.
    hole_punch: bool = False
    #: Run DCUtR (off only in tests that keep a connection relayed).
    dcutr: bool = True
    #: While AutoNAT says private, hold this many reservations in all, on relays found by
    #: ourselves after the configured ones (specs/relay.md "Automatic reservations"); 0: off.
    auto_relays: int = 2


@attrs.define
class Relaying:
    """What runs: the relay service and the client, as far as enabled."""

    service: RelayService | None
    client: RelayClient | None
    dcutr: DCUtR | None = None
    options: RelayOptions = attrs.Factory(RelayOptions)

    def status(self) -> dict[str, Any]:
        """For ``p2pchat status``: serving or not, our reservations, circuits relayed."""
        now = time.time()
        out: dict[str, Any] = {
            "serving": self.service is not None,
            "reservations": [
                {
                    "relay": str(held.relay),
                    "expires_in": max(0, int(held.expire - now)),
                    "addrs": [str(a) for a in held.addrs],
                }
                for held in (self.client.reservations() if self.client else [])
            ],
        }
        if self.dcutr is not None:
            out["hole_punches"] = {
                "upgraded": self.dcutr.stats.upgraded,
                "failed": self.dcutr.stats.failed,
            }
        if self.service is not None:
            out["reserved_here"] = len(self.service.state.reservations(now))
            out["circuits"] = self.service.state.circuit_count
        return out


def connection_kind(addr: Multiaddr | None) -> str:
    """``relayed`` for a connection through a relay, else ``direct``."""
    return "relayed" if is_relayed(addr) else "direct"


@asynccontextmanager
async def open_relaying(host: Host, options: RelayOptions) -> AsyncIterator[Relaying]:
    """Run what ``options`` enables for the duration of the block."""
    async with AsyncExitStack() as stack:
        service = None
        if options.serve:
            service = await stack.enter_async_context(open_relay_service(host))
        client = None
        dcutr = None
        if options.client:
            client = await stack.enter_async_context(open_relay_client(host, options.reserve))
            if options.dcutr:
                dcutr = await stack.enter_async_context(open_dcutr(host))
        yield Relaying(service, client, dcutr, options)
