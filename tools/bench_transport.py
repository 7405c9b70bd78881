"""Benchmark: raw trio TCP, our stack and py-libp2p 0.8.1, side by side on 127.0.0.1.

One run prints four figures for three stacks, then how our stack stands against its targets:

* **raw trio TCP**: ``trio.open_tcp_stream`` / ``trio.SocketStream``, no security, no muxer;
* **ours**: ``open_host`` / ``Host.new_stream``: TCP + multistream-select + Noise XX + yamux
  (the muxer is inlined in the Noise handshake between two of our hosts), one stream;
* **py-libp2p** 0.8.1: TCP + multistream-select + Noise XX + multistream-select + yamux, one
  py-libp2p host talking to another, both run by ``tools/interop/pylibp2p_peer.py`` with the
  interpreter named by ``$P2PCHAT_INTEROP_PYTHON`` (default ``.venv-interop/bin/python``).

Every pair of peers is two processes (a node talks to another node), so the two ends never
share a core's time slices through one event loop.

What is measured
----------------
a. **Bulk throughput**: 256 MiB sent in 64 KiB writes on one stream, then EOF; three runs per
   stack, each on a new connection (py-libp2p: a new client process), median shown with the
   range (py-libp2p's figure varies from run to run by a factor of up to 2). Two clocks:

   - *receiver* (first byte to EOF): the receiving process notes the time it gets the first
     chunk and the time it reads EOF. Raw TCP and ours; py-libp2p's listener does not report
     times, so this is n/a there.
   - *sender* (first write to count): the sending process times from just before its first
     write until the receiver's 8-byte byte count (sent after it read EOF) arrives. This is the
     clock of py-libp2p's ``send`` command against its sink protocol (count until EOF, answer a
     big-endian uint64), and our sink and the raw TCP sink speak the same protocol, so all
     three stacks have this figure. It exceeds the receiver figure by about one round trip.

   The ratio ours / py-libp2p compares sender clocks; ours / raw TCP compares receiver clocks.
   For raw TCP and ours, each end also reports the CPU time its process used over its clock
   (``time.process_time``), as a share of that clock: the end near 100% is the bottleneck.
b. **Ping**: median round trip of 1,000 pings on one ``/ipfs/ping/1.0.0`` stream (32 bytes out,
   32 bytes echoed, timed by the pinger from write to full echo). Ours: our ``Pinger`` against a
   server process running our host. py-libp2p: its ``ping --count`` against its listener.
c. **New connection**: median over 50 of dial + upgrade to a usable muxed connection, timed at
   the dialer. Ours: ``Host.connect(addr)`` from one long-lived host, each connection closed
   with ``conn.aclose()`` before the next; every iteration is checked to be a NEW TCP
   connection (a new local port, a new connection object, the previous one closed), so
   ``Host.connect`` never reuses. py-libp2p's ``connect`` command (one host, ``disconnect``
   after each): ``IHost.connect`` with the library defaults (a fixed 250 ms happy-eyeballs
   wait in every dial), ``IHost.connect`` with ``max_connections_per_peer=1`` (no wait), and
   ``Swarm.dial_addr`` (dial + upgrade only). Its best is the lowest of the three medians.
   On both stacks identify then runs in the background; it is not part of the time. Ours also
   shows the dialer process's CPU time per connection (dial, upgrade, identify, close): the
   median is a wall-clock figure made of two processes' work and the round trips between them,
   and moves by over 1 ms with where the scheduler runs them (the two processes on two idle
   cores about 2 ms, sharing one core or a loaded machine about 3 ms), while the CPU figure
   does not; compare commits by it, or at a load average well under the CPU count.
d. **Concurrent streams**: one connection, 1,000 streams, each echoing 64 KiB. The client opens
   the streams (at most 128 negotiations in flight: yamux allows 256 unacknowledged streams and
   our ``open_stream`` refuses beyond instead of waiting), waits until ALL are open, then every
   stream sends its 64 KiB and EOF while reading the echo to EOF, and checks it. Total time is
   from the first open to the last verified echo (the echo phase alone is shown too). Peak RSS
   (VmHWM) of the client process and of the server process, each a fresh process running one
   host, with its resident size before the test for reference. py-libp2p: not measured (its
   peer script has no multi-stream command).

Targets: bulk ours >= 5x py-libp2p and >= 50% of raw TCP (it was 40% before the secure stream's
bulk work raised it); ping ours <= py-libp2p; new
connection ours < half of py-libp2p's best.

    python tools/bench_transport.py [--quick] [--json] [--mib 256] [--bulk-runs 3] [--pings 1000]
        [--connections 50] [--streams 1000] [--stream-kib 64] [--no-pylibp2p]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any, Final

import attrs
import trio

from benchlib import (
    INTEROP_PYTHON_ENV,
    PEER_SCRIPT,
    BenchError,
    interop_python,
    run_bench,
    run_json,
)
from p2pchat.identity import KeyPair
from p2pchat.multiaddr import Multiaddr
from p2pchat.net.host import Host, open_host
from p2pchat.net.muxer import MuxedStream
from p2pchat.net.ping import open_ping
from p2pchat.net.tcp import dial_tcp, listen_tcp, listener_multiaddr
from p2pchat.protocols import yamux

MIB: Final = 1024 * 1024
KIB: Final = 1024
WRITE_SIZE: Final = 64 * KIB
RECEIVE_SIZE: Final = 256 * KIB
LOOPBACK: Final = Multiaddr.from_string("/ip4/127.0.0.1/tcp/0")
# The test protocols of tools/interop/pylibp2p_peer.py, served here by our host as well: echo
# copies bytes back until EOF, then half-closes; sink counts bytes until EOF, answers the count
# as a big-endian uint64 and half-closes.
ECHO_PROTOCOL: Final = "/p2pchat-test/echo/1.0.0"
SINK_PROTOCOL: Final = "/p2pchat-test/sink/1.0.0"
COUNT_FORMAT: Final = ">Q"
COUNT_SIZE: Final = struct.calcsize(COUNT_FORMAT)
# Stream negotiations in flight at once in the concurrent-streams test; below yamux's backlog of
# 256 unacknowledged streams (specs/yamux.md), with room for identify's streams.
OPEN_WINDOW: Final = 128


# Bounds: every subprocess and phase has a deadline; servers exit on stdin EOF or this lifetime.
SERVER_LIFETIME: Final = 600.0
STARTUP_TIMEOUT: Final = 30.0
PHASE_TIMEOUT: Final = 180.0
EXIT_TIMEOUT: Final = 10.0


@attrs.frozen
class Sizes:
    """How much each figure does."""

    bulk_bytes: int
    bulk_runs: int
    pings: int
    connections: int
    streams: int
    stream_bytes: int


FULL: Final = Sizes(256 * MIB, 3, 1000, 50, 1000, 64 * KIB)
QUICK: Final = Sizes(32 * MIB, 1, 200, 10, 100, 64 * KIB)


# -- small helpers ---------------------------------------------------------------------------


def _emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def _memory_kib() -> dict[str, int]:
    """This process's resident size now and at its peak (VmRSS, VmHWM), in KiB."""
    found: dict[str, int] = {}
    try:
        with open("/proc/self/status") as status:
            for line in status:
                name, _, value = line.partition(":")
                if name in ("VmRSS", "VmHWM"):
                    found[name] = int(value.split()[0])
    except OSError:  # no procfs: ru_maxrss is KiB on Linux
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        found = {"VmRSS": peak, "VmHWM": peak}
    return {"rss_kib": found["VmRSS"], "peak_kib": found["VmHWM"]}


def _ms(seconds: float) -> float:
    return round(seconds * 1e3, 3)


def _summary_ms(times_ms: Sequence[float]) -> dict[str, float | int]:
    """Median, p10, p90, min, max of times already in milliseconds."""
    deciles = statistics.quantiles(times_ms, n=10) if len(times_ms) > 1 else [times_ms[0]] * 9
    return {
        "count": len(times_ms),
        "median_ms": round(statistics.median(times_ms), 3),
        "p10_ms": round(deciles[0], 3),
        "p90_ms": round(deciles[-1], 3),
        "min_ms": round(min(times_ms), 3),
        "max_ms": round(max(times_ms), 3),
    }


def _mib_s(total: int, seconds: float) -> float:
    return round(total / MIB / seconds, 1) if seconds > 0 else math.inf


async def _wait_stdin_eof() -> None:
    async with trio.lowlevel.FdStream(os.dup(sys.stdin.fileno())) as stdin:
        while await stdin.receive_some(4096):
            pass


async def _send_bulk(stream: trio.abc.HalfCloseableStream, total: int) -> tuple[float, float]:
    """Send ``total`` bytes in 64 KiB writes and EOF; return the seconds until the count came
    back, and the CPU seconds this process used meanwhile.

    Raises:
        BenchError: the receiver counted a different number of bytes.
    """
    block = bytes(WRITE_SIZE)
    start = time.perf_counter()
    cpu_start = time.process_time()
    for _ in range(total // WRITE_SIZE):
        await stream.send_all(block)
    if total % WRITE_SIZE:
        await stream.send_all(block[: total % WRITE_SIZE])
    await stream.send_eof()
    answer = b""
    while len(answer) < COUNT_SIZE:
        chunk = await stream.receive_some(COUNT_SIZE - len(answer))
        if not chunk:
            raise BenchError(f"sink closed after {len(answer)} bytes of its count")
        answer += chunk
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    (count,) = struct.unpack(COUNT_FORMAT, answer)
    if count != total:
        raise BenchError(f"sink counted {count} of {total} bytes")
    return seconds, cpu


async def _sink(stream: trio.abc.HalfCloseableStream) -> None:
    """Count bytes to EOF (emit the receiver's clock and CPU time), answer the count,
    half-close."""
    total = 0
    first = cpu_first = 0.0
    while chunk := await stream.receive_some(RECEIVE_SIZE):
        if not total:
            first, cpu_first = time.perf_counter(), time.process_time()
        total += len(chunk)
    seconds = time.perf_counter() - first if total else 0.0
    cpu = time.process_time() - cpu_first if total else 0.0
    _emit("sink", bytes=total, seconds=seconds, cpu_s=cpu)
    await stream.send_all(struct.pack(COUNT_FORMAT, total))
    await stream.send_eof()


async def _echo(stream: MuxedStream) -> None:
    while data := await stream.receive_some(RECEIVE_SIZE):
        await stream.send_all(data)
    await stream.send_eof()


# -- hidden modes: servers and the concurrent-streams client ----------------------------------


async def _serve_raw() -> None:
    """Raw TCP sink: one connection at a time until stdin closes."""
    (listener,) = await listen_tcp(LOOPBACK)
    with trio.move_on_after(SERVER_LIFETIME):
        async with listener, trio.open_nursery() as nursery:

            async def accept_loop() -> None:
                while True:
                    tcp = await listener.accept()
                    async with tcp:
                        await _sink(tcp)

            nursery.start_soon(accept_loop)
            _emit("listening", addr=str(listener_multiaddr(listener)), **_memory_kib())
            await _wait_stdin_eof()
            nursery.cancel_scope.cancel()
    _emit("exit", **_memory_kib())


async def _serve_host() -> None:
    """Our host serving sink, echo, ping and identify until stdin closes."""
    with trio.move_on_after(SERVER_LIFETIME):
        async with open_host(KeyPair.generate()) as host:
            host.set_stream_handler(SINK_PROTOCOL, _sink)
            # The concurrent-streams figure opens many echo streams from one peer: the yamux
            # stream limit bounds them, not the host's default per-protocol cap.
            host.set_stream_handler(
                ECHO_PROTOCOL, _echo, max_inbound_per_peer=yamux.DEFAULT_MAX_STREAMS
            )
            _emit("listening", addr=str(host.addrs[0]), **_memory_kib())
            await _wait_stdin_eof()
    _emit("exit", **_memory_kib())


async def _streams_client(addr_text: str, count: int, size: int) -> None:
    """Open ``count`` streams on one connection, then echo ``size`` bytes on each at once."""
    target = Multiaddr.from_string(addr_text)
    payload = os.urandom(size)
    async with open_host(KeyPair.generate()) as host:
        conn = await host.connect(target)
        before = _memory_kib()
        opened = 0
        all_open = trio.Event()
        limiter = trio.Semaphore(OPEN_WINDOW)
        open_done = 0.0

        async def one() -> None:
            nonlocal opened, open_done
            async with limiter:
                stream = await host.new_stream(target, [ECHO_PROTOCOL])
            opened += 1
            if opened == count:
                open_done = time.perf_counter()
                all_open.set()
            await all_open.wait()
            received = bytearray()
            async with stream, trio.open_nursery() as nursery:

                async def write() -> None:
                    await stream.send_all(payload)
                    await stream.send_eof()

                nursery.start_soon(write)
                while chunk := await stream.receive_some(RECEIVE_SIZE):
                    received += chunk
            if received != payload:
                raise BenchError(f"stream echoed {len(received)} bytes, not the {size} sent")

        start = time.perf_counter()
        with trio.fail_after(PHASE_TIMEOUT):
            async with trio.open_nursery() as nursery:
                for _ in range(count):
                    nursery.start_soon(one)
        end = time.perf_counter()
        after = _memory_kib()
        same_connection = host.connection(conn.remote_peer) is conn
    _emit(
        "streams",
        streams=count,
        bytes_per_stream=size,
        total_s=round(end - start, 4),
        open_s=round(open_done - start, 4),
        echo_s=round(end - open_done, 4),
        one_connection=same_connection,
        rss_before_kib=before["rss_kib"],
        peak_kib=after["peak_kib"],
    )


# -- subprocesses ----------------------------------------------------------------------------


class Child:
    """A subprocess that prints JSON lines on stdout; its stderr goes to a temporary file."""

    def __init__(self, name: str, process: trio.Process, stderr: IO[bytes]) -> None:
        self.name = name
        self.process = process
        self._stderr = stderr
        self._buffer = bytearray()
        #: The event the process printed when it was ready.
        self.first: dict[str, Any] = {}
        self.finished = False

    def stderr_tail(self, limit: int = 2000) -> str:
        """The end of what the process wrote on stderr."""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-limit:]

    async def event(
        self, expect: str, limit: float = PHASE_TIMEOUT, *, skip_others: bool = False
    ) -> dict[str, Any]:
        """The next JSON line that is event ``expect``.

        Raises:
            BenchError: the process ended, printed another event (unless ``skip_others``),
                or took longer than ``limit`` seconds.
        """
        assert self.process.stdout is not None
        with trio.move_on_after(limit):
            while True:
                while b"\n" not in self._buffer:
                    chunk = await self.process.stdout.receive_some(65536)
                    if not chunk:
                        raise BenchError(f"{self.name} exited early:\n{self.stderr_tail()}")
                    self._buffer += chunk
                line, _, rest = bytes(self._buffer).partition(b"\n")
                self._buffer = bytearray(rest)
                found: dict[str, Any] = json.loads(line)
                if found.get("event") == expect:
                    return found
                if not skip_others:
                    raise BenchError(f"{self.name}: expected {expect!r}, got {found}")
        raise BenchError(f"{self.name}: no {expect!r} within {limit:g} s")

    async def finish(self, final: str) -> dict[str, Any]:
        """Close stdin (the signal to stop), read up to event ``final`` and wait for the exit.

        Raises:
            BenchError: no ``final`` event in time, or the process did not exit.
        """
        self.finished = True
        assert self.process.stdin is not None
        await self.process.stdin.aclose()
        found = await self.event(final, EXIT_TIMEOUT, skip_others=True)
        with trio.move_on_after(EXIT_TIMEOUT):
            await self.process.wait()
            return found
        raise BenchError(f"{self.name} did not exit within {EXIT_TIMEOUT:g} s")


@asynccontextmanager
async def _child(name: str, cmd: Sequence[str], ready: str, final: str) -> AsyncIterator[Child]:
    """Run ``cmd`` for the block; yields once it printed event ``ready``.

    At the end of the block the process is told to stop (stdin closed) unless
    :meth:`Child.finish` was called already; whatever happens, it is killed if still running.

    Raises:
        BenchError: the process did not start, or did not stop cleanly.
    """
    with tempfile.TemporaryFile() as stderr:
        process = await trio.lowlevel.open_process(
            list(cmd), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr
        )
        child = Child(name, process, stderr)
        try:
            child.first = await child.event(ready, STARTUP_TIMEOUT)
            yield child
            if not child.finished:
                await child.finish(final)
        finally:
            with trio.CancelScope(shield=True):
                if process.returncode is None:
                    process.kill()
                    await process.wait()
                if process.stdin is not None:
                    await process.stdin.aclose()
                if process.stdout is not None:
                    await process.stdout.aclose()


def _self_cmd(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *args]


# -- the figures: raw TCP and ours -------------------------------------------------------------


def _pct(part: float, whole: float) -> float:
    return round(100.0 * part / whole, 1) if whole > 0 else 0.0


def _bulk_run(
    total: int, received: dict[str, Any] | None, sent: tuple[float, float | None]
) -> dict[str, Any]:
    """One run's figures from the sink's event (None: not reported) and the sender's times.

    Raises:
        BenchError: the sink counted a different number of bytes.
    """
    if received is not None and received["bytes"] != total:
        raise BenchError(f"receiver got {received['bytes']} of {total} bytes")
    sender_s, sender_cpu = sent
    return {
        "receiver_mib_s": None if received is None else _mib_s(total, received["seconds"]),
        "sender_mib_s": _mib_s(total, sender_s),
        "receiver_cpu_pct": None
        if received is None
        else _pct(received["cpu_s"], received["seconds"]),
        "sender_cpu_pct": None if sender_cpu is None else _pct(sender_cpu, sender_s),
    }


def _bulk_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the runs (and the range of the throughputs), and every run."""
    out: dict[str, Any] = {"runs": runs}
    for key in ("receiver_mib_s", "sender_mib_s", "receiver_cpu_pct", "sender_cpu_pct"):
        values = [run[key] for run in runs if run[key] is not None]
        out[key] = round(statistics.median(values), 1) if values else None
        if key.endswith("_mib_s"):
            out[key.replace("_mib_s", "_range")] = [min(values), max(values)] if values else None
    return out


async def bulk_raw(sizes: Sizes) -> dict[str, Any]:
    """Bulk throughput over bare trio TCP connections (one per run) to a sink process."""
    total = sizes.bulk_bytes
    runs: list[dict[str, Any]] = []
    async with _child("raw TCP sink", _self_cmd("--serve", "raw"), "listening", "exit") as server:
        for _ in range(sizes.bulk_runs):
            with trio.fail_after(PHASE_TIMEOUT):
                stream = await dial_tcp(Multiaddr.from_string(server.first["addr"]))
                async with stream:
                    sent = await _send_bulk(stream, total)
            runs.append(_bulk_run(total, await server.event("sink"), sent))
    return _bulk_summary(runs)


async def _new_connections(host: Host, addr: Multiaddr, count: int) -> dict[str, Any]:
    """Time ``count`` fresh connections, each checked to be a new TCP connection.

    Raises:
        BenchError: ``Host.connect`` handed back a connection it already had.
    """
    peer = addr.peer_id
    assert peer is not None
    previous = host.connection(peer)
    if previous is not None:
        await previous.aclose()
    ports: set[int] = set()
    times: list[float] = []
    cpu_start = time.process_time()
    for _ in range(count):
        if host.connection(peer) is not None:
            raise BenchError("a connection to the server is still live before dialing")
        start = time.perf_counter()
        conn = await host.connect(addr)
        times.append(_ms(time.perf_counter() - start))
        transport = conn.secure.transport_stream
        if not isinstance(transport, trio.SocketStream):
            raise BenchError("the connection does not run over a TCP socket")
        port = transport.socket.getsockname()[1]
        if port in ports or conn is previous:
            raise BenchError("Host.connect reused a connection")
        ports.add(port)
        previous = conn
        await conn.aclose()
        if not conn.is_closed:
            raise BenchError("conn.aclose() left the connection open")
    cpu_ms = _ms(time.process_time() - cpu_start) / count
    return {**_summary_ms(times), "distinct_local_ports": len(ports), "cpu_ms": round(cpu_ms, 3)}


async def ours(sizes: Sizes) -> dict[str, Any]:
    """Bulk, ping and new-connection figures of our stack, against one server process."""
    result: dict[str, Any] = {}
    async with (
        _child("our host", _self_cmd("--serve", "host"), "listening", "exit") as server,
        open_host(KeyPair.generate()) as host,
    ):
        addr = Multiaddr.from_string(server.first["addr"])
        total = sizes.bulk_bytes
        runs: list[dict[str, Any]] = []
        for _ in range(sizes.bulk_runs):  # a new connection for each run, as for the others
            with trio.fail_after(PHASE_TIMEOUT):
                stream = await host.new_stream(addr, [SINK_PROTOCOL])
                async with stream:
                    sent = await _send_bulk(stream, total)
                await stream.connection.aclose()
            runs.append(_bulk_run(total, await server.event("sink"), sent))
        result["bulk"] = _bulk_summary(runs)
        with trio.fail_after(PHASE_TIMEOUT):
            async with open_ping(host, addr) as pinger:
                rtts = [_ms(await pinger.ping()) for _ in range(sizes.pings)]
        result["ping"] = _summary_ms(rtts)
        with trio.fail_after(PHASE_TIMEOUT):
            result["connect"] = await _new_connections(host, addr, sizes.connections)
    return result


async def streams_ours(sizes: Sizes) -> dict[str, Any]:
    """The concurrent-streams figure: a fresh server process and a fresh client process."""
    async with _child("our host", _self_cmd("--serve", "host"), "listening", "exit") as server:
        client = await run_json(
            "concurrent-streams client",
            _self_cmd(
                "--client-streams",
                server.first["addr"],
                "--streams",
                str(sizes.streams),
                "--stream-kib",
                str(sizes.stream_bytes // KIB),
            ),
            PHASE_TIMEOUT + STARTUP_TIMEOUT,
        )
        if client.get("event") != "streams":
            raise BenchError(f"concurrent-streams client: {client}")
        ended = await server.finish("exit")
    return {
        "streams": client["streams"],
        "bytes_per_stream": client["bytes_per_stream"],
        "total_s": client["total_s"],
        "open_s": client["open_s"],
        "echo_s": client["echo_s"],
        "one_connection": client["one_connection"],
        "client_rss_before_kib": client["rss_before_kib"],
        "client_peak_kib": client["peak_kib"],
        "server_rss_before_kib": server.first["rss_kib"],
        "server_peak_kib": ended["peak_kib"],
    }


# -- the figures: py-libp2p ------------------------------------------------------------------


async def pylibp2p(python: Path, sizes: Sizes) -> dict[str, Any]:
    """Bulk, ping and new-connection figures of py-libp2p, all against one py-libp2p listener."""
    script = [str(python), str(PEER_SCRIPT)]
    limit = PHASE_TIMEOUT
    listen = [*script, "listen", "--port", "0", "--lifetime", str(SERVER_LIFETIME)]
    result: dict[str, Any] = {}
    async with _child("py-libp2p listener", listen, "listening", "closed") as server:
        addr = server.first["addrs"][0]

        def client(*args: str, conns: int | None = 1) -> list[str]:
            # conns=None keeps the library default of max_connections_per_peer (3).
            extra = ["--max-conns-per-peer", str(conns)] if conns is not None else []
            return [*script, *args[:1], addr, *args[1:], "--timeout", str(limit), *extra]

        runs: list[dict[str, Any]] = []
        for _ in range(sizes.bulk_runs):  # a new client process and connection for each run
            sent = await run_json(
                "py-libp2p send",
                client("send", "--bytes", str(sizes.bulk_bytes)),
                limit + STARTUP_TIMEOUT,
            )
            if sent.get("event") != "sink" or sent["bytes"] != sizes.bulk_bytes:
                raise BenchError(f"py-libp2p send: {sent}")
            runs.append(_bulk_run(sizes.bulk_bytes, None, (sent["seconds"], None)))
        result["bulk"] = _bulk_summary(runs)
        pinged = await run_json(
            "py-libp2p ping",
            client("ping", "--count", str(sizes.pings)),
            limit + STARTUP_TIMEOUT,
        )
        if pinged.get("event") != "ping" or len(pinged["rtt_ms"]) != sizes.pings:
            raise BenchError(f"py-libp2p ping: {pinged}")
        result["ping"] = _summary_ms(pinged["rtt_ms"])
        count = str(sizes.connections)
        variants = {
            "default": client("connect", "--count", count, conns=None),
            "max_conns_per_peer_1": client("connect", "--count", count),
            "dial_addr": client("connect", "--count", count, "--method", "dial-addr", conns=None),
        }
        connect: dict[str, Any] = {}
        for name, cmd in variants.items():
            out = await run_json(f"py-libp2p connect ({name})", cmd, limit + STARTUP_TIMEOUT)
            if out.get("event") != "connect" or len(out["times_ms"]) != sizes.connections:
                raise BenchError(f"py-libp2p connect ({name}): {out}")
            connect[name] = _summary_ms(out["times_ms"])
        result["connect"] = connect
    return result


# -- targets and report ----------------------------------------------------------------------


def _target(name: str, value: float, op: str, goal: float, basis: str) -> dict[str, Any]:
    met = value >= goal if op == ">=" else value <= goal if op == "<=" else value < goal
    return {
        "name": name,
        "value": round(value, 3),
        "op": op,
        "goal": goal,
        "met": met,
        "basis": basis,
    }


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Our figures against the goals (ratios; those needing py-libp2p are left out without it)."""
    ours_ = result["ours"]
    raw = result["raw_tcp"]
    out = [
        _target(
            "bulk: ours / raw trio TCP",
            ours_["bulk"]["receiver_mib_s"] / raw["bulk"]["receiver_mib_s"],
            ">=",
            0.50,
            "receiver clocks (first byte to EOF)",
        )
    ]
    py = result.get("pylibp2p")
    if py is None:
        return out
    best_name = min(py["connect"], key=lambda name: py["connect"][name]["median_ms"])
    best = py["connect"][best_name]["median_ms"]
    out += [
        _target(
            "bulk: ours / py-libp2p",
            ours_["bulk"]["sender_mib_s"] / py["bulk"]["sender_mib_s"],
            ">=",
            5.0,
            "sender clocks (first write to the sink's count)",
        ),
        _target(
            "ping: ours / py-libp2p",
            ours_["ping"]["median_ms"] / py["ping"]["median_ms"],
            "<=",
            1.0,
            "median round trip",
        ),
        _target(
            "new connection: ours / py-libp2p best",
            ours_["connect"]["median_ms"] / best,
            "<",
            0.5,
            f"medians; py-libp2p best is {best_name} ({best:.3f} ms)",
        ),
    ]
    return out


def _cell(value: Any, fmt: str = "{:.1f}") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return value
    return fmt.format(value)


def render(result: dict[str, Any]) -> str:
    """The human-readable table."""
    sizes = result["sizes"]
    raw, us, py = result["raw_tcp"], result["ours"], result.get("pylibp2p")
    width = 46
    lines: list[str] = []

    def row(label: str, a: Any, b: Any, c: Any, fmt: str = "{:.1f}") -> None:
        cells = "".join(f"{_cell(v, fmt):>13}" for v in (a, b, c))
        lines.append(f"  {label:<{width}}{cells}")

    def py_get(*keys: str) -> Any:
        node: Any = py
        for key in keys:
            if node is None:
                return "n/a"
            node = node.get(key)
        return node

    env = result["environment"]
    lines.append(
        f"Transport benchmark, 127.0.0.1, {env['cpus']} CPUs, Python {env['python']},"
        f" trio {env['trio']}, load average {env['load_1min']:.2f} at the start"
    )
    lines.append(f"  py-libp2p: {env['pylibp2p']}")
    lines.append("")
    lines.append(f"  {'':<{width}}{'raw trio TCP':>13}{'ours':>13}{'py-libp2p':>13}")
    mib = sizes["bulk_bytes"] // MIB
    lines.append(
        f"a. bulk, {mib} MiB in {WRITE_SIZE // KIB} KiB writes, one stream"
        f" (MiB/s, median of {sizes['bulk_runs']} runs)"
    )

    def span(node: Any) -> str:
        return "n/a" if node is None else f"{node[0]:.0f}-{node[1]:.0f}"

    for clock, label in (
        ("receiver", "receiver: first byte -> EOF"),
        ("sender", "sender: first write -> sink's count"),
    ):
        row(
            label,
            raw["bulk"][f"{clock}_mib_s"],
            us["bulk"][f"{clock}_mib_s"],
            py_get("bulk", f"{clock}_mib_s"),
        )
        if sizes["bulk_runs"] > 1:
            row(
                "  range over the runs",
                span(raw["bulk"][f"{clock}_range"]),
                span(us["bulk"][f"{clock}_range"]),
                span(py_get("bulk", f"{clock}_range")) if py is not None else "n/a",
            )
    for clock in ("receiver", "sender"):
        row(
            f"{clock} process CPU busy, % of its wall time",
            raw["bulk"][f"{clock}_cpu_pct"],
            us["bulk"][f"{clock}_cpu_pct"],
            "n/a",
            "{:.0f}",
        )
    lines.append(f"b. ping /ipfs/ping/1.0.0, {sizes['pings']} on one stream (ms)")
    for key, label in (("median_ms", "median"), ("p10_ms", "p10"), ("p90_ms", "p90")):
        row(label, "-", us["ping"][key], py_get("ping", key), "{:.3f}")
    lines.append(f"c. new connection: dial + upgrade, {sizes['connections']} in a row (median ms)")
    row(
        "ours: Host.connect, new TCP conn each time", "-", us["connect"]["median_ms"], "-", "{:.3f}"
    )
    row("  dialer process CPU per connection, ms", "-", us["connect"]["cpu_ms"], "-", "{:.3f}")
    for key, label in (
        ("default", "py-libp2p IHost.connect, library defaults"),
        ("max_conns_per_peer_1", "py-libp2p IHost.connect, max_conns_per_peer=1"),
        ("dial_addr", "py-libp2p Swarm.dial_addr (no dial_peer wait)"),
    ):
        row(label, "-", "-", py_get("connect", key, "median_ms"), "{:.3f}")
    st = us["streams"]
    lines.append(
        f"d. {st['streams']} concurrent streams x {st['bytes_per_stream'] // KIB} KiB echo,"
        " one connection"
    )
    not_done = "not done"
    row("total time, s (open all, then echo all)", "-", st["total_s"], not_done, "{:.3f}")
    row("  of which opening the streams, s", "-", st["open_s"], "", "{:.3f}")
    row("  of which echoing, s", "-", st["echo_s"], "", "{:.3f}")
    row("client peak RSS, MiB", "-", st["client_peak_kib"] / KIB, not_done)
    row("  client RSS before the test, MiB", "-", st["client_rss_before_kib"] / KIB, "")
    row("server peak RSS, MiB", "-", st["server_peak_kib"] / KIB, not_done)
    row("  server RSS before the test, MiB", "-", st["server_rss_before_kib"] / KIB, "")
    lines.append("")
    lines.append("targets")
    for t in result["targets"]:
        verdict = "met" if t["met"] else "MISSED"
        lines.append(
            f"  {t['name']:<40}{t['value']:>8.3f}  {t['op']:>2} {t['goal']:<4}  {verdict:<6}"
            f"  {t['basis']}"
        )
    if py is None:
        lines.append(f"  (py-libp2p targets not evaluated: {result['pylibp2p_skipped']})")
    lines.append("")
    lines.append(
        "Bulk clocks: receiver = the receiving process, first chunk to EOF; sender = the sending"
    )
    lines.append(
        "process, first write until the receiver's 8-byte count arrives (py-libp2p's `send`)."
    )
    lines.append(
        "Ours dials with the muxer inlined in Noise; py-libp2p negotiates yamux afterwards."
    )
    lines.append("py-libp2p has no concurrent-streams figure: its peer script has no such command.")
    return "\n".join(line.rstrip() for line in lines)


# -- driver ----------------------------------------------------------------------------------


def _environment(python: Path, use_pylibp2p: bool) -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "load_1min": os.getloadavg()[0],
        "python": sys.version.split()[0],
        "trio": trio.__version__,
        "pylibp2p": str(python) if use_pylibp2p else "skipped",
    }


async def run_all(sizes: Sizes, use_pylibp2p: bool) -> dict[str, Any]:
    """Every figure, then the targets."""
    python = interop_python()
    skipped: str | None = None
    if not use_pylibp2p:
        skipped = "--no-pylibp2p"
    elif not python.exists():
        skipped = f"no interpreter at {python} (set {INTEROP_PYTHON_ENV}; make interop-venv)"
    result: dict[str, Any] = {
        "sizes": attrs.asdict(sizes),
        "environment": _environment(python, skipped is None),
    }
    result["raw_tcp"] = {"bulk": await bulk_raw(sizes)}
    result["ours"] = await ours(sizes)
    result["ours"]["streams"] = await streams_ours(sizes)
    if skipped is None:
        result["pylibp2p"] = await pylibp2p(python, sizes)
    else:
        result["pylibp2p"] = None
        result["pylibp2p_skipped"] = skipped
    result["pylibp2p_streams"] = "not done: tools/interop/pylibp2p_peer.py has no such command"
    result["targets"] = targets(result)
    return result


async def _main(args: argparse.Namespace) -> None:
    base = QUICK if args.quick else FULL
    sizes = Sizes(
        bulk_bytes=(args.mib if args.mib is not None else base.bulk_bytes // MIB) * MIB,
        bulk_runs=args.bulk_runs if args.bulk_runs is not None else base.bulk_runs,
        pings=args.pings if args.pings is not None else base.pings,
        connections=args.connections if args.connections is not None else base.connections,
        streams=args.streams if args.streams is not None else base.streams,
        stream_bytes=(args.stream_kib if args.stream_kib is not None else base.stream_bytes // KIB)
        * KIB,
    )
    result = await run_all(sizes, not args.no_pylibp2p)
    print(json.dumps(result) if args.json else render(result))


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a quick look")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--mib", type=_positive, help="MiB per bulk transfer (256; quick 32)")
    parser.add_argument("--bulk-runs", type=_positive, help="bulk runs per stack (3; quick 1)")
    parser.add_argument("--pings", type=_positive, help="pings to time (1000; quick 200)")
    parser.add_argument("--connections", type=_positive, help="connections to time (50; quick 10)")
    parser.add_argument("--streams", type=_positive, help="concurrent streams (1000; quick 100)")
    parser.add_argument("--stream-kib", type=_positive, help="KiB echoed per stream (64)")
    parser.add_argument("--no-pylibp2p", action="store_true", help="skip the py-libp2p figures")
    parser.add_argument("--serve", choices=["raw", "host"], help=argparse.SUPPRESS)
    parser.add_argument("--client-streams", metavar="ADDR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve == "raw":
        run_bench("bench_transport", _serve_raw)
    elif args.serve == "host":
        run_bench("bench_transport", _serve_host)
    elif args.client_streams:
        streams = args.streams if args.streams is not None else FULL.streams
        kib = args.stream_kib if args.stream_kib is not None else FULL.stream_bytes // KIB
        run_bench("bench_transport", _streams_client, args.client_streams, streams, kib * KIB)
    else:
        run_bench("bench_transport", _main, args)


if __name__ == "__main__":
    main()
