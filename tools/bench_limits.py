"""What hostile peers cost a node: RSS growth and CPU per attacking connection (dev-only).

Starts one node (``p2pchat node``, its code from ``--victim-src``, default this checkout's
``src``) on 127.0.0.1 with mDNS off, and runs each attack against it from this process:

* ``ping-flood``: one connection sends yamux SYN pings and never reads (``--seconds`` at most);
* ``idle-connections``: ``--count`` upgraded connections from 127.0.0.1, plus as many idle TCP
  sockets that never start a handshake, all held open;
* ``silent-chat-streams``: one connection opens ``--count`` ``/p2pchat/1.0.0`` streams that never
  write.

For each it prints one JSON line: the victim's RSS growth (from /proc), its CPU seconds per
attacking connection, whether the attacking connection was cut off, and whether an honest ping
from another loopback address (127.0.0.2) still succeeds. Loopback only, bounded in count and time.

    PYTHONPATH=src python tools/bench_limits.py [--victim-src /path/to/src] [--count 300]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import trio

from p2pchat.identity import KeyPair, PeerID
from p2pchat.multiaddr import Multiaddr
from p2pchat.net.negotiate import negotiate_outbound
from p2pchat.net.secure import dial_secure
from p2pchat.net.upgrade import upgrade
from p2pchat.protocols import multistream as ms
from p2pchat.protocols import yamux

NODE_START_TIMEOUT = 30.0
HONEST_SOURCE = "127.0.0.2"
MAX_COUNT = 1000
PING = "/ipfs/ping/1.0.0"
CHAT = "/p2pchat/1.0.0"


class BenchError(Exception):
    """The node could not be started or measured."""


@contextmanager
def running_node(src: Path, data_dir: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A node whose code is ``src``, for the duration of the block; its process and address.

    Raises:
        BenchError: the node exited or did not print its address in time.
    """
    env = dict(os.environ, PYTHONPATH=str(src), PYTHONDONTWRITEBYTECODE="1")
    env.pop("P2PCHAT_DATA_DIR", None)
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "p2pchat", "--data-dir", str(data_dir), "node"),
            *("--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    try:
        assert process.stdout is not None
        address = process.stdout.readline().strip()
        if not address:
            raise BenchError("the node exited before printing its address")
        deadline = time.monotonic() + NODE_START_TIMEOUT
        while not (data_dir / "control.sock").exists():
            if time.monotonic() > deadline or process.poll() is not None:
                raise BenchError("the node did not open its control socket")
            time.sleep(0.01)
        yield process, address
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def _target(address: str) -> tuple[str, int, PeerID]:
    addr = Multiaddr.from_string(address)
    parts = str(addr.without_peer_id()).split("/")
    peer = addr.peer_id
    assert peer is not None
    return parts[2], int(parts[4]), peer


async def _honest_ping(address: str) -> bool:
    """An /ipfs/ping/1.0.0 exchange from 127.0.0.2, within 10 s."""
    host, port, peer = _target(address)
    with trio.move_on_after(10):
        try:
            tcp = await trio.open_tcp_stream(host, port, local_address=HONEST_SOURCE)
            conn = await upgrade(
                tcp, KeyPair.generate(), outbound=True, expected_peer=peer, handshake_timeout=10
            )
            async with trio.open_nursery() as nursery:
                await nursery.start(conn.run)
                stream = await conn.open_stream()
                await negotiate_outbound(stream, [PING])
                payload = os.urandom(32)
                await stream.send_all(payload)
                echoed = b""
                while len(echoed) < 32:
                    chunk = await stream.receive_some()
                    if not chunk:
                        break
                    echoed += chunk
                await conn.aclose()
                nursery.cancel_scope.cancel()
                return echoed == payload
        except Exception:
            return False
    return False


async def _secure_yamux(address: str) -> trio.abc.Stream:
    secure = await dial_secure(Multiaddr.from_string(address), KeyPair.generate())
    dialer = ms.Dialer([yamux.PROTOCOL_ID])
    await secure.send_all(dialer.data_to_send())
    while dialer.next_event() is ms.NEED_DATA:
        dialer.receive_data(await secure.receive_some())
    return secure


async def ping_flood(address: str, count: int, seconds: float) -> tuple[int, bool, bool]:
    """One connection sending pings without reading, an honest ping meanwhile."""
    del count
    secure = await _secure_yamux(address)
    pings = yamux.encode_header(yamux.FrameType.PING, yamux.Flag.SYN, 0, 1) * 4096
    cut = False
    healthy = False

    async def honest() -> None:
        nonlocal healthy
        await trio.sleep(min(1.0, seconds / 2))
        healthy = await _honest_ping(address)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(honest)
        with trio.move_on_after(seconds):
            try:
                for _ in range(100_000):
                    await secure.send_all(pings)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                cut = True
    await trio.aclose_forcefully(secure)
    return 1, cut, healthy


async def idle_connections(address: str, count: int, seconds: float) -> tuple[int, bool, bool]:
    """``count`` upgraded connections and ``count`` bare sockets from 127.0.0.1, held."""
    host, port, peer = _target(address)
    held: list[trio.abc.AsyncResource] = []
    refused = 0
    with trio.move_on_after(seconds):
        for _ in range(count):
            tcp = await trio.open_tcp_stream(host, port)
            try:
                conn = await upgrade(
                    tcp, KeyPair.generate(), outbound=True, expected_peer=peer, handshake_timeout=5
                )
            except Exception:
                refused += 1
                continue
            held.append(conn.secure)
        for _ in range(count):
            held.append(await trio.open_tcp_stream(host, port))
    healthy = await _honest_ping(address)  # while every attacking socket is held
    for resource in held:
        await trio.aclose_forcefully(resource)
    return 2 * count, refused > 0, healthy


async def silent_chat_streams(address: str, count: int, seconds: float) -> tuple[int, bool, bool]:
    """One connection opening ``count`` chat streams that never write."""
    host, port, peer = _target(address)
    tcp = await trio.open_tcp_stream(host, port)
    conn = await upgrade(
        tcp, KeyPair.generate(), outbound=True, expected_peer=peer, handshake_timeout=10
    )
    refused = 0
    async with trio.open_nursery() as nursery:
        await nursery.start(conn.run)
        with trio.move_on_after(seconds):
            streams = []
            for _ in range(count):
                try:
                    stream = await conn.open_stream()
                    await negotiate_outbound(stream, [CHAT])
                    streams.append(stream)
                except Exception:
                    refused += 1
        healthy = await _honest_ping(address)  # while the silent streams are held
        await conn.aclose()
        nursery.cancel_scope.cancel()
    return 1, refused > 0, healthy


#: (address, count, seconds) -> (attacking connections, attacker limited, honest ping ok)
Attack = Callable[[str, int, float], Awaitable[tuple[int, bool, bool]]]
ATTACKS: dict[str, Attack] = {
    "ping-flood": ping_flood,
    "idle-connections": idle_connections,
    "silent-chat-streams": silent_chat_streams,
}


def run_attack(src: Path, name: str, count: int, seconds: float) -> dict[str, object]:
    """Run one attack against a fresh node; its figures.

    Raises:
        BenchError: the node could not be started.
    """
    with tempfile.TemporaryDirectory() as tmp, running_node(src, Path(tmp)) as (process, addr):
        time.sleep(0.5)  # let the node settle before the baseline
        rss0, cpu0 = _rss(process.pid), _cpu(process.pid)
        peak = rss0

        async def main() -> tuple[int, bool, bool]:
            nonlocal peak

            async def sample() -> None:
                nonlocal peak
                while True:
                    peak = max(peak, _rss(process.pid))
                    await trio.sleep(0.05)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(sample)
                connections, limited, healthy = await ATTACKS[name](addr, count, seconds)
                nursery.cancel_scope.cancel()
            return connections, limited, healthy

        connections, limited, healthy = trio.run(main)
        cpu = _cpu(process.pid) - cpu0
        alive = process.poll() is None
    return {
        "attack": name,
        "count": count,
        "rss_growth_mb": round((peak - rss0) / 2**20, 1),
        "cpu_ms_per_connection": round(1000 * cpu / max(connections, 1), 2),
        "cpu_s": round(cpu, 2),
        "attacker_limited": limited,
        "honest_ping_ok": healthy,
        "node_alive": alive,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--victim-src", type=Path, default=Path(__file__).parent.parent / "src")
    parser.add_argument("--count", type=int, default=300, help="connections or streams (<=1000)")
    parser.add_argument("--seconds", type=float, default=8.0, help="time bound of each attack")
    parser.add_argument("--attack", choices=sorted(ATTACKS), action="append")
    args = parser.parse_args(argv)
    count = max(1, min(args.count, MAX_COUNT))
    seconds = max(0.5, min(args.seconds, 60.0))
    for name in args.attack or list(ATTACKS):
        print(json.dumps(run_attack(args.victim_src, name, count, seconds)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
