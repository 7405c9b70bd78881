"""Relay and hole-punch figures in namespaces (tools/holepunch_node.py ``two_nats``): the median
of N runs of the time from the dialing node's start (after its imports) to a relayed connection
and to a direct one, the hole-punch success rate behind endpoint-independent NATs, and the
throughput of one stream relayed (DCUtR off) and direct.

    sudo .venv/bin/python tools/bench_holepunch.py [--runs 20] [--mib 16]

``--first-reservation`` measures instead the median of N runs of the time from the start of a
``p2pchat node`` behind NAT a (process launch, imports included) to its first reservation of
its own: three public nodes serve AutoNAT (one of them also a relay), the node knows them as
bootstrap peers, AutoNAT finds it private and it reserves on the relay by itself (specs/
autonat.md "When to probe", specs/relay.md "Automatic reservations"). ``--src`` runs the nodes
from another source tree (to compare with an earlier version).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from holepunch_node import (
    HOME_ADDRS,
    RELAY_ADDR,
    SRC,
    chat_node,
    nat_unavailable_reason,
    punch,
    two_nats,
)

#: Seconds a node may take to answer on its control socket, and to reserve.
NODE_START = 30.0
RESERVE_DEADLINE = 120.0


def _python(src: Path = SRC) -> list[str]:
    return [
        "env",
        f"PYTHONPATH={src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        sys.executable,
    ]


def _status(data_dir: Path) -> dict[str, Any] | None:
    from p2pchat.app import client
    from p2pchat.app.control import ControlError

    try:
        return dict(client.call(data_dir, "status"))
    except ControlError:
        return None


def _poll(what: str, check: Any, deadline: float) -> Any:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def first_reservation(src: Path) -> float:
    """One run: seconds from the NATed node's launch to its first own reservation."""
    with two_nats() as net, tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        public = []
        for i, port in enumerate((4001, 4004, 4005)):
            relay = "\n[relay]\nenabled = true" if i == 0 else ""
            data = Path(tmp) / f"p{i}"
            config = f'[node]\nlisten = ["/ip4/{RELAY_ADDR}/tcp/{port}"]{relay}'
            stack.enter_context(chat_node(net.public, data, config, autonat=True, src=src))
            status = _poll(f"public node {i}", lambda d=data: _status(d), NODE_START)
            public.append(f"/ip4/{RELAY_ADDR}/tcp/{port}/p2p/{status['peer_id']}")
        home = Path(tmp) / "a"
        config = f'[node]\nlisten = ["/ip4/{HOME_ADDRS[0]}/tcp/4002"]'
        started = time.monotonic()
        stack.enter_context(
            chat_node(net.homes[0], home, config, autonat=True, bootstrap=public, src=src)
        )

        def reserved() -> bool:
            status = _status(home)
            return status is not None and any("p2p-circuit" in a for a in status["advertised"])

        _poll("the NATed node's reservation", reserved, RESERVE_DEADLINE)
        return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--mib", type=int, default=16)
    parser.add_argument("--first-reservation", action="store_true")
    parser.add_argument("--src", type=Path, default=SRC)
    args = parser.parse_args()
    reason = nat_unavailable_reason()
    if reason is not None:
        print(f"cannot run: {reason}")
        return 1
    if args.first_reservation:
        times = [first_reservation(args.src) for _ in range(args.runs)]
        print(f"runs: {args.runs} (a node behind NAT a, three public AutoNAT servers, one relay)")
        print(f"start to first reservation: median {statistics.median(times):.1f} s "
              f"(min {min(times):.1f}, max {max(times):.1f})")  # fmt: skip
        return 0
    relayed_at: list[float] = []
    direct_at: list[float] = []
    punched = 0
    for _ in range(args.runs):
        with two_nats() as net:
            connected, result = punch(net, _python())
        relayed_at.append(connected["seconds"])
        if not result["relayed"]:
            punched += 1
            direct_at.append(result["seconds"])
    print(f"runs: {args.runs} (endpoint-independent NATs)")
    print(f"to a relayed connection: median {statistics.median(relayed_at) * 1000:.0f} ms")
    if direct_at:
        print(f"to a direct connection:  median {statistics.median(direct_at) * 1000:.0f} ms")
    print(f"hole punch success: {punched}/{args.runs}")
    with two_nats() as net:
        _, relayed = punch(net, _python(), dcutr=False, send_mib=args.mib)
    with two_nats() as net:
        _, direct = punch(net, _python(), send_mib=args.mib)
    print(
        f"throughput, {args.mib} MiB on one stream: relayed {relayed['mib_per_s']:.1f} MiB/s "
        f"({'relayed' if relayed['relayed'] else 'DIRECT?'}), "
        f"direct {direct['mib_per_s']:.1f} MiB/s "
        f"({'RELAYED?' if direct['relayed'] else 'direct'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
