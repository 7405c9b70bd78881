"""``p2pchat ping`` and ``p2pchat perf``: measure a peer.

``ping`` goes through the running node when there is one (then a bare peer ID it knows will
do); otherwise, like ``perf`` always, it starts a transient Host with the node's identity, which
is when the network stack loads.
"""

from __future__ import annotations

import argparse
import statistics
from typing import TYPE_CHECKING, Final

from ..app.client import connect_control
from ..app.control_protocol import NodeNotRunningError
from ..app.datadir import load_or_create_identity
from .common import Command, UsageError, data_dir, run_trio, start_logging
from .render import clean, print_json

if TYPE_CHECKING:
    from ..identity import KeyPair
    from ..multiaddr import Multiaddr


def _print_pong(args: argparse.Namespace, peer: str, seq: int, ms: float) -> None:
    if args.json:
        print_json({"seq": seq, "peer_id": peer, "ms": ms})
    else:
        print(f"pong from {clean(peer)}: seq={seq} time={ms:.3f} ms", flush=True)


def _ping_through_node(args: argparse.Namespace) -> list[float]:
    """Round trips in ms, each a ``ping`` request to the running node.

    Raises:
        NodeNotRunningError: no node runs.
        ControlError: the node refused (its reason is the message).
    """
    rtts: list[float] = []
    with connect_control(data_dir(args)) as node:
        for seq in range(args.count):
            answer = node.call("ping", peer=args.peer, timeout=args.timeout)
            rtts.append(float(answer["ms"]))
            _print_pong(args, answer["peer_id"], seq + 1, rtts[-1])
    return rtts


async def _ping_alone(args: argparse.Namespace, identity: KeyPair, addr: Multiaddr) -> list[float]:
    """Round trips in ms from a transient Host.

    Raises:
        P2PChatError: the peer cannot be reached or does not answer as it must.
        trio.TooSlowError: it took longer than three steps' timeouts.
    """
    import trio

    from ..net.host import HostConfig, open_host
    from ..net.ping import open_ping

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


def cmd_ping(args: argparse.Namespace) -> int:
    """Ping a peer ``--count`` times, then print min, median and max.

    Raises:
        UsageError: no node runs and the peer is a bare peer ID.
        P2PChatError: the peer cannot be reached, or the node refused.
    """
    try:
        rtts = _ping_through_node(args)
    except NodeNotRunningError:
        if not args.peer.startswith("/"):
            raise UsageError(
                f"no node is running on {data_dir(args)}: give the peer's multiaddr "
                "(ending in /p2p/<peer id>), or start a node that knows it"
            ) from None
        from ..multiaddr import Multiaddr

        start_logging(args)
        identity = load_or_create_identity(data_dir(args))
        rtts = run_trio(_ping_alone, args, identity, Multiaddr.from_string(args.peer))
    summary = {"min": min(rtts), "median": statistics.median(rtts), "max": max(rtts)}
    if args.json:
        print_json({"count": len(rtts), **{f"{k}_ms": v for k, v in summary.items()}})
    else:
        print(
            f"{len(rtts)} pings: min {summary['min']:.3f} ms, median {summary['median']:.3f} ms, "
            f"max {summary['max']:.3f} ms"
        )
    return 0


async def _perf(args: argparse.Namespace, identity: KeyPair, addr: Multiaddr) -> None:
    """Run the exchanges and print their results.

    Raises:
        P2PChatError: the peer cannot be reached or broke the protocol.
        trio.TooSlowError: it took longer than ``--timeout``.
    """
    import trio

    from ..net.host import HostConfig, open_host
    from ..net.perf import (
        PerfProgress,
        format_result,
        format_summary,
        measure,
        progress_json,
        result_json,
        summarize,
        summary_json,
    )

    def progress(update: PerfProgress) -> None:
        if args.json:
            print_json(progress_json(update))

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
            print_json(result_json(result))
        else:
            print(format_result(result))
    if len(results) > 1:
        summary = summarize(results)
        if args.json:
            print_json(summary_json(summary))
        else:
            print(format_summary(summary))


def cmd_perf(args: argparse.Namespace) -> int:
    """Measure throughput to a peer that serves ``/perf/1.0.0``.

    Raises:
        UsageError: the peer is not a multiaddr.
        P2PChatError: the peer cannot be reached, or broke the protocol.
    """
    if not args.peer.startswith("/"):
        raise UsageError("perf needs the peer's multiaddr, ending in /p2p/<peer id>")
    from ..multiaddr import Multiaddr

    start_logging(args)
    identity = load_or_create_identity(data_dir(args))
    run_trio(_perf, args, identity, Multiaddr.from_string(args.peer))
    return 0


COMMANDS: Final[dict[str, Command]] = {"ping": cmd_ping, "perf": cmd_perf}
