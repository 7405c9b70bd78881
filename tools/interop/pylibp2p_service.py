"""What the one-service py-libp2p 0.8.1 tools share (pylibp2p_autonat.py, pylibp2p_relay.py,
pylibp2p_dcutr.py): the ``serve`` / client command frame, the common options, the command line
and ``main``.

Runs only in the interop virtualenv (see pylibp2p_peer.py, whose host set-up it reuses).

A tool built on :func:`serve_or_ask` has a ``serve`` command, which starts its service on a
host listening on 127.0.0.1, prints ``listening`` (``addrs``, ``peer_id``) and runs until stdin
reaches EOF or ``--lifetime`` (then prints ``closed``), and one client command, which connects
to ADDR, runs its exchange within ``--timeout`` and prints one JSON object. :func:`run_main`
prints an ``{"event": "error", ...}`` line for a failure and exits with status 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import trio
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

LOOPBACK = "/ip4/127.0.0.1/tcp/0"

#: Starts a tool's service on a host for the duration of the ``async with`` block.
Service = Callable[[Any], AbstractAsyncContextManager[None]]
#: A tool's client exchange with the peer it connected to (a PeerInfo); prints its answer.
Exchange = Callable[[Any, Any], Awaitable[None]]


@asynccontextmanager
async def loopback_host(max_conns_per_peer: int) -> AsyncIterator[Any]:
    """A started py-libp2p host listening on 127.0.0.1 (see pylibp2p_peer.build_host)."""
    listen_addr = Multiaddr(LOOPBACK)
    host = build_host(None, max_conns_per_peer, listen_addr)
    async with running_host(host, listen_addr):
        yield host


async def serve_or_ask(
    args: argparse.Namespace, *, max_conns_per_peer: int, serve: Service, ask: Exchange
) -> int:
    """Run ``serve`` (the ``serve`` command) or connect to ``args.addr`` and run ``ask``."""
    serving = args.command == "serve"
    with trio.move_on_after(args.lifetime if serving else args.timeout) as scope:
        async with loopback_host(max_conns_per_peer) as host:
            if serving:
                async with serve(host):
                    emit("listening", addrs=full_addrs(host), peer_id=str(host.get_id()))
                    await _wait_stdin_eof()
                emit("closed", reason="stdin-eof")
                return 0
            info = parse_peer_addr(args.addr)
            await host.connect(info)
            await ask(host, info)
            return 0
    if scope.cancelled_caught and not serving:
        emit("error", command=args.command, error="TooSlowError", message="timed out")
        return 1
    return 0


def common_options(*, timeout: float = 30.0) -> argparse.ArgumentParser:
    """The parent parser of every command: ``--timeout`` and ``--lifetime``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--timeout", type=_positive_float, default=timeout)
    common.add_argument("--lifetime", type=_positive_float, default=120.0)
    return common


def parse_commands(
    argv: Sequence[str] | None,
    doc: str,
    common: argparse.ArgumentParser,
    commands: Sequence[tuple[str, str, bool]],
) -> argparse.Namespace:
    """Parse ``argv`` for a tool whose docstring is ``doc`` (its first line describes the tool)
    and whose commands are ``(name, help, takes ADDR)``, each with the options of ``common``."""
    parser = argparse.ArgumentParser(description=doc.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text, takes_addr in commands:
        p = sub.add_parser(name, parents=[common], help=help_text)
        if takes_addr:
            p.add_argument("addr")
    return parser.parse_args(argv)


def run_main(
    run: Callable[[argparse.Namespace], Awaitable[int]],
    parse_args: Callable[[Sequence[str] | None], argparse.Namespace],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse, run under trio with py-libp2p's warnings on stderr, print a failure as JSON."""
    args = parse_args(argv)
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setLevel(logging.WARNING)
    logging.getLogger().addHandler(stderr)
    logging.getLogger().setLevel(logging.WARNING)
    try:
        return trio.run(run, args)
    except Exception as exc:
        leaf = _leaf(exc)
        emit("error", command=args.command, error=type(leaf).__name__, message=_describe(leaf))
        return 1
