"""A py-libp2p 0.8.1 DCUtR peer (``/libp2p/dcutr``), driven as a subprocess by
tests/interop/test_dcutr.py.

Runs only in the interop virtualenv (see pylibp2p_peer.py and pylibp2p_service.py)::

    $P2PCHAT_INTEROP_PYTHON tools/interop/pylibp2p_dcutr.py initiate RELAY_ADDR
    $P2PCHAT_INTEROP_PYTHON tools/interop/pylibp2p_dcutr.py answer CIRCUIT_ADDR

``initiate``: the host reserves a slot on the relay RELAY_ADDR (a hop ``RESERVE`` with
py-libp2p's own protobuf classes), serves ``/stop`` with py-libp2p's ``CircuitV2Protocol`` and
prints ``reserved`` (``circuit``: its ``/p2p-circuit`` address). When a peer connects through
the relay, py-libp2p's ``DCUtRProtocol.initiate_hole_punch`` runs once on that relayed
connection (py-libp2p is the spec's inbound peer ``B``: it writes the first ``CONNECT``) and the
tool prints ``result``.

``answer``: the host dials CIRCUIT_ADDR through its relay (a hop ``CONNECT``, then py-libp2p's
outbound upgrade of the relayed stream, tagged as relayed as py-libp2p's own circuit transport
does) and prints ``connected``; py-libp2p's DCUtR handler answers the peer's hole punch (the
spec's ``A``) and the tool prints ``result`` when the handler returns.

``result`` carries ``success`` (what py-libp2p reported), ``direct`` (py-libp2p has a non-relayed
connection to the peer), ``steps`` (py-libp2p's own DCUtR log lines, in order: which messages it
sent and received, and how its dials ended) and ``connections`` (each connection's transport
addresses). Both commands then run until stdin reaches EOF or ``--lifetime``.

Two py-libp2p behaviours are switched off so that one exchange runs, the one asked for:

* its auto-drive loop (every 2 s it starts a hole punch on any relayed connection, from
  either side): ``initiate`` starts exactly one instead, ``answer`` starts none;
* with ``--no-direct-first`` (the default), its step 0 (a plain dial to the peer's known
  addresses before any hole punch): on loopback that dial always reaches the peer's listener,
  so the CONNECT/CONNECT/SYNC exchange would never run. ``--direct-first`` keeps it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

import trio
from libp2p.connection_types import ConnectionType
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.peer.id import ID
from libp2p.relay.circuit_v2.dcutr import DCUtRProtocol
from libp2p.relay.circuit_v2.pb.circuit_pb2 import HopMessage
from libp2p.relay.circuit_v2.pb.circuit_pb2 import PeerId as CircuitPeer
from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID, CircuitV2Protocol
from libp2p.relay.circuit_v2.utils import read_delimited_msg, write_delimited_msg
from libp2p.tools.anyio_service import background_trio_service
from multiaddr import Multiaddr
from multiaddr.protocols import P_P2P_CIRCUIT
from pylibp2p_peer import _wait_stdin_eof, emit, parse_peer_addr
from pylibp2p_service import common_options, loopback_host, parse_commands, run_main

STATUS_OK = 100
#: Connections py-libp2p may hold to one peer: the relayed one plus the hole punch's.
MAX_CONNS_PER_PEER = 4


class _Steps(logging.Handler):
    """Keeps py-libp2p's DCUtR log lines (its account of the exchange)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.lines) < 200:
            self.lines.append(record.getMessage())


class _DCUtR(DCUtRProtocol):  # type: ignore[misc]
    """py-libp2p's DCUtR with the two switches of the module docstring."""

    direct_first = False
    handled: trio.Event

    async def _auto_drive_loop(self) -> None:
        return

    async def _try_unilateral_upgrade(self, peer_id: ID) -> bool:
        if self.direct_first:
            return bool(await super()._try_unilateral_upgrade(peer_id))
        return False

    async def _handle_dcutr_stream(self, stream: Any) -> None:
        try:
            await super()._handle_dcutr_stream(stream)
        finally:
            self.handled.set()


def _connections(host: Any, peer: ID) -> list[list[str]]:
    conns = host.get_network().connections.get(peer) or []
    if not isinstance(conns, list):
        conns = [conns]
    out = []
    for conn in conns:
        try:
            out.append([str(a) for a in conn.get_transport_addresses()])
        except Exception as exc:  # report whatever py-libp2p holds
            out.append([f"? {exc}"])
    return out


def _relayed_peer(host: Any, relay: ID) -> ID | None:
    for peer in list(host.get_network().connections):
        if peer == relay:
            continue
        if any("/p2p-circuit" in a for addrs in _connections(host, peer) for a in addrs):
            return peer
    return None


async def _result(host: Any, dcutr: _DCUtR, peer: ID, steps: _Steps, success: bool) -> None:
    emit(
        "result",
        success=success,
        direct=bool(await dcutr._verify_direct_connection(peer)),
        steps=steps.lines,
        connections=_connections(host, peer),
    )


async def _hop(host: Any, relay: Any, message: HopMessage) -> tuple[Any, HopMessage]:
    stream = await host.new_stream(relay.peer_id, [PROTOCOL_ID])
    await write_delimited_msg(stream, message)
    return stream, await read_delimited_msg(stream, HopMessage)


async def cmd_initiate(host: Any, dcutr: _DCUtR, steps: _Steps, args: argparse.Namespace) -> None:
    relay = parse_peer_addr(args.addr)
    await host.connect(relay)
    stop = CircuitV2Protocol(host, allow_hop=False)
    async with background_trio_service(stop):
        await stop.event_started.wait()
        stream, answer = await _hop(host, relay, HopMessage(type=HopMessage.RESERVE))
        await stream.close()
        if answer.status != STATUS_OK:
            emit("error", command="initiate", error="Refused", message=f"status {answer.status}")
            return
        circuit = f"{args.addr}/p2p-circuit/p2p/{host.get_id()}"
        emit("reserved", circuit=circuit, peer_id=str(host.get_id()))
        with trio.fail_after(args.timeout):
            # py-libp2p announces no event for a relayed connection: look every 50 ms.
            while (peer := _relayed_peer(host, relay.peer_id)) is None:  # noqa: ASYNC110
                await trio.sleep(0.05)
            emit("relayed", peer_id=str(peer))
            success = await dcutr.initiate_hole_punch(peer)
        await _result(host, dcutr, peer, steps, bool(success))
        await _wait_stdin_eof()


async def cmd_answer(host: Any, dcutr: _DCUtR, steps: _Steps, args: argparse.Namespace) -> None:
    target = Multiaddr(args.addr)
    peer = ID.from_base58(target.get_peer_id())
    relay_part = target.decapsulate_code(P_P2P_CIRCUIT)
    relay = parse_peer_addr(str(relay_part))
    await host.connect(relay)
    connect = HopMessage(type=HopMessage.CONNECT, peer=CircuitPeer(id=peer.to_bytes()))
    stream, answer = await _hop(host, relay, connect)
    if answer.status != STATUS_OK:
        emit("error", command="answer", error="Refused", message=f"status {answer.status}")
        return
    circuit = Multiaddr(f"/p2p/{relay.peer_id}/p2p-circuit/p2p/{peer}")
    raw = RawConnection(
        stream=stream, initiator=True, connection_type=ConnectionType.RELAYED, addresses=[circuit]
    )
    conn = await host.upgrade_outbound_connection(raw, peer)
    conn.set_transport_info([circuit], ConnectionType.RELAYED)
    emit("connected", peer_id=str(peer))
    with trio.fail_after(args.timeout):
        await dcutr.handled.wait()
    success = any("Successfully established" in line for line in steps.lines)
    await _result(host, dcutr, peer, steps, success)
    await _wait_stdin_eof()


async def run(args: argparse.Namespace) -> int:
    steps = _Steps()
    dcutr_log = logging.getLogger("libp2p.relay.circuit_v2.dcutr")
    dcutr_log.setLevel(logging.DEBUG)
    dcutr_log.addHandler(steps)
    with trio.move_on_after(args.lifetime) as scope:
        async with loopback_host(MAX_CONNS_PER_PEER) as host:
            dcutr = _DCUtR(host)
            dcutr.direct_first = args.direct_first
            dcutr.handled = trio.Event()
            async with background_trio_service(dcutr):
                await dcutr.event_started.wait()
                if args.command == "initiate":
                    await cmd_initiate(host, dcutr, steps, args)
                else:
                    await cmd_answer(host, dcutr, steps, args)
    emit("closed", reason="lifetime" if scope.cancelled_caught else "stdin-eof")
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    common = common_options(timeout=60.0)
    common.add_argument(
        "--direct-first",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="keep py-libp2p's plain dial before the hole punch (DCUtR step 0)",
    )
    commands = [
        ("initiate", "reserve on RELAY_ADDR, then punch", True),
        ("answer", "dial CIRCUIT_ADDR, answer its punch", True),
    ]
    return parse_commands(argv, __doc__, common, commands)


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(run, parse_args, argv)


if __name__ == "__main__":
    sys.exit(main())
