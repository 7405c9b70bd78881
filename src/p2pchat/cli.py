"""The ``p2pchat`` command (also ``python -m p2pchat``).

Every failure a user can cause prints one line on stderr and exits non-zero; tracebacks are
reserved for bugs.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import trio

from . import __version__
from .datadir import load_or_create_identity, resolve_data_dir
from .errors import P2PChatError
from .identity import KeyPair
from .multiaddr import Multiaddr, MultiaddrError
from .net.secure import SecureStream, dial_secure, serve_secure

DEFAULT_LISTEN = "/ip4/127.0.0.1/tcp/0"
EXIT_USAGE = 2
EXIT_FAILURE = 1

logger = logging.getLogger("p2pchat.cli")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake in one line."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _multiaddr(text: str) -> Multiaddr:
    try:
        return Multiaddr.from_string(text)
    except MultiaddrError as exc:
        raise argparse.ArgumentTypeError(f"invalid multiaddr {text!r}: {exc}") from None


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="p2pchat",
        description="Ratified peer-to-peer group chat on a libp2p-compatible Trio stack.",
    )
    parser.add_argument("--version", action="version", version=f"p2pchat {__version__}")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where the node keeps its identity and data "
        "(default: $P2PCHAT_DATA_DIR, else $XDG_DATA_HOME/p2pchat)",
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="log verbosity on stderr (default: warning)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p_id = sub.add_parser("id", help="print this node's peer ID (creating the identity)")
    p_id.add_argument("--json", action="store_true", help="print a JSON object")

    p_node = sub.add_parser("node", help="run a node until SIGINT/SIGTERM")
    p_node.add_argument(
        "--listen",
        type=_multiaddr,
        action="append",
        metavar="MULTIADDR",
        help=f"address to listen on, repeatable (default: {DEFAULT_LISTEN})",
    )

    p_dial = sub.add_parser(
        "dial", help="open a secure connection to a node and report who answered"
    )
    p_dial.add_argument("address", type=_multiaddr, metavar="MULTIADDR")
    p_dial.add_argument("--timeout", type=float, default=10.0, help="seconds (default: 10)")
    p_dial.add_argument("--json", action="store_true", help="print a JSON object")
    return parser


def _identity(args: argparse.Namespace) -> KeyPair:
    return load_or_create_identity(resolve_data_dir(args.data_dir))


def cmd_id(args: argparse.Namespace) -> int:
    pair = _identity(args)
    peer = pair.peer_id
    if args.json:
        print(json.dumps({"peer_id": str(peer), "cid": peer.to_cid()}))
    else:
        print(peer)
    return 0


async def _run_node(identity: KeyPair, listen: Sequence[Multiaddr]) -> None:
    async def on_connection(stream: SecureStream) -> None:
        logger.info("connection from %s", stream.remote_peer)
        while await stream.receive_some():
            pass

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            bound = await nursery.start(serve_secure, on_connection, listen, identity)
            for addr in bound:
                print(addr, flush=True)
            async for signum in signals:
                logger.info("received %s, shutting down", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break


def cmd_node(args: argparse.Namespace) -> int:
    identity = _identity(args)
    listen = args.listen or [Multiaddr.from_string(DEFAULT_LISTEN)]
    trio.run(_run_node, identity, listen)
    return 0


async def _dial(args: argparse.Namespace, identity: KeyPair) -> dict[str, object]:
    start = time.perf_counter()
    with trio.fail_after(args.timeout + 1):
        stream = await dial_secure(args.address, identity, handshake_timeout=args.timeout)
    elapsed = time.perf_counter() - start
    async with stream:
        return {
            "peer_id": str(stream.remote_peer),
            "address": str(args.address),
            "ms": elapsed * 1e3,
        }


def cmd_dial(args: argparse.Namespace) -> int:
    result = trio.run(_dial, args, _identity(args))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"secured connection to {result['peer_id']} in {result['ms']:.3f} ms")
    return 0


COMMANDS = {"id": cmd_id, "node": cmd_node, "dial": cmd_dial}


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return COMMANDS[args.command](args)
    except P2PChatError as exc:
        print(f"p2pchat: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except trio.TooSlowError:
        print("p2pchat: error: timed out", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
