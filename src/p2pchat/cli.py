"""The ``p2pchat`` command (also ``python -m p2pchat``); normative text: specs/cli.md.

``p2pchat node`` runs a node until SIGINT/SIGTERM; the other commands act on it through its
control socket (specs/control.md), except ``init``, ``id``, ``demo`` and a ``ping`` with no node
running, which work alone. Every failure a user can cause prints one line on stderr and exits
non-zero; tracebacks are reserved for bugs.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import mimetypes
import os
import re
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn

import attrs
import trio

from . import __version__
from .app.config import Config, load_config, write_config_template
from .app.control import NodeNotRunningError, open_control
from .app.datadir import config_path, ensure_data_dir, load_or_create_identity, resolve_data_dir
from .app.logsetup import LOG_FORMATS, LOG_LEVELS, configure_logging
from .discovery.bootstrap import BootstrapError, parse_bootstrap_entry
from .errors import DecodeError, P2PChatError
from .identity import KeyPair, PeerID
from .multiaddr import Multiaddr, MultiaddrError
from .net.tcp import TransportError

if TYPE_CHECKING:
    from .app.daemon import Daemon, NodeOptions

# The node's modules (chat, crypto, the Host) load only in the commands that run a node, so
# the commands that talk to a running node start fast.

EXIT_USAGE: Final = 2
EXIT_FAILURE: Final = 1
EXIT_INTERRUPTED: Final = 130

logger = logging.getLogger("p2pchat.cli")


class UsageError(P2PChatError):
    """The command line asks for something that cannot be done."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake in one line."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# -- argument types ------------------------------------------------------------------------------


def _multiaddr(text: str) -> Multiaddr:
    try:
        return Multiaddr.from_string(text)
    except MultiaddrError as exc:
        raise argparse.ArgumentTypeError(f"invalid multiaddr {text!r}: {exc}") from None


def _bootstrap(text: str) -> Multiaddr:
    try:
        return parse_bootstrap_entry(text)
    except BootstrapError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _peer(text: str) -> str:
    """A peer ID or a multiaddr ending in ``/p2p/<id>`` (checked here, sent as text)."""
    if text.startswith("/"):
        addr = _multiaddr(text)
        try:
            peer = addr.peer_id
        except DecodeError as exc:
            raise argparse.ArgumentTypeError(f"invalid peer id in {text!r}: {exc}") from None
        if peer is None:
            raise argparse.ArgumentTypeError(f"the address must end in /p2p/<peer id>: {text}")
        return text
    try:
        PeerID.from_string(text)
    except DecodeError:
        raise argparse.ArgumentTypeError(f"not a peer id or a multiaddr: {text!r}") from None
    return text


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


_SIZE: Final = re.compile(r"^\s*(\d+)\s*(B|KIB|KB|K|MIB|MB|M|GIB|GB|G)?\s*$", re.IGNORECASE)
_UNITS: Final = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def _byte_size(text: str) -> int:
    """A byte count: ``1000``, ``64KiB``, ``10MiB``, ``1GiB`` (K, M and G are powers of 1024)."""
    match = _SIZE.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 1000, 64KiB, 10MiB)")
    return int(match.group(1)) * _UNITS[(match.group(2) or "")[:1].upper()]


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"must be in (0, 3600] seconds: {value}")
    return value


# -- the parser ----------------------------------------------------------------------------------


def _add_common(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """Options accepted before or after the command (the command's copy has no default,
    so it overrides the global one only when given)."""
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None if defaults else argparse.SUPPRESS,
        help="where the node keeps everything "
        "(default: $P2PCHAT_DATA_DIR, else $XDG_DATA_HOME/p2pchat)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None if defaults else argparse.SUPPRESS,
        help="configuration file (default: config.toml in the data dir)",
    )
    parser.add_argument(
        "--log-level",
        default=None if defaults else argparse.SUPPRESS,
        choices=LOG_LEVELS,
        help="log verbosity on stderr (default: warning, or [log] level)",
    )
    parser.add_argument(
        "--log-format",
        default=None if defaults else argparse.SUPPRESS,
        choices=LOG_FORMATS,
        help="log lines as text or JSON objects (default: text, or [log] format)",
    )


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="p2pchat",
        description="Ratified peer-to-peer group chat on a libp2p-compatible Trio stack.",
        epilog="Start with: p2pchat init, then p2pchat node (see specs/cli.md).",
    )
    parser.add_argument("--version", action="version", version=f"p2pchat {__version__}")
    _add_common(parser, defaults=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    common = _Parser(add_help=False)
    _add_common(common, defaults=False)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], help=help_text, description=help_text)

    p = command("init", "create the data dir, the identity and a commented config file")
    p.add_argument("--force", action="store_true", help="rewrite an existing config file")

    p = command("id", "print this node's peer ID (creating the identity)")
    _json_flag(p)

    p = command("node", "run a node until SIGINT/SIGTERM")
    p.add_argument(
        "--listen",
        type=_multiaddr,
        action="append",
        metavar="MULTIADDR",
        help="address to listen on, repeatable (replaces [node] listen)",
    )
    p.add_argument(
        "--bootstrap",
        type=_bootstrap,
        action="append",
        metavar="MULTIADDR",
        help="peer to stay connected to, repeatable (replaces [discovery] bootstrap)",
    )
    p.add_argument(
        "--mdns",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="find peers with mDNS (default: [discovery] mdns, on)",
    )
    p.add_argument("--mdns-interface", metavar="NAME", help="interface for mDNS (default: lo)")
    p.add_argument(
        "--enable-perf",
        action="store_true",
        default=None,
        help="serve /perf/1.0.0 so peers can measure throughput (default: [perf] enabled)",
    )

    p = command("status", "show the running node: peer ID, addresses, peers, groups")
    _json_flag(p)
    command("stop", "stop the running node")

    p = command("peers", "list connected and known peers")
    _json_flag(p)
    p = command("connect", "connect the running node to a peer")
    p.add_argument("peer", type=_peer, metavar="MULTIADDR", help="ends in /p2p/<peer id>")

    p = command("ping", "ping a peer (libp2p /ipfs/ping/1.0.0)")
    p.add_argument(
        "peer",
        type=_peer,
        metavar="PEER",
        help="a multiaddr ending in /p2p/<id> (or a peer ID the running node knows)",
    )
    p.add_argument("--count", type=_positive_int, default=5, help="pings (default: 5)")
    p.add_argument("--timeout", type=_seconds, default=10.0, help="seconds per step (default: 10)")
    p.add_argument("--json", action="store_true", help="print one JSON object per line")

    p = command("perf", "measure throughput to a peer that serves /perf/1.0.0 (libp2p perf)")
    p.add_argument("peer", type=_peer, metavar="MULTIADDR", help="ends in /p2p/<peer id>")
    p.add_argument("--upload", type=_byte_size, default="10MiB", help="bytes to send (10MiB)")
    p.add_argument("--download", type=_byte_size, default="10MiB", help="bytes to ask (10MiB)")
    p.add_argument("--iterations", type=_positive_int, default=1, help="exchanges (default: 1)")
    p.add_argument(
        "--fresh", action="store_true", help="a new connection for every exchange (as the runner)"
    )
    p.add_argument(
        "--timeout", type=_seconds, default=120.0, help="seconds for it all (default: 120)"
    )
    p.add_argument("--json", action="store_true", help="print the perf runner's JSON records")

    p = command("group", "create, join and manage groups")
    groups = p.add_subparsers(dest="group_command", metavar="ACTION", parser_class=_Parser)
    groups.required = True

    def group_command(name: str, help_text: str) -> argparse.ArgumentParser:
        return groups.add_parser(name, parents=[common], help=help_text, description=help_text)

    g = group_command("create", "create a group with this node as owner and ratifier")
    g.add_argument("name", help="the group's name")
    g.add_argument("--quorum", type=_positive_int, help="votes a message needs (default: majority)")
    g.add_argument(
        "--history",
        choices=["all", "since_join"],
        default="all",
        help="what new members may read (default: all)",
    )
    _json_flag(g)
    g = group_command("invite", "add a peer to a group (owner only)")
    g.add_argument("group", help="group id, unique id prefix, or name")
    g.add_argument("peer", type=_peer, help="peer ID, or multiaddr ending in /p2p/<id>")
    g.add_argument(
        "role", nargs="?", default="user", choices=["ratifier", "user", "viewer"], help="(user)"
    )
    _json_flag(g)
    g = group_command("join", "join a group this node was invited to")
    g.add_argument("group", help="the group id (64 hex digits)")
    g.add_argument("via", type=_peer, help="a member: peer ID or multiaddr ending in /p2p/<id>")
    _json_flag(g)
    g = group_command("remove", "remove a member from a group (owner only)")
    g.add_argument("group", help="group id, unique id prefix, or name")
    g.add_argument("peer", type=_peer, help="the member's peer ID")
    g = group_command("list", "list this node's groups")
    _json_flag(g)
    g = group_command("roster", "show a group's members and roles")
    g.add_argument("group", help="group id, unique id prefix, or name")
    _json_flag(g)

    p = command("send", "send a message (text, markdown, or a file) and wait for ratification")
    p.add_argument("group", help="group id, unique id prefix, or name")
    p.add_argument("text", nargs="*", help="the message ('-' reads it from stdin)")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--markdown", action="store_true", help="the text is Markdown")
    kind.add_argument("--file", type=Path, metavar="PATH", help="send a file (images show inline)")
    p.add_argument(
        "--no-wait",
        action="store_true",
        help="return once queued, without waiting for ratification",
    )
    _json_flag(p)

    p = command("history", "print a group's ratified messages in display order")
    p.add_argument("group", help="group id, unique id prefix, or name")
    p.add_argument("--limit", type=_positive_int, default=1000, help="newest N (default: 1000)")
    _json_flag(p)

    p = command("get", "save the content of a file or image message")
    p.add_argument("group", help="group id, unique id prefix, or name")
    p.add_argument("hash", help="the message hash, or a unique prefix of it")
    p.add_argument("-o", "--output", type=Path, help="where to write it ('-' for stdout)")

    p = command("chat", "interactive chat: type lines to send them, see everyone's messages")
    p.add_argument("group", help="group id, unique id prefix, or name")
    p.add_argument("--last", type=_positive_int, default=20, help="history lines shown first")
    p.add_argument(
        "--wait",
        type=_seconds,
        default=15.0,
        help="at end of input, seconds to wait for our messages' ratification (default: 15)",
    )

    command("demo", "run three nodes on 127.0.0.1 and show ratification and catch-up")
    return parser


# -- output ---------------------------------------------------------------------------------------


def _print_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False), flush=True)


_CONTROL_CHARS: Final = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _clean(text: str) -> str:
    """Text from a peer, safe for a terminal (no escape sequences or other control bytes)."""
    return _CONTROL_CHARS.sub("?", text)


def short_peer(peer_id: str) -> str:
    """A peer ID shortened for chat lines: ``12D3KooW..xY7Qp2``."""
    return f"{peer_id[:8]}..{peer_id[-6:]}" if len(peer_id) > 16 else peer_id


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    if count < 1024 * 1024:
        return f"{count / 1024:.1f} KiB"
    return f"{count / 1024 / 1024:.1f} MiB"


def message_body(message: dict[str, Any]) -> str:
    """What a message shows in a terminal."""
    kind = message["type"]
    if not message.get("readable"):
        return f"[encrypted: this node holds no key for epoch {message['epoch']}]"
    if kind in ("text", "markdown"):
        text = _clean(message.get("text") or "").replace("\n", "\n    ")
        return text if kind == "text" else f"(markdown) {text}"
    if kind == "roster":
        roster = message.get("roster")
        if not roster:
            return "[roster change]"
        return (
            f"[roster: epoch {roster['epoch']}, {len(roster['members'])} members, "
            f"quorum {roster['quorum']}]"
        )
    return (
        f"[{kind} {_clean(message['mime'])}, {_size(message.get('size') or 0)}; "
        f"save it with: p2pchat get {message['group_id'][:12]} {message['message_hash'][:12]}]"
    )


def format_message(message: dict[str, Any], *, date: bool, status: bool = False) -> str:
    """One message as a line (or a few, for multi-line text)."""
    when = time.localtime(message["time_stamp"] / 1000)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S", when)
    who = "you" if message.get("from_me") else short_peer(message["author"])
    line = f"[{stamp}] {who}: {message_body(message)}"
    if status:
        line += "  (ratified)" if message["ratified"] else "  (pending)"
    return line


# -- commands that work alone --------------------------------------------------------------------


def _data_dir(args: argparse.Namespace) -> Path:
    return resolve_data_dir(args.data_dir)


def _identity(args: argparse.Namespace) -> KeyPair:
    return load_or_create_identity(_data_dir(args))


def _config(args: argparse.Namespace) -> Config:
    if args.config is not None:
        return load_config(args.config, required=True)
    return load_config(config_path(_data_dir(args)))


def cmd_init(args: argparse.Namespace) -> int:
    data_dir = ensure_data_dir(_data_dir(args))
    path = args.config if args.config is not None else config_path(data_dir)
    existed = (data_dir / "identity.key").exists()
    pair = load_or_create_identity(data_dir)
    write_config_template(path, overwrite=args.force)
    flag = "" if args.data_dir is None else f" --data-dir {args.data_dir}"
    print(f"data dir: {data_dir}")
    print(f"config:   {path}")
    print(f"peer id:  {pair.peer_id}{' (existing identity)' if existed else ''}")
    print(f"start the node with: p2pchat{flag} node")
    return 0


def cmd_id(args: argparse.Namespace) -> int:
    pair = _identity(args)
    peer = pair.peer_id
    if args.json:
        addrs: list[str] = []
        try:
            status = trio.run(_call, args, "status", {})
            addrs = list(status["addrs"])
        except NodeNotRunningError:
            pass
        _print_json({"peer_id": str(peer), "cid": peer.to_cid(), "addrs": addrs})
    else:
        print(peer)
    return 0


async def _ping_alone(args: argparse.Namespace, identity: KeyPair) -> list[float]:
    addr = Multiaddr.from_string(args.peer) if args.peer.startswith("/") else None
    if addr is None:
        raise UsageError(
            f"no node is running on {_data_dir(args)}: give the peer's multiaddr "
            "(ending in /p2p/<peer id>), or start a node that knows it"
        )
    from .net.host import HostConfig, open_host
    from .net.ping import open_ping

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
            async with open_ping(host, addr, echo_timeout=args.timeout) as pinger:
                for seq in range(args.count):
                    rtt = await pinger.ping()
                    rtts.append(rtt * 1e3)
                    _print_pong(args, str(addr.peer_id), seq + 1, rtt * 1e3)
    return rtts


def _print_pong(args: argparse.Namespace, peer: str, seq: int, ms: float) -> None:
    if args.json:
        _print_json({"seq": seq, "peer_id": peer, "ms": ms})
    else:
        print(f"pong from {peer}: seq={seq} time={ms:.3f} ms", flush=True)


async def _ping(args: argparse.Namespace) -> list[float]:
    try:
        async with open_control(_data_dir(args)) as client:
            rtts: list[float] = []
            for seq in range(args.count):
                answer = await client.call("ping", peer=args.peer, timeout=args.timeout)
                rtts.append(float(answer["ms"]))
                _print_pong(args, answer["peer_id"], seq + 1, rtts[-1])
            return rtts
    except NodeNotRunningError:
        pass
    identity = await trio.to_thread.run_sync(_identity, args)
    return await _ping_alone(args, identity)


def cmd_ping(args: argparse.Namespace) -> int:
    rtts = trio.run(_ping, args)
    summary = {"min": min(rtts), "median": statistics.median(rtts), "max": max(rtts)}
    if args.json:
        _print_json({"count": len(rtts), **{f"{k}_ms": v for k, v in summary.items()}})
    else:
        print(
            f"{len(rtts)} pings: min {summary['min']:.3f} ms, median {summary['median']:.3f} ms, "
            f"max {summary['max']:.3f} ms"
        )
    return 0


async def _perf(args: argparse.Namespace, identity: KeyPair) -> None:
    from .net.host import HostConfig, open_host
    from .net.perf import (
        PerfProgress,
        format_result,
        format_summary,
        measure,
        progress_json,
        result_json,
        summarize,
        summary_json,
    )

    addr = Multiaddr.from_string(args.peer)
    if addr.peer_id is None:  # pragma: no cover - the argument type checked it
        raise UsageError(f"the address must end in /p2p/<peer id>: {addr}")

    def progress(update: PerfProgress) -> None:
        if args.json:
            _print_json(progress_json(update))

    async with open_host(identity, HostConfig(listen=(), identify_on_connect=False)) as host:
        with trio.fail_after(args.timeout):
            results = await measure(
                host,
                addr,
                upload=args.upload,
                download=args.download,
                iterations=args.iterations,
                fresh_connection=args.fresh,
                progress=progress,
            )
    for result in results:
        if args.json:
            _print_json(result_json(result))
        else:
            print(format_result(result))
    if len(results) > 1:
        summary = summarize(results)
        if args.json:
            _print_json(summary_json(summary))
        else:
            print(format_summary(summary))


def cmd_perf(args: argparse.Namespace) -> int:
    if not args.peer.startswith("/"):
        raise UsageError("perf needs the peer's multiaddr, ending in /p2p/<peer id>")
    trio.run(_perf, args, _identity(args))
    return 0


# -- the node ------------------------------------------------------------------------------------


def _node_options(args: argparse.Namespace, config: Config) -> NodeOptions:
    from .app.daemon import NodeOptions

    options = NodeOptions.from_config(_data_dir(args), config)
    changes: dict[str, Any] = {}
    if args.listen:
        changes["listen"] = tuple(args.listen)
    if args.bootstrap:
        changes["bootstrap"] = tuple(args.bootstrap)
    if args.mdns is not None:
        changes["mdns"] = args.mdns
    if args.mdns_interface:
        changes["mdns_interface"] = args.mdns_interface
    if args.enable_perf:
        changes["perf"] = True
    return attrs.evolve(options, **changes)


async def _run_node(options: NodeOptions) -> None:
    from .app.daemon import open_daemon

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_daemon(options) as daemon:
            for addr in daemon.host.addrs:
                print(addr, flush=True)
            logger.info("node %s running on %s", daemon.peer_id, options.data_dir)
            async with trio.open_nursery() as nursery:

                async def on_signal() -> None:
                    async for signum in signals:
                        logger.info("received %s, shutting down", signal.Signals(signum).name)
                        break
                    nursery.cancel_scope.cancel()

                async def on_stop() -> None:
                    await daemon.stop_requested.wait()
                    logger.info("stop requested, shutting down")
                    nursery.cancel_scope.cancel()

                nursery.start_soon(on_signal)
                nursery.start_soon(on_stop)


def cmd_node(args: argparse.Namespace) -> int:
    config = _config(args)
    configure_logging(args.log_level or config.log_level, args.log_format or config.log_format)
    options = _node_options(args, config)
    trio.run(_run_node, options)
    return 0


# -- commands that act on the running node -------------------------------------------------------


async def _call(args: argparse.Namespace, op: str, request: dict[str, Any]) -> Any:
    async with open_control(_data_dir(args)) as client:
        return await client.call(op, **request)


def _run_call(args: argparse.Namespace, op: str, **request: Any) -> Any:
    return trio.run(_call, args, op, request)


def cmd_status(args: argparse.Namespace) -> int:
    status = _run_call(args, "status")
    if args.json:
        _print_json(status)
        return 0
    print(f"peer id:   {status['peer_id']}")
    for addr in status["addrs"]:
        print(f"listening: {addr}")
    print(f"data dir:  {status['data_dir']} (pid {status['pid']})")
    print(f"peers:     {status['connected']} connected")
    print(f"groups:    {status['groups']}")
    print(f"mdns:      {'on' if status['mdns'] else 'off'}")
    for entry in status["bootstrap"]:
        print(f"bootstrap: {entry}")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    _run_call(args, "stop")
    print(f"stopping the node on {_data_dir(args)}")
    return 0


def cmd_peers(args: argparse.Namespace) -> int:
    peers = _run_call(args, "peers")
    if args.json:
        _print_json(peers)
        return 0
    if not peers["connected"] and not peers["known"]:
        print("no peers yet (connect with: p2pchat connect MULTIADDR)")
    for peer in peers["connected"]:
        print(f"{peer['peer_id']}  {peer['addr']}  {peer['direction']}  {peer['agent']}".rstrip())
    for peer in peers["known"]:
        seen = time.strftime("%Y-%m-%d %H:%M", time.localtime(peer["last_seen"] / 1000))
        addr = peer["addrs"][0] if peer["addrs"] else "-"
        print(f"{peer['peer_id']}  {addr}  not connected (last seen {seen})")
    return 0


def cmd_connect(args: argparse.Namespace) -> int:
    answer = _run_call(args, "connect", peer=args.peer)
    print(f"connected to {answer['peer_id']}")
    return 0


def cmd_group(args: argparse.Namespace) -> int:
    handler: Callable[[argparse.Namespace], int] = GROUP_COMMANDS[args.group_command]
    return handler(args)


def cmd_group_create(args: argparse.Namespace) -> int:
    request: dict[str, Any] = {"name": args.name, "history": args.history}
    if args.quorum is not None:
        request["quorum"] = args.quorum
    answer = _run_call(args, "group.create", **request)
    if args.json:
        _print_json(answer)
    else:
        print(answer["group_id"])
    return 0


def cmd_group_invite(args: argparse.Namespace) -> int:
    answer = _run_call(args, "group.invite", group=args.group, peer=args.peer, role=args.role)
    if args.json:
        _print_json(answer)
        return 0
    print(
        f"invited {answer['peer_id']} as {answer['role']} (the group is at epoch {answer['epoch']})"
    )
    via = answer["owner_addrs"][0] if answer["owner_addrs"] else "<this node's address>"
    print(f"they join with: p2pchat group join {answer['group_id']} {via}")
    return 0


def cmd_group_join(args: argparse.Namespace) -> int:
    answer = _run_call(args, "group.join", group=args.group, via=args.via)
    if args.json:
        _print_json(answer)
    else:
        print(f"joined {_clean(answer['name'])} ({answer['group_id']}) at epoch {answer['epoch']}")
    return 0


def cmd_group_remove(args: argparse.Namespace) -> int:
    answer = _run_call(args, "group.remove", group=args.group, peer=args.peer)
    print(f"removed {answer['peer_id']}")
    return 0


def cmd_group_list(args: argparse.Namespace) -> int:
    groups = _run_call(args, "group.list")
    if args.json:
        _print_json(groups)
        return 0
    if not groups:
        print("no groups yet (create one with: p2pchat group create NAME)")
    for g in groups:
        print(
            f"{g['group_id']}  {_clean(g['name'])}  {g['role']}  epoch {g['epoch']}  "
            f"{g['members']} members, quorum {g['quorum']} of {g['ratifiers']} ratifiers"
        )
    return 0


def cmd_group_roster(args: argparse.Namespace) -> int:
    roster = _run_call(args, "group.roster", group=args.group)
    if args.json:
        _print_json(roster)
        return 0
    print(
        f"{_clean(roster['name'])} ({roster['group_id']}): epoch {roster['epoch']}, "
        f"quorum {roster['quorum']} of {roster['ratifiers']} ratifiers, history {roster['history']}"
    )
    for m in roster["member_list"]:
        notes = [n for n, on in (("owner", m["owner"]), ("you", m["me"])) if on]
        if m["connected"]:
            notes.append("connected")
        print(f"{m['peer_id']}  {m['role']:<8}  {', '.join(notes)}".rstrip())
    return 0


GROUP_COMMANDS: Final[dict[str, Callable[[argparse.Namespace], int]]] = {
    "create": cmd_group_create,
    "invite": cmd_group_invite,
    "join": cmd_group_join,
    "remove": cmd_group_remove,
    "list": cmd_group_list,
    "roster": cmd_group_roster,
}


def _file_request(path: Path) -> dict[str, Any]:
    from .chat.core.crypto import MAX_PLAINTEXT

    try:
        size = path.stat().st_size
        if size > MAX_PLAINTEXT:
            raise UsageError(
                f"{path} is {_size(size)}; a message holds at most {_size(MAX_PLAINTEXT)} "
                "for now (larger artifacts come later)"
            )
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_PLAINTEXT:
        raise UsageError(f"{path} grew past {_size(MAX_PLAINTEXT)} while being read")
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return {
        "type": "image" if mime.startswith("image/") else "file",
        "mime": mime,
        "data_b64": base64.b64encode(data).decode("ascii"),
    }


def cmd_send(args: argparse.Namespace) -> int:
    request: dict[str, Any]
    if args.file is not None:
        if args.text:
            raise UsageError("give either a text or --file, not both")
        request = _file_request(args.file)
    else:
        if not args.text:
            raise UsageError("nothing to send: give a text, '-' to read stdin, or --file PATH")
        text = sys.stdin.read() if args.text == ["-"] else " ".join(args.text)
        if not text.strip():
            raise UsageError("nothing to send: the text is empty")
        request = {"type": "markdown" if args.markdown else "text", "text": text}
    answer = _run_call(args, "send", group=args.group, wait=not args.no_wait, **request)
    if args.json:
        _print_json(answer)
    elif answer["status"] == "ratified":
        print(f"ratified {answer['message_hash']}")
    else:
        print(f"pending {answer['message_hash']}")
        if not args.no_wait:
            print(
                "p2pchat: no quorum of ratifiers answered in time; the message stays queued "
                "on the node and goes through when they are reachable",
                file=sys.stderr,
            )
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    messages = _run_call(args, "history", group=args.group, limit=args.limit)
    if args.json:
        _print_json(messages)
        return 0
    for message in messages:
        print(format_message(message, date=True))
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    message = _run_call(args, "message", group=args.group, hash=args.hash)
    if "data_b64" in message:
        data = base64.b64decode(message["data_b64"])
    elif "text" in message:
        data = message["text"].encode()
    else:
        raise UsageError("that message has no content this node can read")
    if args.output is not None and str(args.output) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return 0
    output = args.output
    if output is None:
        mime = message["mime"].split(";")[0].strip()
        ext = mimetypes.guess_extension(mime) or ".bin"
        output = Path(f"{message['message_hash'][:12]}{ext}")
    try:
        with open(output, "xb") as fh:
            fh.write(data)
    except FileExistsError:
        raise UsageError(f"{output} exists; choose another name with -o PATH") from None
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror}") from None
    print(f"saved {_size(len(data))} ({message['mime']}) to {output}")
    return 0


# -- chat ----------------------------------------------------------------------------------------


async def _chat(args: argparse.Namespace) -> None:
    data_dir = _data_dir(args)
    async with open_control(data_dir) as events, open_control(data_dir) as control:
        await events.start_stream("subscribe", group=args.group)
        first = await events.next_event()
        if first is None or first.get("kind") != "subscribed":
            raise UsageError("the node did not start the subscription")
        group_id = first["group_id"]
        print(
            f"chat in {_clean(first['name'])} ({group_id[:16]}): type a line and press Enter to "
            "send it; Ctrl-D leaves",
            flush=True,
        )
        shown: set[str] = set()
        for message in await control.call("history", group=group_id, limit=args.last):
            print(format_message(message, date=False, status=True), flush=True)
            shown.add(message["message_hash"])
        mine_pending: set[str] = set()
        ratified: set[str] = set()
        settled = trio.Event()

        async def receive() -> None:
            nonlocal settled
            while (event := await events.next_event()) is not None:
                if event.get("kind") != "message":
                    continue
                message = event["message"]
                digest = message["message_hash"]
                if message["ratified"]:
                    if digest in shown:
                        continue
                    shown.add(digest)
                    ratified.add(digest)
                    mine_pending.discard(digest)
                    if not mine_pending:
                        settled.set()
                print(format_message(message, date=False, status=True), flush=True)

        async def send_lines(done: trio.CancelScope) -> None:
            nonlocal settled
            while line := await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True):
                text = line.rstrip("\r\n")
                if not text.strip():
                    continue
                answer = await control.call("send", group=group_id, text=text, wait=False)
                if answer["message_hash"] not in ratified:
                    mine_pending.add(answer["message_hash"])
                    settled = trio.Event()
            if mine_pending:  # end of input: give our last messages a moment to be ratified
                with trio.move_on_after(args.wait):
                    await settled.wait()
            done.cancel()

        async def interrupted(done: trio.CancelScope) -> None:
            async for _ in signals:  # Ctrl-C leaves at once, without a traceback
                print(file=sys.stderr)
                done.cancel()

        with trio.open_signal_receiver(signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(receive)
                nursery.start_soon(send_lines, nursery.cancel_scope)
                nursery.start_soon(interrupted, nursery.cancel_scope)
        if mine_pending:
            print(
                f"p2pchat: {len(mine_pending)} message(s) still pending; they stay queued "
                "on the node and go through when enough ratifiers are reachable",
                file=sys.stderr,
            )


def cmd_chat(args: argparse.Namespace) -> int:
    trio.run(_chat, args)
    return 0


# -- demo ----------------------------------------------------------------------------------------


DEMO_TIMEOUT: Final = 90.0


class _DemoNode:
    """One in-process node of the demo, restartable on the same data dir and port."""

    def __init__(self, name: str, root: Path, nursery: trio.Nursery) -> None:
        self.name = name
        self.data_dir = root / name
        self._nursery = nursery
        self.port = 0
        self.bootstrap: tuple[Multiaddr, ...] = ()
        self.daemon: Daemon | None = None
        self._scope: trio.CancelScope | None = None
        self._stopped = trio.Event()

    @property
    def node(self) -> Daemon:
        assert self.daemon is not None
        return self.daemon

    async def _run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        from .app.daemon import NodeOptions, open_daemon
        from .chat.node import ChatConfig

        options = NodeOptions(
            data_dir=self.data_dir,
            listen=(Multiaddr.from_string(f"/ip4/127.0.0.1/tcp/{self.port}"),),
            bootstrap=self.bootstrap,
            chat=ChatConfig(query_timeout=3.0, retry_initial=0.2, retry_max=2.0),
            control=False,
        )
        self._stopped = trio.Event()
        try:
            with trio.CancelScope() as self._scope:
                async with open_daemon(options) as daemon:
                    self.daemon = daemon
                    self.port = int(daemon.host.listen_addrs[0].value_for("tcp") or 0)
                    task_status.started()
                    await trio.sleep_forever()
        finally:
            self.daemon = None
            self._stopped.set()

    async def start(self) -> None:
        await self._nursery.start(self._run)

    async def stop(self) -> None:
        assert self._scope is not None
        self._scope.cancel()
        await self._stopped.wait()


def _say(text: str = "") -> None:
    print(text, flush=True)


async def _demo_send(alice: _DemoNode, group_id: bytes, text: str) -> bytes:
    node = alice.node
    _say(f'    {alice.name} sends "{text}"')
    async with node.chat.subscribe(group_id) as updates:
        start = trio.current_time()
        message_hash = await node.chat.send(group_id, text, wait=False)
        async for update in updates:
            if update.message_hash != message_hash:
                continue
            if not update.ratified:
                _say(f"      {alice.name}: pending (stored, asking the ratifiers for votes)")
                continue
            ms = (trio.current_time() - start) * 1e3
            votes = await node._votes(group_id, message_hash)
            roster = node.chat.group_state(group_id).current_roster
            _say(
                f"      {alice.name}: ratified in {ms:.0f} ms, certificate of {votes} votes "
                f"(quorum {roster.quorum} of {len(roster.ratifiers)} ratifiers)"
            )
            break
    return message_hash


async def _demo(root: Path) -> None:
    async with trio.open_nursery() as nursery:
        alice, bob, carol = (_DemoNode(n, root, nursery) for n in ("alice", "bob", "carol"))
        nodes = (alice, bob, carol)
        _say("[1] three nodes start on 127.0.0.1, each with its own data dir and identity")
        await alice.start()
        alice_addr = alice.node.host.addrs[0]
        bob.bootstrap = carol.bootstrap = (alice_addr,)
        await bob.start()
        await carol.start()
        names = {str(n.node.peer_id): n.name for n in nodes}
        for n in nodes:
            _say(f"    {n.name:<6} {n.node.host.addrs[0]}")
        _say("    bob and carol have alice's address as a bootstrap entry")
        with trio.fail_after(10):
            for n in (bob, carol):  # joins the dial their bootstrap task started
                await n.node.host.connect(alice.node.peer_id)
        _say("    alice is connected to bob and carol")

        _say()
        _say('[2] alice creates the group "demo" and invites bob and carol as ratifiers')
        group_id = await alice.node.chat.create_group("demo")
        _say(f"    group id {group_id.hex()}")
        for n in (bob, carol):
            await alice.node.chat.invite(group_id, n.node.peer_id, "ratifier")
            await n.node.chat.join(group_id, alice.node.peer_id)
            roster = alice.node.chat.group_state(group_id).current_roster
            _say(
                f"    {n.name} joined: epoch {roster.epoch}, {len(roster.ratifiers)} ratifiers, "
                f"quorum {roster.quorum}"
            )

        _say()
        _say("[3] a message counts as sent only once a quorum of ratifiers signed for it")
        first = await _demo_send(alice, group_id, "hello from alice")
        for n in (bob, carol):
            with trio.fail_after(10):
                await n.node.chat.wait_ratified(group_id, first)
            _say(f"      {n.name} received it, with its certificate")

        _say()
        _say("[4] carol stops; alice and bob are still a quorum (2 of 3)")
        await carol.stop()
        away = [
            await _demo_send(alice, group_id, text)
            for text in ("carol is away", "she will catch up when she is back")
        ]

        _say()
        _say("[5] carol restarts on the same data dir: same identity, groups and history;")
        _say("    she redials the peers she knew and syncs what she missed")
        await carol.start()
        with trio.fail_after(20):
            for message_hash in away:
                await carol.node.chat.wait_ratified(group_id, message_hash)
        for message in await carol.node.chat.history(group_id):
            if message.message_type == "roster":
                continue
            who = names.get(str(message.author), short_peer(str(message.author)))
            _say(f"    carol's history: {who}: {message.text}")

        histories = [[m.message_hash for m in await n.node.chat.history(group_id)] for n in nodes]
        same = all(h == histories[0] for h in histories)
        _say()
        _say(
            f"[6] done: {len(histories[0])} messages (roster changes included), "
            + ("in the same order on all three nodes" if same else "BUT THE ORDERS DIFFER")
        )
        nursery.cancel_scope.cancel()


def cmd_demo(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="p2pchat-demo-") as root:
        _say(f"p2pchat demo (data dirs under {root}, removed at the end)")
        _say()

        async def bounded() -> None:
            with trio.fail_after(DEMO_TIMEOUT):
                await _demo(Path(root))

        trio.run(bounded)
    return 0


# -- main ----------------------------------------------------------------------------------------


COMMANDS: Final[dict[str, Callable[[argparse.Namespace], int]]] = {
    "init": cmd_init,
    "id": cmd_id,
    "node": cmd_node,
    "status": cmd_status,
    "stop": cmd_stop,
    "peers": cmd_peers,
    "connect": cmd_connect,
    "ping": cmd_ping,
    "perf": cmd_perf,
    "group": cmd_group,
    "send": cmd_send,
    "history": cmd_history,
    "get": cmd_get,
    "chat": cmd_chat,
    "demo": cmd_demo,
}


def _sole_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one error inside nested exception groups, or the group itself if there are more."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def _explain(exc: P2PChatError) -> str:
    """The one line for a failure, with a way out where there is one."""
    text = str(exc)
    if isinstance(exc, TransportError) and "address already in use" in text:
        text += (
            " (another program, or another p2pchat node, uses that port: choose another with "
            "--listen, e.g. --listen /ip4/127.0.0.1/tcp/0 for any free port)"
        )
    return text.replace("\n", " ")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse leaves ``send GROUP --markdown TEXT...`` words after an option unparsed.
    if extra and args.command == "send" and all(w == "-" or not w.startswith("-") for w in extra):
        args.text = [*args.text, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    configure_logging(args.log_level or "warning", args.log_format or "text")
    try:
        try:
            return COMMANDS[args.command](args)
        except BaseExceptionGroup as group:
            raise _sole_error(group) from group
    except P2PChatError as exc:
        print(f"p2pchat: error: {_explain(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    except trio.TooSlowError:
        print("p2pchat: error: timed out", file=sys.stderr)
        return EXIT_FAILURE
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        print(f"p2pchat: error: connection lost: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except BrokenPipeError:
        # stdout went away (e.g. piped into head): nothing more to say.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
