"""A py-libp2p 0.8.1 AutoNAT v1 peer (``/libp2p/autonat/1.0.0``), driven as a subprocess by
tests/interop/test_autonat.py.

Runs only in the interop virtualenv (see pylibp2p_peer.py, whose host set-up it reuses)::

    $P2PCHAT_INTEROP_PYTHON tools/interop/pylibp2p_autonat.py serve
    $P2PCHAT_INTEROP_PYTHON tools/interop/pylibp2p_autonat.py ask ADDR

``serve`` answers dial-back requests (py-libp2p's ``AutoNATService``): it prints ``listening``
and runs until stdin reaches EOF or ``--lifetime``. ``ask`` connects to ADDR, asks it to dial
this host back at its listen address and prints ``answer`` (``status``: the ResponseStatus
number, ``addr``: the address reported reached). Errors print ``{"event": "error", ...}``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import trio
from libp2p.host.autonat.autonat import AutoNATService
from multiaddr import Multiaddr
from pylibp2p_peer import (
    _describe,
    _leaf,
    _positive_float,
    _wait_stdin_eof,
    build_host,
    emit,
    full_addrs,
    parse_peer_addr,
    running_host,
)


async def run(args: argparse.Namespace) -> int:
    listen_addr = Multiaddr("/ip4/127.0.0.1/tcp/0")
    host = build_host(None, 1, listen_addr)
    limit = args.lifetime if args.command == "serve" else args.timeout
    with trio.move_on_after(limit) as scope:
        async with running_host(host, listen_addr):
            service = AutoNATService(host, serve=args.command == "serve")
            if args.command == "serve":
                emit("listening", addrs=full_addrs(host), peer_id=str(host.get_id()))
                await _wait_stdin_eof()
                emit("closed", reason="stdin-eof")
                return 0
            info = parse_peer_addr(args.addr)
            await host.connect(info)
            status, addr = await service.query_server(info.peer_id)
            emit("answer", status=int(status), addr=str(Multiaddr(addr)) if addr else None)
    if scope.cancelled_caught and args.command != "serve":
        emit("error", command=args.command, error="TooSlowError", message="timed out")
        return 1
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--timeout", type=_positive_float, default=30.0)
    common.add_argument("--lifetime", type=_positive_float, default=120.0)
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", parents=[common], help="answer dial-back requests")
    p = sub.add_parser("ask", parents=[common], help="ask ADDR to dial us back")
    p.add_argument("addr")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.getLogger().addHandler(logging.StreamHandler(sys.stderr))
    logging.getLogger().setLevel(logging.WARNING)
    try:
        return trio.run(run, args)
    except Exception as exc:
        leaf = _leaf(exc)
        emit("error", command=args.command, error=type(leaf).__name__, message=_describe(leaf))
        return 1


if __name__ == "__main__":
    sys.exit(main())
