"""A py-libp2p 0.8.1 circuit relay v2 peer, driven as a subprocess by tests/interop/test_relay.py.

Runs only in the interop virtualenv (see pylibp2p_peer.py and pylibp2p_service.py)::

    $P2PCHAT_INTEROP_PYTHON tools/interop/pylibp2p_relay.py serve
    $P2PCHAT_INTEROP_PYTHON tools/interop/pylibp2p_relay.py reserve ADDR

``serve`` runs py-libp2p's relay (``CircuitV2Protocol`` with hop allowed): it prints
``listening`` and runs until stdin reaches EOF or ``--lifetime``. ``reserve`` connects to ADDR,
writes a hop ``RESERVE`` with py-libp2p's own protobuf classes and framing, and prints
``answer`` (``status``: the status number, ``expire``, ``voucher_ok``: the voucher is a signed
envelope that py-libp2p accepts for the domain ``libp2p-relay-rsvp`` and whose relay and peer
are the relay and us). Errors print ``{"event": "error", ...}``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from libp2p.peer.envelope import unmarshal_envelope
from libp2p.peer.id import ID
from libp2p.relay.circuit_v2.pb.circuit_pb2 import HopMessage
from libp2p.relay.circuit_v2.pb.circuit_pb2 import Voucher as PbVoucher
from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID, CircuitV2Protocol
from libp2p.relay.circuit_v2.resources import RelayLimits
from libp2p.relay.circuit_v2.utils import read_delimited_msg, write_delimited_msg
from libp2p.tools.anyio_service import background_trio_service
from multiaddr import Multiaddr
from pylibp2p_peer import emit
from pylibp2p_service import common_options, parse_commands, run_main, serve_or_ask


def _voucher_ok(data: bytes, relay: ID, peer: ID) -> bool:
    if not data:
        return False
    envelope = unmarshal_envelope(data)
    envelope.validate("libp2p-relay-rsvp")  # raises if the signature does not verify
    voucher = PbVoucher()
    voucher.ParseFromString(envelope.raw_payload)
    return ID(voucher.relay) == relay and ID(voucher.peer) == peer


@asynccontextmanager
async def serve(host: Any) -> AsyncIterator[None]:
    limits = RelayLimits(duration=120, data=1 << 20, max_circuit_conns=8, max_reservations=8)
    relay = CircuitV2Protocol(host, limits=limits, allow_hop=True)
    async with background_trio_service(relay):
        await relay.event_started.wait()
        yield


async def reserve(host: Any, info: Any) -> None:
    stream = await host.new_stream(info.peer_id, [PROTOCOL_ID])
    await write_delimited_msg(stream, HopMessage(type=HopMessage.RESERVE))
    answer = await read_delimited_msg(stream, HopMessage)
    await stream.close()
    emit(
        "answer",
        status=int(answer.status),
        expire=int(answer.reservation.expire),
        addrs=[str(Multiaddr(a)) for a in answer.reservation.addrs],
        limit={"duration": answer.limit.duration, "data": answer.limit.data},
        voucher_ok=_voucher_ok(answer.reservation.voucher, info.peer_id, host.get_id()),
    )


async def run(args: argparse.Namespace) -> int:
    return await serve_or_ask(args, max_conns_per_peer=4, serve=serve, ask=reserve)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    commands = [
        ("serve", "serve as a relay", False),
        ("reserve", "reserve a slot on the relay ADDR", True),
    ]
    return parse_commands(argv, __doc__, common_options(), commands)


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(run, parse_args, argv)


if __name__ == "__main__":
    sys.exit(main())
