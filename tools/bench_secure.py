"""Benchmark: raw Trio TCP against SecureStream (TCP + multistream + Noise) on 127.0.0.1.

Prints, from one run:
  * bulk throughput of raw trio TCP and of SecureStream (default 512 MiB in 64 KiB writes),
    MiB/s measured at the receiver from its first byte to end of stream, and their ratio;
  * the median (and p10/p90) time of TCP dial + multistream-select + Noise XX handshake over
    100 connections, measured at the dialer.

Sender and receiver are separate processes (a node talks to another node), so encryption and
decryption run on different cores, as do the two ends of the raw TCP baseline.

    python tools/bench_secure.py [--mib 512] [--connections 100] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from typing import Any

import trio

from p2pchat.identity import KeyPair
from p2pchat.multiaddr import Multiaddr
from p2pchat.net.secure import SecureStream, dial_secure, serve_secure
from p2pchat.net.tcp import dial_tcp, listen_tcp, listener_multiaddr

WRITE_SIZE = 64 * 1024
RECEIVE_SIZE = 256 * 1024
LOOPBACK = Multiaddr.from_string("/ip4/127.0.0.1/tcp/0")
MIB = 1024 * 1024


async def _drain(stream: trio.abc.Stream) -> tuple[int, float]:
    total = 0
    first = 0.0
    while True:
        chunk = await stream.receive_some()
        if not chunk:
            break
        if not total:
            first = time.perf_counter()
        total += len(chunk)
    return total, time.perf_counter() - first


def _report(total: int, elapsed: float) -> None:
    print(json.dumps({"bytes": total, "seconds": elapsed}), flush=True)


async def _serve_raw() -> None:
    (listener,) = await listen_tcp(LOOPBACK)
    print(listener_multiaddr(listener), flush=True)
    async with listener:
        stream = await listener.accept()
        async with stream:
            _report(*await _drain(stream))


async def _serve_secure(mode: str) -> None:
    identity = KeyPair.generate()
    done = trio.Event()

    async def handler(stream: SecureStream) -> None:
        if mode == "handshake":
            return
        _report(*await _drain(stream))
        done.set()

    async with trio.open_nursery() as nursery:
        addrs = await nursery.start(
            lambda task_status: serve_secure(handler, [LOOPBACK], identity, task_status=task_status)
        )
        print(addrs[0], flush=True)
        if mode == "handshake":
            await trio.sleep_forever()  # the parent terminates us
        await done.wait()
        nursery.cancel_scope.cancel()


def _start_server(mode: str) -> tuple[subprocess.Popen[str], Multiaddr]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", mode],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, Multiaddr.from_string(proc.stdout.readline().strip())


def _finish(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    proc.wait(timeout=60)
    result: dict[str, Any] = json.loads(line)
    return result


async def _send(stream: trio.abc.Stream, total: int) -> None:
    block = bytes(WRITE_SIZE)
    for _ in range(total // WRITE_SIZE):
        await stream.send_all(block)


async def _bulk_raw(total: int) -> float:
    proc, addr = _start_server("raw")
    stream = await dial_tcp(addr)
    async with stream:
        await _send(stream, total)
    result = _finish(proc)
    assert result["bytes"] == total, result
    return float(result["bytes"] / MIB / result["seconds"])


async def _bulk_secure(total: int) -> float:
    proc, addr = _start_server("secure")
    stream = await dial_secure(addr, KeyPair.generate())
    async with stream:
        await _send(stream, total)
    result = _finish(proc)
    assert result["bytes"] == total, result
    return float(result["bytes"] / MIB / result["seconds"])


async def _handshakes(count: int) -> list[float]:
    proc, addr = _start_server("handshake")
    identity = KeyPair.generate()
    times: list[float] = []
    try:
        for _ in range(count):
            start = time.perf_counter()
            stream = await dial_secure(addr, identity)
            times.append(time.perf_counter() - start)
            await stream.aclose()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return times


async def _main(args: argparse.Namespace) -> None:
    total = args.mib * MIB
    raw = await _bulk_raw(total)
    secure = await _bulk_secure(total)
    times = await _handshakes(args.connections)
    deciles = statistics.quantiles(times, n=10)
    result = {
        "bytes": total,
        "write_size": WRITE_SIZE,
        "raw_tcp_mib_s": round(raw, 1),
        "secure_mib_s": round(secure, 1),
        "secure_over_raw": round(secure / raw, 3),
        "handshake_connections": len(times),
        "handshake_median_ms": round(statistics.median(times) * 1e3, 3),
        "handshake_p10_ms": round(deciles[0] * 1e3, 3),
        "handshake_p90_ms": round(deciles[-1] * 1e3, 3),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"bulk transfer: {args.mib} MiB in {WRITE_SIZE // 1024} KiB writes, 127.0.0.1")
    print(f"  raw trio TCP         {raw:9.1f} MiB/s")
    print(f"  SecureStream (Noise) {secure:9.1f} MiB/s   ratio {secure / raw:.3f}")
    print(f"dial + multistream + Noise XX handshake, {len(times)} connections:")
    print(
        f"  median {result['handshake_median_ms']:.3f} ms"
        f"  (p10 {result['handshake_p10_ms']:.3f} ms, p90 {result['handshake_p90_ms']:.3f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--mib", type=int, default=512, help="MiB per bulk transfer")
    parser.add_argument("--connections", type=int, default=100, help="handshakes to time")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--serve", choices=["raw", "secure", "handshake"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve == "raw":
        trio.run(_serve_raw)
    elif args.serve:
        trio.run(_serve_secure, args.serve)
    else:
        trio.run(_main, args)


if __name__ == "__main__":
    main()
