"""A py-libp2p 0.8.1 Kademlia DHT peer (``/ipfs/kad/1.0.0``), driven as a subprocess by the
DHT interop tests (tests/interop/test_kad.py).

Runs only in the interop virtualenv (see pylibp2p_peer.py, whose host set-up it reuses: Ed25519,
TCP on 127.0.0.1, Noise and yamux only, no auto-connector)::

    $P2PCHAT_INTEROP_PYTHON tools/interop/pylibp2p_kad.py serve --bootstrap ADDR [--provide HEX]
    $P2PCHAT_INTEROP_PYTHON tools/interop/pylibp2p_kad.py find-peer --bootstrap ADDR PEER_ID
    $P2PCHAT_INTEROP_PYTHON tools/interop/pylibp2p_kad.py find-providers --bootstrap ADDR HEX

Every ``--bootstrap`` peer is connected and put in py-libp2p's routing table before anything
else. ``serve`` runs a DHT server: it prints ``listening`` (addrs, peer_id), then ``provided``
if ``--provide`` was given, and runs until stdin reaches EOF or ``--lifetime``. The client
commands run a DHT client, print one line (``found`` with the addresses, ``providers``) and
exit; errors print ``{"event": "error", ...}`` and exit 1. stdout carries JSON lines only.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

import trio
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.peer.id import ID
from libp2p.tools.anyio_service import background_trio_service
from multiaddr import Multiaddr
from pylibp2p_peer import (
    _describe,
    _leaf,
    _positive_float,
    _seed,
    _wait_stdin_eof,
    build_host,
    emit,
    full_addrs,
    parse_peer_addr,
    running_host,
)

log = logging.getLogger("pylibp2p_kad")


async def _join(host: Any, dht: Any, bootstrap: Sequence[str]) -> None:
    for text in bootstrap:
        info = parse_peer_addr(text)
        await host.connect(info)
        await dht.routing_table.add_peer(info.peer_id, skip_server_mode_check=True)


async def run(args: argparse.Namespace) -> int:
    listen_addr = Multiaddr("/ip4/127.0.0.1/tcp/0")
    host = build_host(args.seed, 1, listen_addr)
    mode = DHTMode.SERVER if args.command == "serve" else DHTMode.CLIENT
    limit = args.lifetime if args.command == "serve" else args.timeout
    with trio.move_on_after(limit) as scope:
        async with running_host(host, listen_addr):
            dht = KadDHT(host, mode)
            async with background_trio_service(dht):
                await _join(host, dht, args.bootstrap)
                if args.command == "serve":
                    emit("listening", addrs=full_addrs(host), peer_id=str(host.get_id()))
                    if args.provide:
                        emit("provided", ok=bool(await dht.provide(args.provide)))
                    await _wait_stdin_eof()
                    emit("closed", reason="stdin-eof")
                elif args.command == "find-peer":
                    info = await dht.find_peer(ID.from_base58(args.target))
                    addrs = [str(a) for a in info.addrs] if info is not None else []
                    emit("found", peer_id=args.target, addrs=addrs)
                else:
                    found = await dht.find_providers(args.target)
                    emit(
                        "providers",
                        providers=[
                            {"peer_id": str(p.peer_id), "addrs": [str(a) for a in p.addrs]}
                            for p in found
                        ],
                    )
    if scope.cancelled_caught:
        if args.command == "serve":
            emit("closed", reason="lifetime")
            return 0
        emit("error", command=args.command, error="TooSlowError", message="timed out")
        return 1
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--seed", type=_seed, help="Ed25519 seed, 64 hex digits (else random)")
    common.add_argument("--bootstrap", action="append", default=[], help="peer to join through")
    common.add_argument("--timeout", type=_positive_float, default=30.0)
    common.add_argument("-v", "--verbose", action="store_true", help="debug logs on stderr")
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", parents=[common], help="a DHT server")
    p.add_argument("--provide", help="a key (multihash, hex) to provide once joined")
    p.add_argument("--lifetime", type=_positive_float, default=120.0)
    p = sub.add_parser("find-peer", parents=[common], help="look a peer id up")
    p.add_argument("target")
    p = sub.add_parser("find-providers", parents=[common], help="look a key's providers up")
    p.add_argument("target", help="the key, a multihash in hex")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    try:
        return trio.run(run, args)
    except Exception as exc:
        leaf = _leaf(exc)
        emit("error", command=args.command, error=type(leaf).__name__, message=_describe(leaf))
        return 1


if __name__ == "__main__":
    sys.exit(main())
