"""Benchmark: raw Trio TCP against SecureStream (TCP + multistream + Noise) on 127.0.0.1.

Prints, from one run:
  * bulk throughput of raw trio TCP, of SecureStream with the AEAD on the event loop (the
    default) and of SecureStream with ``worker_threads`` on (default 512 MiB, in 64 KiB writes
    and in 4 MiB writes, as the muxer writes; ``--rounds`` rounds, 2 by default, since the
    machine may be shared), MiB/s measured at the receiver from its first byte to end of
    stream, the ratios against the target (>= 0.5), and how many batches each end sealed or
    opened in a worker thread (specs/secure-stream.md "Worker threads for bulk");
  * the same for the muxer's path through SecureStream, when it has it (``send_units`` of
    muxer-sized batches, four 64 KiB frames each behind a 12-byte header, and
    ``receive_borrowed``, which decrypts into a reused buffer): column "muxer path";
  * the median (and p10/p90) time of TCP dial + multistream-select + Noise XX handshake over
    100 connections, measured at the dialer.

Sender and receiver are separate processes (a node talks to another node), so encryption and
decryption run on different cores, as do the two ends of the raw TCP baseline.

    python tools/bench_secure.py [--mib 512] [--connections 100] [--rounds 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from typing import Any

import attrs
import trio

from p2pchat.identity import KeyPair
from p2pchat.multiaddr import Multiaddr
from p2pchat.net.secure import SecureStream, dial_secure, serve_secure
from p2pchat.net.tcp import dial_tcp, listen_tcp, listener_multiaddr

WRITE_SIZE = 64 * 1024
BIG_WRITE_SIZE = 4 * 1024 * 1024  # a muxer write (net/muxer.py WRITE_BATCH)
RECEIVE_SIZE = 256 * 1024
LOOPBACK = Multiaddr.from_string("/ip4/127.0.0.1/tcp/0")
MIB = 1024 * 1024
TARGET_RATIO = 0.5  # issue 18: ours / raw trio TCP for bulk


async def _drain(stream: trio.abc.Stream, borrowed: bool = False) -> tuple[int, float, float, int]:
    """Bytes, seconds and process CPU seconds from the first byte to EOF, thread batches."""
    total = 0
    first = cpu = 0.0
    while True:
        if borrowed:
            assert isinstance(stream, SecureStream)
            chunk = await stream.receive_borrowed(RECEIVE_SIZE)
        else:
            chunk = await stream.receive_some()
        if not chunk:
            break
        if not total:
            first = time.perf_counter()
            cpu = time.process_time()
        total += len(chunk)
    offloaded = getattr(stream, "offloaded_opens", 0)  # absent before the worker threads
    return total, time.perf_counter() - first, time.process_time() - cpu, offloaded


def _report(total: int, elapsed: float, cpu: float, offloaded: int) -> None:
    line = {"bytes": total, "seconds": elapsed, "cpu": cpu, "offloaded": offloaded}
    print(json.dumps(line), flush=True)


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
        stream.worker_threads = mode == "secure-threads"
        _report(*await _drain(stream, borrowed=mode == "secure-muxer"))
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


async def _send(stream: trio.abc.Stream, total: int, write_size: int) -> None:
    block = bytes(write_size)
    for _ in range(total // write_size):
        await stream.send_all(block)


@attrs.frozen
class Bulk:
    mib_s: float
    #: Process CPU seconds per GiB at each end (robust to a busy machine, unlike MiB/s).
    receiver_cpu_s_gib: float
    sender_cpu_s_gib: float
    seals: int = 0
    opens: int = 0


async def _timed_send(stream: trio.abc.Stream, total: int, write_size: int) -> float:
    cpu = time.process_time()
    await _send(stream, total, write_size)
    return time.process_time() - cpu


def _bulk(result: dict[str, Any], total: int, sender_cpu: float, seals: int = 0) -> Bulk:
    assert result["bytes"] == total, result
    gib = total / (1024 * MIB)
    return Bulk(
        mib_s=float(result["bytes"] / MIB / result["seconds"]),
        receiver_cpu_s_gib=result["cpu"] / gib,
        sender_cpu_s_gib=sender_cpu / gib,
        seals=seals,
        opens=result["offloaded"],
    )


async def _bulk_raw(total: int, write_size: int) -> Bulk:
    proc, addr = _start_server("raw")
    stream = await dial_tcp(addr)
    async with stream:
        cpu = await _timed_send(stream, total, write_size)
    return _bulk(_finish(proc), total, cpu)


async def _bulk_secure(total: int, write_size: int, threads: bool) -> Bulk:
    """Throughput, CPU, and the batches sealed / opened in a worker thread."""
    proc, addr = _start_server("secure-threads" if threads else "secure")
    stream = await dial_secure(addr, KeyPair.generate())
    stream.worker_threads = threads
    async with stream:
        cpu = await _timed_send(stream, total, write_size)
    seals = getattr(stream, "offloaded_seals", 0)  # absent before the worker threads
    return _bulk(_finish(proc), total, cpu, seals)


MUXER_FRAME = 64 * 1024
MUXER_BATCH = 4  # frames per send_units call: the muxer's 256 KiB write batch


async def _bulk_muxer_path(total: int) -> Bulk | None:
    """send_units / receive_borrowed, as the muxer drives the stream (None if absent)."""
    if not hasattr(SecureStream, "receive_borrowed"):
        return None
    proc, addr = _start_server("secure-muxer")
    stream = await dial_secure(addr, KeyPair.generate())
    header = bytes(12)
    block = bytes(MUXER_FRAME)
    units = [(header, block)] * MUXER_BATCH
    per_call = MUXER_BATCH * (len(header) + MUXER_FRAME)
    async with stream:
        cpu = time.process_time()
        for _ in range(total // per_call):
            await stream.send_units(units)
        sent = total // per_call * per_call
        cpu = time.process_time() - cpu
    result = _finish(proc)
    return _bulk(result, sent, cpu)


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
    bulk: list[dict[str, Any]] = []
    for round_no in range(1, args.rounds + 1):
        for write_size in (WRITE_SIZE, BIG_WRITE_SIZE):
            raw = await _bulk_raw(total, write_size)
            loop = await _bulk_secure(total, write_size, threads=False)
            threads = await _bulk_secure(total, write_size, threads=True)
            row: dict[str, Any] = {
                "round": round_no,
                "write_size": write_size,
                "raw": attrs.asdict(raw),
                "secure": attrs.asdict(loop),
                "threads": attrs.asdict(threads),
                "secure_over_raw": round(loop.mib_s / raw.mib_s, 3),
                "threads_over_raw": round(threads.mib_s / raw.mib_s, 3),
            }
            if write_size == WRITE_SIZE:
                muxer = await _bulk_muxer_path(total)
                if muxer is not None:
                    row["muxer_path"] = attrs.asdict(muxer)
                    row["muxer_path_over_raw"] = round(muxer.mib_s / raw.mib_s, 3)
            bulk.append(row)
    times = await _handshakes(args.connections)
    deciles = statistics.quantiles(times, n=10)
    result = {
        "bytes": total,
        "bulk": bulk,
        "handshake_connections": len(times),
        "handshake_median_ms": round(statistics.median(times) * 1e3, 3),
        "handshake_p10_ms": round(deciles[0] * 1e3, 3),
        "handshake_p90_ms": round(deciles[-1] * 1e3, 3),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"bulk transfer: {args.mib} MiB per run, 127.0.0.1; MiB/s at the receiver (first byte to"
        f" EOF); target SecureStream / raw >= {TARGET_RATIO:g}"
    )
    print(
        f"  {'round':<6}{'writes':>9}{'raw TCP':>9}{'Secure':>9}{'ratio':>7}"
        f"{'+threads':>10}{'ratio':>7}   CPU s/GiB receiver+sender: raw, Secure, +threads"
    )
    for row in bulk:
        raw, loop, threads = row["raw"], row["secure"], row["threads"]
        cpu = ", ".join(
            f"{b['receiver_cpu_s_gib']:.2f}+{b['sender_cpu_s_gib']:.2f}"
            for b in (raw, loop, threads)
        )
        print(
            f"  {row['round']:<6}{str(row['write_size'] // 1024) + ' KiB':>9}"
            f"{raw['mib_s']:>9.1f}{loop['mib_s']:>9.1f}{row['secure_over_raw']:>7.3f}"
            f"{threads['mib_s']:>10.1f}{row['threads_over_raw']:>7.3f}   {cpu}"
        )
        muxer = row.get("muxer_path")
        if muxer is not None:
            print(
                f"  {'':<6}{'muxer path':>18}{muxer['mib_s']:>9.1f}"
                f"{row['muxer_path_over_raw']:>7.3f}{'':>17}   "
                f"{muxer['receiver_cpu_s_gib']:.2f}+{muxer['sender_cpu_s_gib']:.2f}"
            )
    print(
        "  Secure: AEAD on the event loop (the default); +threads: worker_threads=True"
        " (batches sealed / opened in threads: "
        + ", ".join(f"{r['threads']['seals']}/{r['threads']['opens']}" for r in bulk)
        + "); muxer path: send_units of 4 x (12 + 64 KiB), receive_borrowed (the muxer's calls)"
    )
    print(f"dial + multistream + Noise XX handshake, {len(times)} connections:")
    print(
        f"  median {result['handshake_median_ms']:.3f} ms"
        f"  (p10 {result['handshake_p10_ms']:.3f} ms, p90 {result['handshake_p90_ms']:.3f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--mib", type=int, default=512, help="MiB per bulk transfer")
    parser.add_argument("--connections", type=int, default=100, help="handshakes to time")
    parser.add_argument("--rounds", type=int, default=2, help="bulk rounds (the machine is noisy)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--serve",
        choices=["raw", "secure", "secure-threads", "secure-muxer", "handshake"],
        help=argparse.SUPPRESS,
    )
    args = parser.parse_args()
    if args.serve == "raw":
        trio.run(_serve_raw)
    elif args.serve:
        trio.run(_serve_secure, args.serve)
    else:
        trio.run(_main, args)


if __name__ == "__main__":
    main()
