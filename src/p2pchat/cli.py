"""The ``p2pchat`` command (also ``python -m p2pchat``).

Every failure a user can cause prints one line on stderr and exits non-zero; tracebacks are
reserved for bugs.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import trio

from . import __version__
from .datadir import load_or_create_identity, resolve_data_dir
from .errors import P2PChatError, ProtocolError
from .identity import KeyPair
from .multiaddr import Multiaddr, MultiaddrError
from .net.host import HostConfig, open_host
from .net.ping import open_ping

DEFAULT_LISTEN = "/ip4/127.0.0.1/tcp/0"
EXIT_USAGE = 2
EXIT_FAILURE = 1

logger = logging.getLogger("p2pchat.cli")


class UsageError(P2PChatError):
    """The command line asks for something that cannot be done."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake in one line."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _multiaddr(text: str) -> Multiaddr:
    try:
        return Multiaddr.from_string(text)
    except MultiaddrError as exc:
        raise argparse.ArgumentTypeError(f"invalid multiaddr {text!r}: {exc}") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def _add_common(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """Options accepted before or after the command (the command's copy has no default,
    so it overrides the global one only when given)."""
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None if defaults else argparse.SUPPRESS,
        help="where the node keeps its identity and data "
        "(default: $P2PCHAT_DATA_DIR, else $XDG_DATA_HOME/p2pchat)",
    )
    parser.add_argument(
        "--log-level",
        default="warning" if defaults else argparse.SUPPRESS,
        choices=["debug", "info", "warning", "error"],
        help="log verbosity on stderr (default: warning)",
    )


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="p2pchat",
        description="Ratified peer-to-peer group chat on a libp2p-compatible Trio stack.",
    )
    parser.add_argument("--version", action="version", version=f"p2pchat {__version__}")
    _add_common(parser, defaults=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    common = _Parser(add_help=False)
    _add_common(common, defaults=False)

    p_id = sub.add_parser(
        "id", parents=[common], help="print this node's peer ID (creating the identity)"
    )
    p_id.add_argument("--json", action="store_true", help="print a JSON object")

    p_node = sub.add_parser("node", parents=[common], help="run a node until SIGINT/SIGTERM")
    p_node.add_argument(
        "--listen",
        type=_multiaddr,
        action="append",
        metavar="MULTIADDR",
        help=f"address to listen on, repeatable (default: {DEFAULT_LISTEN})",
    )

    p_ping = sub.add_parser("ping", parents=[common], help="ping a node (libp2p /ipfs/ping/1.0.0)")
    p_ping.add_argument("address", type=_multiaddr, metavar="MULTIADDR", help="ends in /p2p/<id>")
    p_ping.add_argument("--count", type=_positive_int, default=5, help="pings (default: 5)")
    p_ping.add_argument(
        "--timeout", type=float, default=10.0, help="seconds per step (default: 10)"
    )
    p_ping.add_argument("--json", action="store_true", help="print one JSON object per line")
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
    config = HostConfig(listen=tuple(listen))
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_host(identity, config) as host:
            for addr in host.addrs:
                print(addr, flush=True)
            async for signum in signals:
                logger.info("received %s, shutting down", signal.Signals(signum).name)
                break


def cmd_node(args: argparse.Namespace) -> int:
    identity = _identity(args)
    listen = args.listen or [Multiaddr.from_string(DEFAULT_LISTEN)]
    trio.run(_run_node, identity, listen)
    return 0


async def _ping(args: argparse.Namespace, identity: KeyPair) -> list[float]:
    addr: Multiaddr = args.address
    if addr.peer_id is None:
        raise UsageError(f"the address must end in /p2p/<peer id>: {addr}")
    config = HostConfig(
        listen=(),
        dial_timeout=args.timeout,
        handshake_timeout=args.timeout,
        negotiate_timeout=args.timeout,
        identify_on_connect=False,
    )
    rtts: list[float] = []
    async with open_host(identity, config) as host:
        with trio.fail_after(args.timeout * 3):
            pinger_cm = open_ping(host, addr, echo_timeout=args.timeout)
            async with pinger_cm as pinger:
                for seq in range(args.count):
                    rtt = await pinger.ping()
                    rtts.append(rtt)
                    ms = rtt * 1e3
                    if args.json:
                        print(json.dumps({"seq": seq + 1, "peer_id": str(addr.peer_id), "ms": ms}))
                    else:
                        print(
                            f"pong from {addr.peer_id}: seq={seq + 1} time={ms:.3f} ms", flush=True
                        )
    return rtts


def cmd_ping(args: argparse.Namespace) -> int:
    rtts = [rtt * 1e3 for rtt in trio.run(_ping, args, _identity(args))]
    summary = {"min": min(rtts), "median": statistics.median(rtts), "max": max(rtts)}
    if args.json:
        print(json.dumps({"count": len(rtts), **{f"{k}_ms": v for k, v in summary.items()}}))
    else:
        print(
            f"{len(rtts)} pings: min {summary['min']:.3f} ms, median {summary['median']:.3f} ms, "
            f"max {summary['max']:.3f} ms"
        )
    return 0


COMMANDS = {"id": cmd_id, "node": cmd_node, "ping": cmd_ping}


def _sole_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one error inside nested exception groups, or the group itself if there are more."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


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
        try:
            return COMMANDS[args.command](args)
        except BaseExceptionGroup as group:
            raise _sole_error(group) from group
    except P2PChatError as exc:
        print(f"p2pchat: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except trio.TooSlowError:
        print("p2pchat: error: timed out", file=sys.stderr)
        return EXIT_FAILURE
    except ProtocolError as exc:
        print(f"p2pchat: error: the peer broke the protocol: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        print(f"p2pchat: error: connection lost: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
