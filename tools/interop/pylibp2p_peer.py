"""A py-libp2p 0.8.1 peer, driven as a subprocess to prove interop with a real libp2p.

Type checking: this file imports py-libp2p, which is installed only in the separate interop
virtualenv (``make interop-venv`` -> .venv-interop). The project's mypy cannot see libp2p, so
tools/interop is excluded from mypy in pyproject.toml; ruff check and ruff format still apply.
Run it with that interpreter::

    $P2PCHAT_INTEROP_PYTHON tools/interop/pylibp2p_peer.py listen --port 0

Theory of operation
-------------------
Every command builds one py-libp2p host: an Ed25519 identity (random, or from ``--seed``), TCP
only, Noise as the ONLY security protocol (py-libp2p's default list would also offer TLS, secio
and plaintext) and yamux ``/yamux/1.0.0`` as the only muxer (the default list adds mplex). The
host always listens on 127.0.0.1 (port 0 for the client commands, so that the host answers an
identify request at once: py-libp2p delays its identify reply by up to 0.5 s while it has no
listen address). Two py-libp2p background behaviours are switched off because they make a test
peer do things nobody asked for: the auto-connector (it re-dials peers learned from identify)
and identify's observed-address discovery (so identify lists exactly the listen addresses).

``listen`` serves ping and identify (built into every py-libp2p host), an echo protocol, a sink
protocol and, when the installed py-libp2p has it, perf. It prints one ``listening`` line, one
``served`` line per finished echo/sink stream, and runs until stdin reaches EOF (only watched
when stdin is a pipe or socket, so ``stdin=DEVNULL`` does not stop it), SIGTERM/SIGINT, or
``--lifetime`` seconds.

The client commands dial ADDR (which must carry ``/p2p/<peer id>`` and a loopback IP), run
their exchange under one ``--timeout`` deadline and print one JSON object. Failures print
``{"event": "error", ...}`` and exit with status 1. stdout carries only JSON lines; logs go to
stderr (``-v`` for ours, ``LIBP2P_DEBUG=DEBUG`` for py-libp2p's own).

py-libp2p's ``dial_peer`` starts each address dial and then waits up to 250 ms (a happy-eyeballs
head start) unless the dial that succeeded brought the peer to ``max_connections_per_peer``
connections. With the default of 3 every first connection to a peer therefore costs >= 250 ms;
``--max-conns-per-peer 1`` removes the wait. ``connect --method dial-addr`` measures
``Swarm.dial_addr`` instead, which is TCP connect + multistream + Noise XX + multistream +
yamux start and registration, without that wait.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import logging
import os
import signal
import stat
import statistics
import struct
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair as create_ed25519_key_pair
from libp2p.crypto.pb import crypto_pb2
from libp2p.crypto.serialization import deserialize_public_key
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.host.ping import ID as PING_PROTOCOL_ID
from libp2p.identity.identify.identify import ID as IDENTIFY_PROTOCOL_ID
from libp2p.identity.identify.pb.identify_pb2 import Identify
from libp2p.network.config import ConnectionConfig
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from multiaddr import Multiaddr

try:
    from libp2p.perf import PROTOCOL_NAME as PERF_PROTOCOL_NAME
    from libp2p.perf import PerfService
except ImportError:  # py-libp2p releases before perf existed
    PERF_PROTOCOL_NAME = None
    PerfService = None

log = logging.getLogger("pylibp2p_peer")

# Test protocols of this project (not libp2p specs): echo copies every byte back until EOF and
# then half-closes; sink counts bytes until EOF and answers with a big-endian uint64 count.
ECHO_PROTOCOL: Final = "/p2pchat-test/echo/1.0.0"
SINK_PROTOCOL: Final = "/p2pchat-test/sink/1.0.0"
# libp2p/specs ping/ping.md: 32 random bytes, echoed back.
PING_PAYLOAD_SIZE: Final = 32
# Largest read we ask a stream for, and the write size of send/perf (perf.md uses 64 KiB too).
CHUNK_SIZE: Final = 64 * 1024
SINK_COUNT_SIZE: Final = 8
# An identify message is small (identify.md recommends well under 4 KiB); refuse a flood.
MAX_IDENTIFY_BYTES: Final = 64 * 1024
MAX_COUNT: Final = 100_000
# Period of the pattern the echo command sends; odd, so it never lines up with frame sizes.
PATTERN_PERIOD: Final = 65_521


class PeerError(Exception):
    """The remote peer broke the exchange (short read, wrong echo, wrong count)."""


class UsageError(Exception):
    """A command-line value this tool refuses (for example a non-loopback address)."""


def emit(event: str, **fields: Any) -> None:
    """Write one JSON object as one line on stdout and flush it."""
    sys.stdout.write(json.dumps({"event": event, **fields}, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


# -- addresses and hosts ------------------------------------------------------------------------


def _check_loopback(maddr: Multiaddr) -> None:
    """Check that ``maddr`` is TCP on a loopback address.

    Raises:
        UsageError: the address is not ``/ip4|ip6/<loopback>/tcp/<port>[/p2p/<id>]``.
    """
    names = [proto.name for proto in maddr.protocols()]
    if len(names) < 2 or names[0] not in ("ip4", "ip6") or names[1] != "tcp":
        raise UsageError(f"expected /ip4|ip6/<ip>/tcp/<port>/p2p/<id>, got {maddr}")
    if not ipaddress.ip_address(maddr.value_for_protocol(names[0])).is_loopback:
        raise UsageError(f"only loopback addresses are allowed, got {maddr}")


def parse_peer_addr(text: str) -> PeerInfo:
    """Parse a dialable loopback multiaddr that ends in ``/p2p/<peer id>``.

    Raises:
        UsageError: malformed, not loopback TCP, or without a peer ID.
    """
    try:
        maddr = Multiaddr(text)
    except Exception as exc:
        raise UsageError(f"bad multiaddr {text!r}: {exc}") from exc
    _check_loopback(maddr)
    if "p2p" not in [proto.name for proto in maddr.protocols()]:
        raise UsageError(f"the address must end in /p2p/<peer id>: {text}")
    return info_from_p2p_addr(maddr)


def build_host(seed: bytes | None, max_conns_per_peer: int, listen_addr: Multiaddr) -> Any:
    """Create (not start) a py-libp2p host: Ed25519 identity, TCP, Noise only, yamux only."""
    key_pair = create_ed25519_key_pair(seed)
    # One X25519 Noise static key per host, reused for every connection (as new_host does).
    noise = NoiseTransport(key_pair, noise_privkey=create_x25519_key_pair().private_key)
    return new_host(
        key_pair=key_pair,
        sec_opt={NOISE_PROTOCOL_ID: noise},
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        listen_addrs=[listen_addr],
        connection_config=ConnectionConfig(max_connections_per_peer=max_conns_per_peer),
        disable_identify_address_discovery=True,
    )


@contextlib.asynccontextmanager
async def running_host(host: Any, listen_addr: Multiaddr) -> Any:
    """Start ``host`` listening on ``listen_addr``; stop it on exit."""
    async with host.run([listen_addr]):
        # The auto-connector re-dials every peer it has addresses for (from identify) whenever
        # the connection count is below its watermarks, i.e. always in a test.
        auto_connector = getattr(host.get_network(), "auto_connector", None)
        if auto_connector is not None:
            await auto_connector.stop()
        yield host


def full_addrs(host: Any) -> list[str]:
    """The host's listen addresses with ``/p2p/<own id>`` appended."""
    return [f"{addr}/p2p/{host.get_id()}" for addr in host.get_transport_addrs()]


# -- stream helpers -----------------------------------------------------------------------------


async def read_some(stream: Any, max_bytes: int = CHUNK_SIZE) -> bytes:
    """Read up to ``max_bytes``; ``b""`` means the peer closed its write side."""
    try:
        data: bytes = await stream.read(max_bytes)
    except StreamEOF:
        return b""
    return data


async def read_exactly(stream: Any, size: int) -> bytes:
    """Read exactly ``size`` bytes.

    Raises:
        PeerError: the stream ended first.
    """
    buf = bytearray()
    while len(buf) < size:  # each pass gains >= 1 byte or raises
        chunk = await read_some(stream, size - len(buf))
        if not chunk:
            raise PeerError(f"stream ended after {len(buf)} of {size} bytes")
        buf += chunk
    return bytes(buf)


async def read_to_eof(stream: Any, limit: int) -> bytes:
    """Read until EOF.

    Raises:
        PeerError: more than ``limit`` bytes arrived.
    """
    buf = bytearray()
    while chunk := await read_some(stream):
        buf += chunk
        if len(buf) > limit:
            raise PeerError(f"peer sent more than {limit} bytes")
    return bytes(buf)


class Pattern:
    """A reproducible byte stream: byte ``i`` is ``block[i % PATTERN_PERIOD]``."""

    def __init__(self) -> None:
        block = os.urandom(PATTERN_PERIOD)
        self._tiled = block * (CHUNK_SIZE // PATTERN_PERIOD + 2)

    def slice(self, offset: int, size: int) -> bytes:
        """Bytes ``offset .. offset + size`` of the stream."""
        out = bytearray()
        while len(out) < size:  # one pass per CHUNK_SIZE
            start = (offset + len(out)) % PATTERN_PERIOD
            take = min(size - len(out), CHUNK_SIZE)
            out += self._tiled[start : start + take]
        return bytes(out)


# -- listen -------------------------------------------------------------------------------------


def _stream_peer(stream: Any) -> str:
    return str(stream.muxed_conn.peer_id)


async def handle_echo(stream: Any) -> None:
    """Copy every byte back until EOF, then half-close (this project's echo protocol)."""
    total = 0
    try:
        while chunk := await read_some(stream):
            await stream.write(chunk)
            total += len(chunk)
        await stream.close()
    except Exception as exc:
        peer = _stream_peer(stream)
        log.warning("echo stream from %s failed after %d bytes: %r", peer, total, exc)
        with contextlib.suppress(Exception):
            await stream.reset()
        return
    emit("served", protocol=ECHO_PROTOCOL, peer_id=_stream_peer(stream), bytes=total)


async def handle_sink(stream: Any) -> None:
    """Count bytes until EOF, answer with the count as a big-endian uint64, then half-close."""
    total = 0
    try:
        while chunk := await read_some(stream):
            total += len(chunk)
        await stream.write(struct.pack(">Q", total))
        await stream.close()
    except Exception as exc:
        peer = _stream_peer(stream)
        log.warning("sink stream from %s failed after %d bytes: %r", peer, total, exc)
        with contextlib.suppress(Exception):
            await stream.reset()
        return
    emit("served", protocol=SINK_PROTOCOL, peer_id=_stream_peer(stream), bytes=total)


async def _wait_stdin_eof() -> None:
    """Return when stdin reaches EOF; wait forever if stdin is not a pipe or socket."""
    mode = os.fstat(sys.stdin.fileno()).st_mode
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        await trio.sleep_forever()
    async with trio.lowlevel.FdStream(os.dup(sys.stdin.fileno())) as stdin:
        while await stdin.receive_some(4096):  # ends at EOF; the lifetime scope bounds it
            pass


async def cmd_listen(args: argparse.Namespace) -> int:
    listen_addr = Multiaddr(f"/ip4/127.0.0.1/tcp/{args.port}")
    host = build_host(args.seed, args.max_conns_per_peer, listen_addr)
    host.set_stream_handler(TProtocol(args.echo_proto), handle_echo)
    host.set_stream_handler(TProtocol(SINK_PROTOCOL), handle_sink)
    reason = "lifetime"
    # The signal handlers are in place before "listening" is printed, so a test may send
    # SIGTERM as soon as it has read that line.
    with (
        trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals,
        trio.move_on_after(args.lifetime),
    ):
        async with running_host(host, listen_addr), trio.open_nursery() as nursery:
            if PerfService is not None:
                await PerfService(host).start()

            async def stop_on_stdin_eof() -> None:
                nonlocal reason
                await _wait_stdin_eof()
                reason = "stdin-eof"
                nursery.cancel_scope.cancel()

            async def stop_on_signal() -> None:
                nonlocal reason
                async for signum in signals:  # the first signal ends the loop
                    reason = f"signal:{signal.Signals(signum).name}"
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(stop_on_stdin_eof)
            nursery.start_soon(stop_on_signal)
            emit(
                "listening",
                addrs=full_addrs(host),
                peer_id=str(host.get_id()),
                protocols=sorted(str(p) for p in host.get_mux().get_protocols() if p),
            )
    emit("closed", reason=reason)
    return 0


# -- client commands ----------------------------------------------------------------------------


async def _connect(host: Any, peer: PeerInfo) -> float:
    """Connect to ``peer``; return the time it took in seconds."""
    start = time.perf_counter()
    await host.connect(peer)
    return time.perf_counter() - start


async def cmd_ping(host: Any, args: argparse.Namespace) -> None:
    peer = parse_peer_addr(args.addr)
    connect_s = await _connect(host, peer)
    stream = await host.new_stream(peer.peer_id, [PING_PROTOCOL_ID])
    rtts: list[float] = []
    for _ in range(args.count):
        payload = os.urandom(PING_PAYLOAD_SIZE)
        start = time.perf_counter()
        await stream.write(payload)
        answer = await read_exactly(stream, PING_PAYLOAD_SIZE)
        rtts.append(_ms(time.perf_counter() - start))
        if answer != payload:
            raise PeerError("ping answer differs from the payload")
    await stream.close()
    emit("ping", peer_id=str(peer.peer_id), rtt_ms=rtts, connect_ms=_ms(connect_s))


def _decode_identify(raw: bytes) -> tuple[Any, str]:
    """Decode an identify reply: uvarint-length-prefixed (spec) or a bare protobuf (old peers).

    Raises:
        PeerError: neither form parses.
    """
    length, shift, pos = 0, 0, 0
    while pos < min(len(raw), 10):  # a uvarint has at most 10 bytes
        byte = raw[pos]
        length |= (byte & 0x7F) << shift
        shift += 7
        pos += 1
        if not byte & 0x80:
            break
    candidates = [("length-prefixed", raw[pos:])] if pos + length == len(raw) else []
    candidates.append(("raw", raw))
    for framing, body in candidates:
        msg = Identify()
        try:
            msg.ParseFromString(body)
        except Exception:  # protobuf's DecodeError; try the next framing
            continue
        if msg.HasField("public_key"):
            return msg, framing
    raise PeerError(f"undecodable identify reply ({len(raw)} bytes)")


def _addr_text(data: bytes) -> str:
    try:
        return str(Multiaddr(data))
    except Exception:
        return "0x" + data.hex()


def _open_record(envelope: bytes) -> dict[str, Any] | str | None:
    """The peer record in a signed envelope as py-libp2p verifies it, or why it refuses it."""
    if not envelope:
        return None
    from libp2p.peer.envelope import consume_envelope

    try:
        _env, record = consume_envelope(envelope, "libp2p-peer-record")
    except Exception as exc:  # py-libp2p's refusal, reported to the test
        return f"refused: {type(exc).__name__}: {exc}"
    return {
        "peer": str(record.peer_id),
        "seq": record.seq,
        "addrs": [str(a) for a in record.addrs],
    }


async def cmd_identify(host: Any, args: argparse.Namespace) -> None:
    peer = parse_peer_addr(args.addr)
    connect_s = await _connect(host, peer)
    stream = await host.new_stream(peer.peer_id, [IDENTIFY_PROTOCOL_ID])
    raw = await read_to_eof(stream, MAX_IDENTIFY_BYTES)
    with contextlib.suppress(Exception):
        await stream.close()
    msg, framing = _decode_identify(raw)
    key = crypto_pb2.PublicKey.FromString(msg.public_key)
    emit(
        "identify",
        peer_id=str(peer.peer_id),
        protocol_version=msg.protocol_version,
        agent_version=msg.agent_version,
        listen_addrs=[_addr_text(addr) for addr in msg.listen_addrs],
        protocols=list(msg.protocols),
        observed_addr=_addr_text(msg.observed_addr) if msg.observed_addr else None,
        public_key_type=crypto_pb2.KeyType.Name(key.key_type),
        public_key_matches_peer_id=ID.from_pubkey(deserialize_public_key(msg.public_key))
        == peer.peer_id,
        signed_peer_record=len(msg.signedPeerRecord) > 0,
        signed_peer_record_opened=_open_record(bytes(msg.signedPeerRecord)),
        framing=framing,
        message_bytes=len(raw),
        connect_ms=_ms(connect_s),
    )


async def cmd_echo(host: Any, args: argparse.Namespace) -> None:
    peer = parse_peer_addr(args.addr)
    connect_s = await _connect(host, peer)
    stream = await host.new_stream(peer.peer_id, [TProtocol(args.echo_proto)])
    pattern = Pattern()
    total = args.bytes

    async def writer() -> None:
        sent = 0
        while sent < total:
            size = min(args.write_size, total - sent)
            await stream.write(pattern.slice(sent, size))
            sent += size
        await stream.close_write()

    start = time.perf_counter()
    received = 0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        while chunk := await read_some(stream):
            if received + len(chunk) > total:
                raise PeerError(f"echo returned more than the {total} bytes sent")
            if chunk != pattern.slice(received, len(chunk)):
                raise PeerError(f"echo content differs at or after byte {received}")
            received += len(chunk)
    seconds = time.perf_counter() - start
    if received != total:
        raise PeerError(f"echo returned {received} of {total} bytes")
    emit(
        "echo",
        peer_id=str(peer.peer_id),
        bytes=total,
        seconds=round(seconds, 6),
        mib_per_s=round(total / seconds / 2**20, 3) if seconds > 0 else None,
        connect_ms=_ms(connect_s),
    )


async def cmd_send(host: Any, args: argparse.Namespace) -> None:
    peer = parse_peer_addr(args.addr)
    connect_s = await _connect(host, peer)
    stream = await host.new_stream(peer.peer_id, [TProtocol(SINK_PROTOCOL)])
    block = os.urandom(CHUNK_SIZE)
    total = args.bytes
    start = time.perf_counter()
    sent = 0
    while sent < total:
        size = min(CHUNK_SIZE, total - sent)
        await stream.write(block[:size])
        sent += size
    await stream.close_write()
    (count,) = struct.unpack(">Q", await read_exactly(stream, SINK_COUNT_SIZE))
    seconds = time.perf_counter() - start
    with contextlib.suppress(Exception):
        await stream.close()
    if count != total:
        raise PeerError(f"sink counted {count} of {total} bytes")
    emit(
        "sink",
        peer_id=str(peer.peer_id),
        bytes=total,
        seconds=round(seconds, 6),
        mib_per_s=round(total / seconds / 2**20, 3) if seconds > 0 else None,
        connect_ms=_ms(connect_s),
    )


async def cmd_perf(host: Any, args: argparse.Namespace) -> None:
    if PERF_PROTOCOL_NAME is None:
        raise UsageError("this py-libp2p has no perf protocol")
    peer = parse_peer_addr(args.addr)
    connect_s = await _connect(host, peer)
    stream = await host.new_stream(peer.peer_id, [TProtocol(PERF_PROTOCOL_NAME)])
    block = bytes(CHUNK_SIZE)
    start = time.perf_counter()
    # libp2p/specs perf/perf.md: uint64 big-endian bytes-to-send-back, then the upload, then
    # close-write; the server answers with that many bytes and closes.
    await stream.write(struct.pack(">Q", args.download))
    sent = 0
    while sent < args.upload:
        size = min(CHUNK_SIZE, args.upload - sent)
        await stream.write(block[:size])
        sent += size
    await stream.close_write()
    upload_s = time.perf_counter() - start
    received = 0
    while chunk := await read_some(stream):
        received += len(chunk)
    seconds = time.perf_counter() - start
    if received != args.download:
        raise PeerError(f"perf server sent {received} of {args.download} bytes")
    emit(
        "perf",
        peer_id=str(peer.peer_id),
        upload_bytes=args.upload,
        download_bytes=received,
        upload_seconds=round(upload_s, 6),
        seconds=round(seconds, 6),
        connect_ms=_ms(connect_s),
    )


async def cmd_connect(host: Any, args: argparse.Namespace) -> None:
    peer = parse_peer_addr(args.addr)
    network = host.get_network()
    times: list[float] = []
    for _ in range(args.count):
        start = time.perf_counter()
        if args.method == "host-connect":
            await host.connect(peer)
        else:
            # A new connection even when one exists: no reuse, no happy-eyeballs wait.
            await network.dial_addr(peer.addrs[0], peer.peer_id)
        times.append(_ms(time.perf_counter() - start))
        await host.disconnect(peer.peer_id)
    emit(
        "connect",
        peer_id=str(peer.peer_id),
        method=args.method,
        max_conns_per_peer=args.max_conns_per_peer,
        count=args.count,
        median_ms=round(statistics.median(times), 3),
        min_ms=min(times),
        max_ms=max(times),
        times_ms=times,
    )


ClientCommand = Callable[[Any, argparse.Namespace], Awaitable[None]]
CLIENT_COMMANDS: Final[dict[str, ClientCommand]] = {
    "ping": cmd_ping,
    "identify": cmd_identify,
    "echo": cmd_echo,
    "send": cmd_send,
    "perf": cmd_perf,
    "connect": cmd_connect,
}


async def run_client(args: argparse.Namespace) -> int:
    listen_addr = Multiaddr("/ip4/127.0.0.1/tcp/0")
    with trio.fail_after(args.timeout):
        host = build_host(args.seed, args.max_conns_per_peer, listen_addr)
        async with running_host(host, listen_addr):
            await CLIENT_COMMANDS[args.command](host, args)
    return 0


# -- command line -------------------------------------------------------------------------------


def _leaf(exc: BaseException) -> BaseException:
    """The first non-group exception inside ``exc``."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _describe(exc: BaseException) -> str:
    """``exc``'s message followed by those of its causes (py-libp2p wraps errors deeply)."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(parts) < 8:
        seen.add(id(current))
        text = str(current) or type(current).__name__
        if text not in parts:
            parts.append(text)
        current = current.__cause__ or current.__context__
    return " <- ".join(parts)


async def run(args: argparse.Namespace) -> int:
    try:
        if args.command == "listen":
            return await cmd_listen(args)
        return await run_client(args)
    except Exception as exc:
        leaf = _leaf(exc)
        if isinstance(leaf, trio.TooSlowError):
            message = f"timed out after {args.timeout} s"
        else:
            message = _describe(leaf)
        log.debug("%s failed", args.command, exc_info=exc)
        emit("error", command=args.command, error=type(leaf).__name__, message=message)
        return 1


def _seed(text: str) -> bytes:
    try:
        seed = bytes.fromhex(text)
    except ValueError:
        seed = b""
    if len(seed) != 32:
        raise argparse.ArgumentTypeError("the seed must be 32 bytes written as 64 hex digits")
    return seed


def _bounded_int(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be in {low}..{high}")
        return value

    return parse


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--seed", type=_seed, help="Ed25519 seed, 64 hex digits (else random)")
    common.add_argument(
        "--timeout", type=_positive_float, default=60.0, help="overall deadline, s (default 60)"
    )
    common.add_argument(
        "--max-conns-per-peer",
        type=_bounded_int(1, 1000),
        default=ConnectionConfig().max_connections_per_peer,
        help="py-libp2p ConnectionConfig.max_connections_per_peer (library default %(default)s;"
        " 1 avoids the 250 ms wait in every dial_peer)",
    )
    common.add_argument("-v", "--verbose", action="store_true", help="debug logs on stderr")

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    count = _bounded_int(1, MAX_COUNT)
    size = _bounded_int(0, 2**40)

    p = sub.add_parser("listen", parents=[common], help="serve ping/identify/echo/sink/perf")
    p.add_argument("--port", type=_bounded_int(0, 65535), default=0)
    p.add_argument("--echo-proto", default=ECHO_PROTOCOL)
    p.add_argument("--lifetime", type=_positive_float, default=120.0, help="exit after this many s")

    p = sub.add_parser("ping", parents=[common], help="ping N times, RTTs in ms")
    p.add_argument("addr")
    p.add_argument("--count", type=count, default=1)

    p = sub.add_parser("identify", parents=[common], help="print the peer's identify message")
    p.add_argument("addr")

    p = sub.add_parser("echo", parents=[common], help="echo N bytes and verify them")
    p.add_argument("addr")
    p.add_argument("--bytes", type=size, required=True)
    p.add_argument("--write-size", type=_bounded_int(1, 16 * 2**20), default=CHUNK_SIZE)
    p.add_argument("--echo-proto", default=ECHO_PROTOCOL)

    p = sub.add_parser("send", parents=[common], help="send N bytes to the sink")
    p.add_argument("addr")
    p.add_argument("--bytes", type=size, required=True)

    p = sub.add_parser("perf", parents=[common], help="libp2p perf protocol client")
    p.add_argument("addr")
    p.add_argument("--upload", type=size, default=0)
    p.add_argument("--download", type=size, default=0)

    p = sub.add_parser("connect", parents=[common], help="median time of N new connections")
    p.add_argument("addr")
    p.add_argument("--count", type=count, default=10)
    p.add_argument(
        "--method",
        choices=["host-connect", "dial-addr"],
        default="host-connect",
        help="host-connect: IHost.connect (what applications call); dial-addr: Swarm.dial_addr,"
        " dial + upgrade only",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    formatter = logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    # py-libp2p's import-time setup_logging() leaves its logger without a handler (WARNING and
    # up then reach stderr bare) unless LIBP2P_DEBUG is set; give those lines a name and time.
    # Some of its modules set their own INFO level, hence the level on the handler.
    libp2p_log = logging.getLogger("libp2p")
    if not libp2p_log.handlers:
        libp2p_handler = logging.StreamHandler(sys.stderr)
        libp2p_handler.setFormatter(formatter)
        libp2p_handler.setLevel(logging.WARNING)
        libp2p_log.addHandler(libp2p_handler)
    return trio.run(run, args)


if __name__ == "__main__":
    sys.exit(main())
