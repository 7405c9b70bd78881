"""Relay and hole-punch figures in namespaces (tools/holepunch_node.py ``two_nats``): the median
of N runs of the time from the dialing node's start (after its imports) to a relayed connection
and to a direct one, the hole-punch success rate behind endpoint-independent NATs, and the
throughput of one stream relayed (DCUtR off) and direct.

    sudo .venv/bin/python tools/bench_holepunch.py [--runs 20] [--mib 16]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from holepunch_node import nat_unavailable_reason, punch, two_nats


def _python() -> list[str]:
    src = str(Path(__file__).resolve().parents[1] / "src")
    return [
        "env",
        f"PYTHONPATH={src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        sys.executable,
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--mib", type=int, default=16)
    args = parser.parse_args()
    reason = nat_unavailable_reason()
    if reason is not None:
        print(f"cannot run: {reason}")
        return 1
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
