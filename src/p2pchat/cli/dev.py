"""The commands for developers: ``plugins`` (list, load, reload, unload the running node's
plug-ins), ``query`` (one chat query with any code: curl for ``/p2pchat/1.0.0``) and
``stream`` (stdin and stdout over a libp2p stream with any protocol: netcat over libp2p).

``plugins`` is a request to the running node. ``query`` goes through the running node when there
is one (its identity, connections and known addresses; a bare peer ID it knows will do), else
through a transient Host with the data dir's identity. ``stream`` always uses a transient Host
with the data dir's identity: the control socket carries JSON lines, not a byte pipe
(specs/cli.md "Developer commands" says why).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ..app.control_protocol import NodeNotRunningError
from .common import Command, UsageError, call, data_dir, run_trio, start_logging
from .render import clean, print_json
from .sanitize import terminal_text

if TYPE_CHECKING:
    from ..identity import KeyPair
    from ..multiaddr import Multiaddr

#: Exit status of a ``query`` answered negatively (the answer is printed all the same).
EXIT_REFUSED: Final = 1
READ_SIZE: Final = 65536


# -- plugins ---------------------------------------------------------------------------------


def _print_plugin(info: dict[str, Any]) -> None:
    print(f"{clean(info['name'])}  {info['state']}  {clean(info['source'])}")
    if info["state"] == "failed":
        print(f"  error: {clean(info['error'] or '?')}")
        return
    codes = ", ".join(clean(c) for c in info["codes"]) or "-"
    protocols = ", ".join(clean(p) for p in info["protocols"]) or "-"
    print(f"  codes: {codes}  protocols: {protocols}")
    if info["handler_errors"]:
        last = clean(info["last_handler_error"] or "?")
        print(f"  handler errors: {info['handler_errors']} (last: {last})")


def cmd_plugins(args: argparse.Namespace) -> int:
    """List the running node's plug-ins, or load, reload or unload one.

    Raises:
        UsageError: words that are none of those.
        ControlError: no node runs, or it refused.
    """
    words: list[str] = args.words
    if not words or words == ["list"]:
        plugins = call(args, "plugins")
        if args.json:
            print_json(plugins)
        elif not plugins:
            print("no plug-ins (load one with: p2pchat plugins load PATH_OR_MODULE)")
        for info in plugins:
            _print_plugin(info)
        return 0
    if len(words) != 2 or words[0] not in ("load", "reload", "unload"):
        raise UsageError("plugins takes: list, load PATH_OR_MODULE, reload NAME, or unload NAME")
    action, target = words
    if action == "unload":
        answer = call(args, "plugins.unload", name=target)
        print_json(answer) if args.json else print(f"unloaded {clean(answer['name'])}")
        return 0
    if action == "load":
        if "/" in target or target.endswith(".py"):  # a path: the node's directory is not ours
            target = str(Path(target).expanduser().resolve())
        info = call(args, "plugins.load", spec=target)
    else:
        info = call(args, "plugins.reload", name=target)
    if args.json:
        print_json(info)
    else:
        _print_plugin(info)
    return 0 if info["state"] == "running" else EXIT_REFUSED


# -- query -----------------------------------------------------------------------------------


def _body_arg(text: str | None) -> Any:
    if text is None:
        return {}
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise UsageError('--body must be a JSON object, e.g. \'{"text": "hi"}\'')
    return body


async def _query_alone(
    args: argparse.Namespace, identity: KeyPair, addr: Multiaddr, body: Any
) -> dict[str, Any]:
    """The query from a transient Host.

    Raises:
        DaemonError: a bad code or body, or no answer in time.
        P2PChatError: the peer cannot be reached or broke the protocol.
    """
    from ..app.dev_operations import query_body, query_peer, response_json
    from ..net.host import HostConfig, open_host

    group_id = None
    if args.group is not None:
        try:
            group_id = bytes.fromhex(args.group)
        except ValueError:
            group_id = b""
        if len(group_id) != 32:
            raise UsageError(
                "with no node running, --group takes the full group id (64 hex digits)"
            )
    cbor_body = query_body(args.code, body, group_id)
    config = HostConfig(
        listen=(),
        dial_timeout=args.timeout,
        handshake_timeout=args.timeout,
        negotiate_timeout=args.timeout,
        identify_on_connect=False,
    )
    async with open_host(identity, config) as host:
        response = await query_peer(host, addr, args.code, cbor_body, args.timeout)
    assert addr.peer_id is not None
    return response_json(addr.peer_id, response)


def cmd_query(args: argparse.Namespace) -> int:
    """Send one chat query to a peer and print the response: 0 if affirmative, 1 if not.

    Raises:
        UsageError: a body that is not a JSON object; no node and a bare peer ID.
        P2PChatError: the peer cannot be reached, did not answer, or the node refused.
    """
    body = _body_arg(args.body)
    request: dict[str, Any] = {"peer": args.peer, "code": args.code, "body": body}
    if args.group is not None:
        request["group"] = args.group
    request["timeout"] = args.timeout
    try:
        answer = call(args, "query", **request)
    except NodeNotRunningError:
        if not args.peer.startswith("/"):
            raise UsageError(
                f"no node is running on {data_dir(args)}: give the peer's multiaddr "
                "(ending in /p2p/<peer id>), or start a node that knows it"
            ) from None
        from ..app.datadir import load_or_create_identity
        from ..multiaddr import Multiaddr

        start_logging(args)
        identity = load_or_create_identity(data_dir(args))
        answer = run_trio(_query_alone, args, identity, Multiaddr.from_string(args.peer), body)
    if args.json:
        print_json(answer)
    else:
        status = "ok" if answer["ok"] else f"refused: {clean(answer['reason'] or '?')}"
        print(f"{clean(answer['code'])} from {clean(answer['peer_id'])}: {status}")
        if answer["body"]:
            print(
                terminal_text(
                    json.dumps(answer["body"], indent=2, ensure_ascii=False), multiline=True
                )
            )
    return 0 if answer["ok"] else EXIT_REFUSED


# -- stream ----------------------------------------------------------------------------------


def _stream_target(args: argparse.Namespace) -> str:
    """A multiaddr for the peer: as given, or a bare peer ID's address the running node knows.

    Raises:
        UsageError: a bare peer ID and no node knows an address for it.
    """
    if args.peer.startswith("/"):
        return str(args.peer)
    try:
        peers = call(args, "peers")
    except NodeNotRunningError:
        peers = {"connected": [], "known": []}
    for entry in peers["connected"]:
        if entry["peer_id"] == args.peer and entry["addr"]:
            return f"{entry['addr']}/p2p/{args.peer}"
    for entry in peers["known"]:
        if entry["peer_id"] == args.peer and entry["addrs"]:
            return f"{entry['addrs'][0]}/p2p/{args.peer}"
    raise UsageError(
        f"no address known for {args.peer}: give its multiaddr (ending in /p2p/<peer id>)"
    )


async def _stream(args: argparse.Namespace, identity: KeyPair, addr: Multiaddr) -> None:
    """Copy stdin to the stream (then half-close it) and the stream to stdout, until the peer
    ends its side.

    Raises:
        P2PChatError: the peer cannot be reached or does not speak the protocol.
    """
    import trio

    from ..net.host import HostConfig, open_host

    config = HostConfig(
        listen=(),
        dial_timeout=args.timeout,
        handshake_timeout=args.timeout,
        negotiate_timeout=args.timeout,
        identify_on_connect=False,
    )
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    read = getattr(stdin, "read1", stdin.read)  # a BufferedReader: what is there, up to a size

    async with open_host(identity, config) as host:
        stream = await host.new_stream(addr, [args.protocol])
        async with stream, trio.open_nursery() as nursery:

            async def pump_stdin() -> None:
                while data := await trio.to_thread.run_sync(
                    read, READ_SIZE, abandon_on_cancel=True
                ):
                    await stream.send_all(data)
                await stream.send_eof()

            nursery.start_soon(pump_stdin)
            while data := await stream.receive_some(READ_SIZE):
                stdout.write(data)
                stdout.flush()
            nursery.cancel_scope.cancel()  # the peer is done: so are we


def cmd_stream(args: argparse.Namespace) -> int:
    """Connect stdin and stdout to a new stream with ``PROTOCOL`` to the peer.

    Raises:
        UsageError: no address for the peer.
        P2PChatError: the peer cannot be reached or does not speak the protocol.
    """
    if not args.protocol.startswith("/"):
        raise UsageError(f"a protocol id starts with '/': {args.protocol!r}")
    from ..app.datadir import load_or_create_identity
    from ..multiaddr import Multiaddr

    target = Multiaddr.from_string(_stream_target(args))
    start_logging(args)
    identity = load_or_create_identity(data_dir(args))
    run_trio(_stream, args, identity, target)
    return 0


COMMANDS: Final[dict[str, Command]] = {
    "plugins": cmd_plugins,
    "query": cmd_query,
    "stream": cmd_stream,
}
