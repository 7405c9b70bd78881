"""Benchmark: mDNS discovery on a LAN of network namespaces, and node start-up against py-libp2p.

Everything runs inside network namespaces that this script makes and deletes
(tools/mdns_node.py ``netns_lan``: a bridge in its own namespace, one namespace per node, a
veth each, addresses in 10.199.<k>.0/24). No multicast touches the machine's own interfaces:
each of our nodes runs mDNS on its namespace's ``lan0``, and py-libp2p, whose mDNS (python
zeroconf) listens on every interface it sees, runs only inside such a namespace.

What is measured
----------------
a. **LAN discovery**: ``--nodes`` (10) namespaces on one bridge, one node process each
   (``tools/mdns_node.py run``), all started at once, none told any address. A node is done
   when mDNS has reported every other node. Per run: how far apart the nodes came up (mDNS
   running; ten interpreters starting at once take a while), the time from the moment the
   LAST node was up until every node was done, each discovery timed from the moment both of
   its ends were up (median and max over the n(n-1) pairs), the time from spawning the first
   process to all done, and the packets sent (queries and responses, all nodes). RFC 6762
   section 6 lets a node multicast its response at most once a second, so a node that comes
   up just after a peer answered someone else waits up to a second for that peer's next
   answer; ``--fast-interval 0.1`` repeats the runs with 0.1 s instead, to show the cost.
   ``--runs`` (3) runs, each with new processes.
b. **Start-up**: in one namespace, the time from spawning the process until the node listens
   on TCP with mDNS running. Ours: ``mdns_node.py run`` (python start, ``import p2pchat`` and
   trio, ``open_host``, ``open_mdns``). py-libp2p 0.8.1 (``$P2PCHAT_INTEROP_PYTHON``, default
   ``.venv-interop/bin/python``): ``import libp2p``, ``new_host(enable_mDNS=True)`` and
   ``host.run(listen_addrs)``, which starts its mDNS. Medians of ``--startups`` (5) runs, with
   the split each process reports (imports / host and mDNS start).
c. **Interop** (one run): a py-libp2p node and ours in two namespaces on one bridge: does
   each find the other through mDNS, and how long after both were up.

    python tools/bench_mdns.py [--nodes 10] [--runs 3] [--startups 5] [--fast-interval 0.1]
        [--no-pylibp2p] [--json]

Needs root (namespaces) and iproute2; says so and exits otherwise.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any, Final

from benchlib import REPO, BenchError, interop_python
from mdns_node import NetnsLan, NodeProcess, netns_lan, netns_unavailable_reason, pump

NODE: Final = str(REPO / "tools" / "mdns_node.py")
#: Deadlines: a phase that takes longer fails; every node exits on stdin EOF or its lifetime.
DISCOVERY_TIMEOUT: Final = 60.0
STARTUP_TIMEOUT: Final = 60.0
NODE_LIFETIME: Final = "120"

# A py-libp2p node for ``python -c``: argv = listen IP, then optionally a peer ID to wait for.
# Prints JSON lines like tools/mdns_node.py: ready (with clock readings), discovered, exit.
PYLIBP2P_NODE: Final = r"""
import time
T_START = time.monotonic()
import json, os, stat, sys
import multiaddr, trio
import libp2p
from libp2p import new_host
T_IMPORTED = time.monotonic()

def emit(event, **fields):
    print(json.dumps({"event": event, "t": time.monotonic(), **fields}), flush=True)

async def stdin_eof():
    fd = sys.stdin.fileno()
    if not stat.S_ISFIFO(os.fstat(fd).st_mode):
        await trio.sleep_forever()
    async with trio.lowlevel.FdStream(os.dup(fd)) as stream:
        while await stream.receive_some(4096):
            pass

async def main(ip, want):
    host = new_host(enable_mDNS=True)
    t_host = time.monotonic()
    async with host.run(listen_addrs=[multiaddr.Multiaddr(f"/ip4/{ip}/tcp/0")]):
        emit("ready", peer_id=host.get_id().to_string(),
             addrs=[str(a) for a in host.get_addrs()],
             t_start=T_START, t_imported=T_IMPORTED, t_listening=t_host)
        async with trio.open_nursery() as nursery:
            async def watch():
                with trio.move_on_after(30):
                    while True:
                        known = {p.to_string() for p in host.get_peerstore().peers_with_addrs()}
                        if want in known:
                            addrs = host.get_peerstore().addrs(libp2p.peer.id.ID.from_base58(want))
                            emit("discovered", peer_id=want, addrs=[str(a) for a in addrs])
                            emit("done")
                            return
                        await trio.sleep(0.02)
            if want:
                nursery.start_soon(watch)
            with trio.move_on_after(float(os.environ.get("NODE_LIFETIME", "120"))):
                await stdin_eof()
            nursery.cancel_scope.cancel()
        emit("exit")

trio.run(main, sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "")
"""


def _our_node(
    lan: NetnsLan, index: int, expect: int, min_response_interval: float = 1.0
) -> NodeProcess:
    argv = [
        sys.executable, NODE, "run",
        "--listen", f"/ip4/{lan.address(index)}/tcp/0",
        "--interface", "lan0",
        "--expect", str(expect),
        "--lifetime", NODE_LIFETIME,
        "--min-response-interval", str(min_response_interval),
    ]  # fmt: skip
    return NodeProcess(lan.command(index, argv), label=f"ours-{index}")


def _pylibp2p_node(lan: NetnsLan, index: int, python: str, want: str = "") -> NodeProcess:
    argv = ["env", f"NODE_LIFETIME={NODE_LIFETIME}", python, "-c", PYLIBP2P_NODE]
    argv += [lan.address(index)] + ([want] if want else [])
    return NodeProcess(lan.command(index, argv), label=f"py-libp2p-{index}")


def _stop_all(nodes: Sequence[NodeProcess]) -> None:
    for node in nodes:
        status, stderr = node.stop()
        if status != 0:
            raise BenchError(f"{node.label} exited with {status}: {stderr}")


def _event(node: NodeProcess, name: str) -> dict[str, Any]:
    found = node.first(name)
    if found is None:
        raise BenchError(f"{node.label} printed no {name!r} event: {node.events}")
    return found


def _has(node: NodeProcess, name: str) -> bool:
    return node.first(name) is not None


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 1)


# -- a. LAN discovery ------------------------------------------------------------------------------


def _all_done(nodes: Sequence[NodeProcess]) -> bool:
    return all(n.first("done") for n in nodes)


def lan_discovery(size: int, runs: int, min_response_interval: float) -> list[dict[str, Any]]:
    """One dict of figures per run (see the module docstring, a.)."""
    results = []
    with netns_lan(size, subnet="10.199.10") as lan:
        for _ in range(runs):
            nodes: list[NodeProcess] = []
            try:
                spawned = time.monotonic()
                nodes = [_our_node(lan, i, size - 1, min_response_interval) for i in range(size)]
                if not pump(nodes, partial(_all_done, nodes), DISCOVERY_TIMEOUT):
                    missing = [n.label for n in nodes if not n.first("done")]
                    raise BenchError(f"not all discovered in {DISCOVERY_TIMEOUT} s: {missing}")
                _stop_all(nodes)
            finally:
                for node in nodes:
                    node.kill()
            ready_at = {_event(n, "ready")["peer_id"]: _event(n, "ready")["t"] for n in nodes}
            ready = list(ready_at.values())
            done = [_event(n, "done")["t"] for n in nodes]
            # Each discovery, timed from when both ends were up.
            pairs = [
                found["t"]
                - max(ready_at[_event(n, "ready")["peer_id"]], ready_at[found["peer_id"]])
                for n in nodes
                for found in n.all("discovered")
            ]
            exits = [_event(n, "exit")["stats"] for n in nodes]
            if len(pairs) != size * (size - 1):
                raise BenchError(f"{len(pairs)} discoveries, expected {size * (size - 1)}")
            results.append(
                {
                    "nodes": size,
                    "after_last_ready_ms": _ms(max(done) - max(ready)),
                    "pair_median_ms": _ms(statistics.median(pairs)),
                    "pair_max_ms": _ms(max(pairs)),
                    "ready_spread_ms": _ms(max(ready) - min(ready)),
                    "spawn_to_all_done_ms": _ms(max(done) - spawned),
                    "queries_sent": sum(e["queries_sent"] for e in exits),
                    "responses_sent": sum(e["responses_sent"] for e in exits),
                    "discoveries": len(pairs),
                }
            )
    return results


# -- b. start-up -----------------------------------------------------------------------------------


def startup(runs: int, python: str | None) -> dict[str, dict[str, float]]:
    """Median start-up figures per stack (see the module docstring, b.)."""
    samples: dict[str, list[dict[str, float]]] = {"ours": []}
    if python is not None:
        samples["py-libp2p"] = []
    with netns_lan(1, subnet="10.199.11") as lan:
        for _ in range(runs):
            for stack in samples:
                if stack == "ours":
                    node = _our_node(lan, 0, 0)
                else:
                    node = _pylibp2p_node(lan, 0, python or "")
                try:
                    if not pump([node], partial(_has, node, "ready"), STARTUP_TIMEOUT):
                        raise BenchError(f"{node.label} did not start: {node.stop()[1]}")
                    _stop_all([node])
                finally:
                    node.kill()
                ready = _event(node, "ready")
                samples[stack].append(
                    {
                        "spawn_to_ready_ms": _ms(ready["t"] - node.spawned_at),
                        "interpreter_ms": _ms(ready["t_start"] - node.spawned_at),
                        "imports_ms": _ms(ready["t_imported"] - ready["t_start"]),
                        "host_and_mdns_ms": _ms(ready["t"] - ready["t_imported"]),
                    }
                )
    return {
        stack: {key: statistics.median(s[key] for s in runs_) for key in runs_[0]}
        for stack, runs_ in samples.items()
    }


# -- c. interop ------------------------------------------------------------------------------------


def interop(python: str) -> dict[str, Any]:
    """A py-libp2p node and ours on one LAN: who finds whom, and how fast. Times are from
    spawning the py-libp2p process (ours is already running then)."""
    with netns_lan(2, subnet="10.199.12") as lan:
        nodes: list[NodeProcess] = []
        try:
            ours = _our_node(lan, 1, 1)
            nodes.append(ours)
            if not pump([ours], partial(_has, ours, "ready"), STARTUP_TIMEOUT):
                raise BenchError(f"our node did not start: {ours.stop()[1]}")
            theirs = _pylibp2p_node(lan, 0, python, _event(ours, "ready")["peer_id"])
            nodes.append(theirs)
            pump(nodes, partial(_all_done, nodes), 30.0)
            _stop_all(nodes)
        finally:
            for node in nodes:
                node.kill()
        start = theirs.spawned_at
        out: dict[str, Any] = {"pylibp2p_ready_ms": _ms(_event(theirs, "ready")["t"] - start)}
        for name, node in (("ours_found_pylibp2p", ours), ("pylibp2p_found_ours", theirs)):
            found = node.first("discovered")
            out[name] = found is not None
            out[f"{name}_ms"] = None if found is None else _ms(found["t"] - start)
            out[f"{name}_addrs"] = None if found is None else found["addrs"]
        return out


# -- report ----------------------------------------------------------------------------------------


def _interop_python(disabled: bool) -> str | None:
    if disabled:
        return None
    python = str(interop_python())
    return python if Path(python).exists() else None


def _print_lan(title: str, runs: list[dict[str, Any]]) -> None:
    print(title)
    print(
        "   run  nodes up over  last up -> all done  per pair median / max"
        "  spawn -> all done  queries  responses"
    )
    for i, run in enumerate(runs, 1):
        print(
            f"   {i:>3}  {run['ready_spread_ms']:>10.1f} ms  {run['after_last_ready_ms']:>15.1f} ms"
            f"  {run['pair_median_ms']:>10.1f} / {run['pair_max_ms']:>6.1f} ms"
            f"  {run['spawn_to_all_done_ms']:>14.1f} ms  {run['queries_sent']:>7}"
            f"  {run['responses_sent']:>9}"
        )


def _print_report(report: dict[str, Any], args: argparse.Namespace) -> None:
    _print_lan(
        f"a. LAN discovery: {args.nodes} nodes, {args.nodes} namespaces on one bridge"
        " (RFC 6762 pacing: >= 1 s between two multicasts of a node's response)",
        report["lan"],
    )
    if report["lan_fast"] is not None:
        _print_lan(
            f"\n   the same with --min-response-interval {args.fast_interval}",
            report["lan_fast"],
        )
    print(f"\nb. Start-up to listening with mDNS running (median of {args.startups}, in a netns)")
    print("   stack       spawn -> ready  interpreter  imports  host + mDNS start")
    for stack, fig in report["startup"].items():
        print(
            f"   {stack:<10}  {fig['spawn_to_ready_ms']:>11.1f} ms"
            f"  {fig['interpreter_ms']:>8.1f} ms  {fig['imports_ms']:>6.1f} ms"
            f"  {fig['host_and_mdns_ms']:>12.1f} ms"
        )
    inter = report["interop"]
    if inter is None:
        print("   (py-libp2p not measured: no interpreter at $P2PCHAT_INTEROP_PYTHON)")
        return
    print(
        "\nc. Interop on one bridge, times from spawning py-libp2p"
        f" (its host + mDNS ready at {inter['pylibp2p_ready_ms']:.1f} ms)"
    )
    for key, label in (
        ("ours_found_pylibp2p", "ours found py-libp2p"),
        ("pylibp2p_found_ours", "py-libp2p found ours"),
    ):
        if inter[key]:
            print(f"   {label}: yes, at {inter[key + '_ms']:.1f} ms, {inter[key + '_addrs']}")
        else:
            print(f"   {label}: no (within 30 s)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--startups", type=int, default=5)
    parser.add_argument(
        "--fast-interval",
        type=float,
        default=0.0,
        help="also run (a) with this min_response_interval (e.g. 0.1; 0: skip)",
    )
    parser.add_argument("--no-pylibp2p", action="store_true")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    reason = netns_unavailable_reason()
    if reason is not None:
        print(f"bench_mdns: {reason}", file=sys.stderr)
        return 2
    python = _interop_python(args.no_pylibp2p)
    report: dict[str, Any] = {
        "lan": lan_discovery(args.nodes, args.runs, 1.0),
        "lan_fast": (
            lan_discovery(args.nodes, args.runs, args.fast_interval)
            if args.fast_interval > 0
            else None
        ),
        "startup": startup(args.startups, python),
        "interop": interop(python) if python is not None else None,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_report(report, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
