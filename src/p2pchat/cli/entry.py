"""``p2pchat``: the parser, and the dispatch of a command to the module that runs it.

This module, and what a command that talks to the running node needs, load no part of the
network stack and not trio: the command modules are imported when their command runs
(:data:`COMMAND_MODULES`), argument types import what they check when they check it, and the
control-socket commands use a blocking stdlib client. ``p2pchat status`` costs the interpreter's
start-up and one round trip (tools/bench_cli.py measures it).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, NoReturn

from .. import __version__
from ..app.logsetup import LOG_FORMATS, LOG_LEVELS
from ..errors import P2PChatError
from . import args
from .common import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, Command, sole_error
from .conformance import add_arguments as conformance_arguments
from .dht import add_parser as add_dht_parser
from .reading import add_arguments as search_arguments
from .reading import add_history_arguments
from .sanitize import terminal_text
from .thread import add_arguments as thread_arguments


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake in one line."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: every command, its options and their types."""
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
        type=args.multiaddr,
        action="append",
        metavar="MULTIADDR",
        help="address to listen on, repeatable (replaces [node] listen)",
    )
    p.add_argument(
        "--bootstrap",
        type=args.bootstrap,
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
    p.add_argument(
        "--plugin",
        action="append",
        metavar="PATH_OR_MODULE",
        help="load a plug-in, repeatable (added to [plugins] load)",
    )

    p = command("status", "show the running node: peer ID, addresses, peers, groups")
    _json_flag(p)
    command("stop", "stop the running node")

    p = command("peers", "list connected and known peers")
    _json_flag(p)
    p = command("connect", "connect the running node to a peer")
    p.add_argument("peer", type=args.peer, metavar="MULTIADDR", help="ends in /p2p/<peer id>")

    p = command("ping", "ping a peer (libp2p /ipfs/ping/1.0.0)")
    p.add_argument(
        "peer",
        type=args.peer,
        metavar="PEER",
        help="a multiaddr ending in /p2p/<id> (or a peer ID the running node knows)",
    )
    p.add_argument("--count", type=args.positive_int, default=5, help="pings (default: 5)")
    p.add_argument(
        "--timeout", type=args.seconds, default=10.0, help="seconds per step (default: 10)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object per line")

    p = command("perf", "measure throughput to a peer that serves /perf/1.0.0 (libp2p perf)")
    p.add_argument("peer", type=args.peer, metavar="MULTIADDR", help="ends in /p2p/<peer id>")
    p.add_argument("--upload", type=args.byte_size, default="10MiB", help="bytes to send (10MiB)")
    p.add_argument("--download", type=args.byte_size, default="10MiB", help="bytes to ask (10MiB)")
    p.add_argument("--iterations", type=args.positive_int, default=1, help="exchanges (default: 1)")
    p.add_argument(
        "--fresh", action="store_true", help="a new connection for every exchange (as the runner)"
    )
    p.add_argument(
        "--timeout", type=args.seconds, default=120.0, help="seconds for it all (default: 120)"
    )
    p.add_argument("--json", action="store_true", help="print the perf runner's JSON records")

    p = command("group", "create, join and manage groups")
    groups = p.add_subparsers(dest="group_command", metavar="ACTION", parser_class=_Parser)
    groups.required = True

    def group_command(name: str, help_text: str) -> argparse.ArgumentParser:
        return groups.add_parser(name, parents=[common], help=help_text, description=help_text)

    g = group_command("create", "create a group with this node as owner and ratifier")
    g.add_argument("name", help="the group's name")
    g.add_argument(
        "--quorum", type=args.positive_int, help="votes a message needs (default: majority)"
    )
    g.add_argument(
        "--history",
        choices=["all", "since_join"],
        default="all",
        help="what new members may read (default: all)",
    )
    _json_flag(g)
    g = group_command("invite", "add a peer to a group (owner only)")
    g.add_argument("group", help="group id, unique id prefix, or name")
    g.add_argument("peer", type=args.peer, help="peer ID, or multiaddr ending in /p2p/<id>")
    g.add_argument(
        "role", nargs="?", default="user", choices=["ratifier", "user", "viewer"], help="(user)"
    )
    _json_flag(g)
    g = group_command("join", "join a group this node was invited to")
    g.add_argument("group", help="the group id (64 hex digits)")
    g.add_argument("via", type=args.peer, help="a member: peer ID or multiaddr ending in /p2p/<id>")
    _json_flag(g)
    g = group_command("remove", "remove a member from a group (owner only)")
    g.add_argument("group", help="group id, unique id prefix, or name")
    g.add_argument("peer", type=args.peer, help="the member's peer ID")
    g = group_command("role", "change a member's role (owner only)")
    g.add_argument("group", help="group id, unique id prefix, or name")
    g.add_argument("peer", type=args.peer, help="the member's peer ID")
    g.add_argument("role", choices=("ratifier", "user", "viewer"), help="its new role")
    g = group_command("rename", "rename a group (owner only)")
    g.add_argument("group", help="group id, unique id prefix, or name")
    g.add_argument("name", help="its new name (1 to 128 bytes)")
    g = group_command("owner", "hand a group to another member, who becomes a ratifier")
    g.add_argument("group", help="group id, unique id prefix, or name")
    g.add_argument("peer", type=args.peer, help="the member's peer ID")
    g = group_command("leave", "ask to leave a group (the owner's node takes you off)")
    g.add_argument("group", help="group id, unique id prefix, or name")
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
    p.add_argument("--quiet", action="store_true", help="no progress bar for --file")
    _json_flag(p)

    p = command("history", "print a group's ratified messages in display order, then ours pending")
    p.add_argument("group", help="group id, unique id prefix, or name")
    p.add_argument("--limit", type=args.positive_int, default=1000, help="newest N (default: 1000)")
    p.add_argument("--versions", action="store_true", help="show every version of edited messages")
    p.add_argument("--raw", action="store_true", help="every message as sent: edits etc. unfolded")
    add_history_arguments(p)
    _json_flag(p)
    thread_arguments(command)
    search_arguments(command)

    p = command(
        "outbox",
        "list our messages waiting for a quorum (outbox [GROUP]), or withdraw one "
        "(outbox cancel HASH)",
    )
    p.add_argument(
        "words", nargs="*", metavar="GROUP | cancel HASH", help="a group, or: cancel HASH"
    )
    _json_flag(p)

    p = command("get", "save the content of a file or image message")
    p.add_argument("group", help="group id, unique id prefix, or name")
    p.add_argument("hash", help="the message hash, or a unique prefix of it")
    p.add_argument(
        "-o", "--output", type=Path, help="where to write it ('-' for stdout; default: its name)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = command("chat", "interactive chat: type lines to send them, see everyone's messages")
    p.add_argument("group", help="group id, unique id prefix, or name")
    p.add_argument("--last", type=args.positive_int, default=20, help="history lines shown first")
    p.add_argument(
        "--wait",
        type=args.seconds,
        default=15.0,
        help="at end of input, seconds to wait for our messages' ratification (default: 15)",
    )
    p.add_argument("--plain", action="store_true", help="line by line, without the terminal UI")

    command("demo", "run three nodes on 127.0.0.1 and show ratification and catch-up")

    p = command("dht", "the running node's DHT: find-peer ID, providers KEY, status")
    add_dht_parser(p, _Parser, common)
    _add_dev_commands(command)
    conformance_arguments(command("conformance", "check any libp2p node against the specs"))
    return parser


def _add_dev_commands(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """``plugins``, ``query`` and ``stream`` (cli/dev.py; specs/cli.md "Developer commands")."""
    p = command(
        "plugins",
        "list the running node's plug-ins, or load, reload or unload one "
        "(plugins [list | load PATH_OR_MODULE | reload NAME | unload NAME])",
    )
    p.add_argument("words", nargs="*", metavar="ACTION", help="list, load X, reload X, unload X")
    _json_flag(p)

    p = command("query", "send one chat query with any code to a peer and print the response")
    p.add_argument("peer", type=args.peer, metavar="PEER", help="peer ID or multiaddr")
    p.add_argument("code", metavar="CODE", help="the query code, e.g. i, hpk, or your own")
    p.add_argument("--group", metavar="G", help="adds group_id to the body (id, prefix, name)")
    p.add_argument("--body", metavar="JSON", help='the body, a JSON object ({"$bytes": b64})')
    p.add_argument(
        "--timeout", type=args.seconds, default=10.0, help="seconds for it all (default: 10)"
    )
    _json_flag(p)

    p = command("stream", "connect stdin and stdout to a libp2p stream with any protocol")
    p.add_argument("peer", type=args.peer, metavar="PEER", help="multiaddr (or a known peer ID)")
    p.add_argument("protocol", metavar="PROTOCOL", help="protocol id, e.g. /my-app/echo/1.0.0")
    p.add_argument(
        "--timeout", type=args.seconds, default=10.0, help="seconds to connect (default: 10)"
    )


# -- dispatch ------------------------------------------------------------------------------------

#: Every command, and the module of :mod:`p2pchat.cli` that runs it (each module's ``COMMANDS``
#: maps the command to its function). Only the command's own module is imported.
COMMAND_MODULES: Final[dict[str, str]] = {
    "init": "local",
    "id": "local",
    "node": "node",
    "demo": "node",
    "status": "control",
    "stop": "control",
    "peers": "control",
    "connect": "control",
    "ping": "net",
    "perf": "net",
    "group": "groups",
    "send": "messages",
    "history": "reading",
    "search": "reading",
    "get": "messages",
    "reply": "thread",
    "edit": "thread",
    "delete": "thread",
    "react": "thread",
    "name": "thread",
    "profile": "thread",
    "outbox": "outbox",
    "chat": "chat",
    "dht": "dht",
    "plugins": "dev",
    "query": "dev",
    "stream": "dev",
    "conformance": "conformance",
}


def load_command(name: str) -> Command:
    """The function that runs the command ``name`` (importing its module).

    Raises:
        KeyError: no such command.
    """
    module = importlib.import_module(f"{__package__}.{COMMAND_MODULES[name]}")
    handler: Command = module.COMMANDS[name]
    return handler


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``p2pchat`` with ``argv`` (default: the process's arguments); the exit status.

    Every failure a user can cause prints one line on stderr (specs/cli.md "Errors and exit
    status"); a traceback means a bug.
    """
    parser = build_parser()
    parsed, extra = parser.parse_known_args(argv)
    # argparse leaves ``send GROUP --markdown TEXT...`` words after an option unparsed.
    if extra and parsed.command == "send" and all(w == "-" or not w.startswith("-") for w in extra):
        parsed.text = [*parsed.text, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if parsed.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        try:
            return load_command(parsed.command)(parsed)
        except BaseExceptionGroup as group:
            error = sole_error(group)
            if error is group:
                raise
            raise error from group
    except P2PChatError as exc:
        # The reason may come from the node, or through it from a peer: made safe to print.
        print(f"p2pchat: error: {terminal_text(str(exc).replace(chr(10), ' '))}", file=sys.stderr)
        return EXIT_FAILURE
    except BrokenPipeError:
        # stdout went away (e.g. piped into head): nothing more to say.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
