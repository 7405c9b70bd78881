"""Benchmark: the libp2p perf protocol (/perf/1.0.0), p2pchat and py-libp2p 0.8.1, against raw TCP.

One run on 127.0.0.1 measures six client -> server pairs with the same sizes (default 256 MiB
up and 256 MiB down, 5 runs each):

* p2pchat -> p2pchat,
* py-libp2p -> py-libp2p,
* p2pchat -> py-libp2p,
* py-libp2p -> p2pchat,
* p2pchat+threads -> p2pchat+threads: both hosts with ``MuxerConfig(secure_worker_threads=
  True)`` (specs/secure-stream.md "Worker threads for bulk"),
* raw-tcp -> raw-tcp: the same exchange (8-byte download size, upload to EOF, download to EOF)
  over plain trio TCP, timed the same way: the ceiling of this machine.

Every server is its own process, one per pair, all started first: ours is this script with
``--serve`` (``open_host`` + ``install_perf``, limits raised to fit); py-libp2p's is
``tools/interop/pylibp2p_peer.py listen`` (its ``PerfService``), run by
``$P2PCHAT_INTEROP_PYTHON`` (default ``.venv-interop/bin/python``). Every run is a new client
process and so a new connection, as in the libp2p perf runner: ours is this script with
``--client`` (one ``run_perf``), py-libp2p's is the peer script's ``perf`` command.

What is measured
----------------
* **transfer** (the headline): upload + download bytes over the time from the client's first
  write (the 8-byte request) to the server's end of stream. Both clients time exactly this
  span (ours: ``upload_s + download_s``; py-libp2p's script: ``seconds``).
* **upload** and **download** separately, less comparable: ours splits at the first response
  byte (so upload includes its delivery to the server); py-libp2p's script splits when its
  ``close_write`` returned (up to one yamux window may still be in flight).
* **connect**: the client's ``Host.connect`` / ``IHost.connect`` (dial + upgrade), not part of
  the transfer.

The runs are interleaved (run 1 of each pair, then run 2, ...), so that other load on the
machine weighs on every pair alike. Medians over the runs (and the range of the transfer
figure). Targets: p2pchat -> p2pchat transfer >= 5x py-libp2p -> py-libp2p, and >= 0.5x raw TCP.

    python tools/bench_perf.py [--quick] [--json] [--upload-mib 256] [--download-mib 256]
        [--iterations 5] [--no-pylibp2p] [--no-threads]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import IO, Any, Final, Literal

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
from p2pchat.net.host import HostConfig, open_host
from p2pchat.net.muxer import MuxerConfig
from p2pchat.net.perf import PerfLimits, install_perf, result_json, run_perf

MIB: Final = 1024 * 1024

# Bounds: every subprocess has a deadline; servers exit on stdin EOF or their lifetime.
RUN_TIMEOUT: Final = 300.0
STARTUP_TIMEOUT: Final = 30.0
EXIT_TIMEOUT: Final = 10.0
SERVER_LIFETIME: Final = 3600.0
TARGET: Final = 5.0

Stack = Literal["p2pchat", "p2pchat+threads", "py-libp2p", "raw-tcp"]


@attrs.frozen
class Sizes:
    upload: int
    download: int
    iterations: int


FULL: Final = Sizes(256 * MIB, 256 * MIB, 5)
QUICK: Final = Sizes(32 * MIB, 32 * MIB, 3)


@attrs.frozen
class Pair:
    client: Stack
    server: Stack

    @property
    def name(self) -> str:
        return f"{self.client} -> {self.server}"


PAIRS: Final = (
    Pair("p2pchat", "p2pchat"),
    Pair("py-libp2p", "py-libp2p"),
    Pair("p2pchat", "py-libp2p"),
    Pair("py-libp2p", "p2pchat"),
    Pair("p2pchat+threads", "p2pchat+threads"),
    Pair("raw-tcp", "raw-tcp"),
)
BASELINE: Final = PAIRS[1]
RAW: Final = PAIRS[5]
TARGET_RAW: Final = 0.5  # issue 18: p2pchat -> p2pchat transfer / raw trio TCP


@attrs.frozen
class Run:
    """One run, in the same terms for both clients (seconds)."""

    transfer_s: float
    upload_s: float
    download_s: float
    connect_s: float


def _emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def _mib_s(count: int, seconds: float) -> float | None:
    if count == 0:
        return None
    return count / MIB / seconds if seconds > 0 else float("inf")


# -- our server and client (run as subprocesses of this script) --------------------------------


async def _wait_stdin_eof() -> None:
    async with trio.lowlevel.FdStream(os.dup(sys.stdin.fileno())) as stdin:
        while await stdin.receive_some(4096):
            pass


def _host_config(threads: bool, **kwargs: Any) -> HostConfig:
    if not threads:  # the default config, also on trees without worker threads (--no-threads)
        return HostConfig(**kwargs)
    return HostConfig(muxer=MuxerConfig(secure_worker_threads=True), **kwargs)


async def serve(threads: bool) -> None:
    """Our perf server: prints ``listening`` with its address, exits at EOF on stdin."""
    limits = PerfLimits(
        max_download_bytes=2**62, max_upload_bytes=2**62, max_duration_s=RUN_TIMEOUT
    )
    async with open_host(KeyPair.generate(), _host_config(threads)) as host:
        install_perf(host, limits)
        _emit("listening", addrs=[str(addr) for addr in host.addrs])
        with trio.move_on_after(SERVER_LIFETIME):
            await _wait_stdin_eof()
    _emit("exit")


async def client(addr: str, upload: int, download: int, threads: bool) -> None:
    """Our perf client: one ``run_perf`` on a new connection; prints its final record."""
    async with open_host(KeyPair.generate(), _host_config(threads, listen=())) as host:
        with trio.fail_after(RUN_TIMEOUT):
            result = await run_perf(host, Multiaddr.from_string(addr), upload, download)
    sys.stdout.write(json.dumps(result_json(result)) + "\n")


# -- the same exchange over raw trio TCP: no security, no muxer, no negotiation ------------------

RAW_CHUNK: Final = 64 * 1024


async def serve_raw() -> None:
    """Read the 8-byte download size, then upload bytes to EOF; send the download; close."""

    async def one(stream: trio.SocketStream) -> None:
        async with stream:
            header = b""
            while len(header) < 8:
                chunk = await stream.receive_some(8 - len(header))
                if not chunk:
                    return
                header += chunk
            while await stream.receive_some(1024 * 1024):
                pass
            remaining = int.from_bytes(header, "big")
            block = bytes(RAW_CHUNK)
            while remaining:
                size = min(remaining, RAW_CHUNK)
                await stream.send_all(block[:size] if size < RAW_CHUNK else block)
                remaining -= size

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, one, listeners)
        _emit("listening", addrs=[f"/ip4/127.0.0.1/tcp/{port}"])
        with trio.move_on_after(SERVER_LIFETIME):
            await _wait_stdin_eof()
        nursery.cancel_scope.cancel()
    _emit("exit")


async def client_raw(addr: str, upload: int, download: int) -> None:
    """The raw TCP client, timed as ours is: first write -> the response's first byte
    (upload) -> the server's end of stream (download)."""
    port = int(Multiaddr.from_string(addr).value_for("tcp") or 0)
    started = time.perf_counter()
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    connected = time.perf_counter()
    async with stream:
        with trio.fail_after(RUN_TIMEOUT):
            await stream.send_all(download.to_bytes(8, "big"))
            block = bytes(RAW_CHUNK)
            remaining = upload
            while remaining:
                size = min(remaining, RAW_CHUNK)
                await stream.send_all(block[:size] if size < RAW_CHUNK else block)
                remaining -= size
            await stream.send_eof()
            received = 0
            first = 0.0
            while chunk := await stream.receive_some(1024 * 1024):
                if not received:
                    first = time.perf_counter()
                received += len(chunk)
            done = time.perf_counter()
    first = first or done
    result = {
        "type": "final",
        "uploadBytes": upload,
        "downloadBytes": received,
        "connectSeconds": connected - started,
        "uploadSeconds": first - connected,
        "downloadSeconds": done - first,
    }
    sys.stdout.write(json.dumps(result) + "\n")


# -- subprocesses ------------------------------------------------------------------------------


def _self_cmd(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *args]


def _tail(stderr: IO[bytes], limit: int = 2000) -> str:
    stderr.seek(0)
    return stderr.read().decode(errors="replace")[-limit:]


@asynccontextmanager
async def _server(name: str, cmd: Sequence[str]) -> AsyncIterator[str]:
    """Run a server process for the block; yields its first address.

    Raises:
        BenchError: it did not print ``listening`` in time, or did not exit cleanly.
    """
    with tempfile.TemporaryFile() as stderr:
        process = await trio.lowlevel.open_process(
            list(cmd), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr
        )
        assert process.stdin is not None
        assert process.stdout is not None
        try:
            buffer = bytearray()
            with trio.move_on_after(STARTUP_TIMEOUT):
                while b"\n" not in buffer:
                    chunk = await process.stdout.receive_some(65536)
                    if not chunk:
                        raise BenchError(f"{name} exited early:\n{_tail(stderr)}")
                    buffer += chunk
            if b"\n" not in buffer:
                raise BenchError(f"{name} did not start within {STARTUP_TIMEOUT:g} s")
            first = json.loads(bytes(buffer).partition(b"\n")[0])
            if first.get("event") != "listening":
                raise BenchError(f"{name}: expected 'listening', got {first}")
            yield str(first["addrs"][0])
            await process.stdin.aclose()
            with trio.move_on_after(EXIT_TIMEOUT):
                if await process.wait() != 0:
                    raise BenchError(f"{name} failed:\n{_tail(stderr)}")
        finally:
            with trio.CancelScope(shield=True):
                if process.returncode is None:
                    process.kill()
                    await process.wait()
                await process.stdin.aclose()
                await process.stdout.aclose()


async def _run_json(name: str, cmd: Sequence[str]) -> dict[str, Any]:
    """Run a one-shot client and return its last JSON line.

    Raises:
        BenchError: it failed, timed out or printed nothing.
    """
    return await run_json(name, cmd, RUN_TIMEOUT + STARTUP_TIMEOUT)


# -- pairs -------------------------------------------------------------------------------------


def _server_cmd(stack: Stack, python: Path) -> list[str]:
    if stack == "p2pchat":
        return _self_cmd("--serve")
    if stack == "p2pchat+threads":
        return _self_cmd("--serve", "--worker-threads")
    if stack == "raw-tcp":
        return _self_cmd("--serve-raw")
    lifetime = str(SERVER_LIFETIME)
    return [str(python), str(PEER_SCRIPT), "listen", "--port", "0", "--lifetime", lifetime]


async def _client_run(stack: Stack, addr: str, sizes: Sizes, python: Path) -> Run:
    """One run by a new client process.

    Raises:
        BenchError: the client failed or reports other sizes than asked.
    """
    up, down = str(sizes.upload), str(sizes.download)
    if stack != "py-libp2p":
        args = {
            "p2pchat": ["--client", addr, up, down],
            "p2pchat+threads": ["--client", addr, up, down, "--worker-threads"],
            "raw-tcp": ["--client-raw", addr, up, down],
        }[stack]
        out = await _run_json(f"{stack} client", _self_cmd(*args))
        if out.get("type") != "final" or (out["uploadBytes"], out["downloadBytes"]) != (
            sizes.upload,
            sizes.download,
        ):
            raise BenchError(f"p2pchat client: {out}")
        return Run(
            transfer_s=out["uploadSeconds"] + out["downloadSeconds"],
            upload_s=out["uploadSeconds"],
            download_s=out["downloadSeconds"],
            connect_s=out["connectSeconds"],
        )
    cmd = [str(python), str(PEER_SCRIPT), "perf", addr, "--upload", up, "--download", down]
    cmd += ["--timeout", str(RUN_TIMEOUT), "--max-conns-per-peer", "1"]
    out = await _run_json("py-libp2p client", cmd)
    if out.get("event") != "perf" or (out["upload_bytes"], out["download_bytes"]) != (
        sizes.upload,
        sizes.download,
    ):
        raise BenchError(f"py-libp2p client: {out}")
    return Run(
        transfer_s=out["seconds"],
        upload_s=out["upload_seconds"],
        download_s=out["seconds"] - out["upload_seconds"],
        connect_s=out["connect_ms"] / 1e3,
    )


def _median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 1) if known else None


def _summary(runs: Sequence[Run], sizes: Sizes) -> dict[str, Any]:
    total = sizes.upload + sizes.download
    transfer = [_mib_s(total, r.transfer_s) for r in runs]
    known = [v for v in transfer if v is not None]
    return {
        "transfer_mib_s": _median(transfer),
        "transfer_range_mib_s": [round(min(known), 1), round(max(known), 1)] if known else None,
        "upload_mib_s": _median([_mib_s(sizes.upload, r.upload_s) for r in runs]),
        "download_mib_s": _median([_mib_s(sizes.download, r.download_s) for r in runs]),
        "transfer_s": round(statistics.median(r.transfer_s for r in runs), 4),
        "connect_ms": round(statistics.median(r.connect_s for r in runs) * 1e3, 3),
        "runs": [attrs.asdict(r) for r in runs],
    }


async def run_pairs(pairs: Sequence[Pair], sizes: Sizes, python: Path) -> dict[str, Any]:
    """Every run of every pair, each pair against its own server process.

    The runs are interleaved (run 1 of every pair, then run 2, ...) so that a change in the
    machine's load over time weighs on every pair alike.
    """
    async with AsyncExitStack() as servers:
        addrs = [
            await servers.enter_async_context(
                _server(f"{pair.server} server for {pair.name}", _server_cmd(pair.server, python))
            )
            for pair in pairs
        ]
        runs: list[list[Run]] = [[] for _ in pairs]
        for _ in range(sizes.iterations):
            for pair, addr, done in zip(pairs, addrs, runs, strict=True):
                done.append(await _client_run(pair.client, addr, sizes, python))
    return {pair.name: _summary(done, sizes) for pair, done in zip(pairs, runs, strict=True)}


async def _pylibp2p_version(python: Path) -> str:
    code = "import importlib.metadata as m; print(m.version('libp2p'))"
    done = await trio.run_process(
        [str(python), "-c", code], capture_stdout=True, capture_stderr=True, check=False
    )
    return done.stdout.decode().strip() or "unknown version"


async def run_all(sizes: Sizes, use_pylibp2p: bool, use_threads: bool = True) -> dict[str, Any]:
    """Every pair (those needing py-libp2p only when it is there), then the ratios."""
    python = interop_python()
    skipped: str | None = None
    if not use_pylibp2p:
        skipped = "--no-pylibp2p"
    elif not python.exists():
        skipped = f"no interpreter at {python} (set {INTEROP_PYTHON_ENV}; make interop-venv)"
    result: dict[str, Any] = {
        "sizes": attrs.asdict(sizes),
        "environment": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "trio": trio.__version__,
            "pylibp2p": f"{await _pylibp2p_version(python)} ({python})"
            if skipped is None
            else f"skipped: {skipped}",
        },
    }
    chosen = [p for p in PAIRS if skipped is None or "py-libp2p" not in (p.client, p.server)]
    if not use_threads:
        chosen = [p for p in chosen if p.client != "p2pchat+threads"]
    result["pairs"] = pairs = await run_pairs(chosen, sizes, python)
    ratios: dict[str, float] = {}
    if BASELINE.name in pairs:
        base = pairs[BASELINE.name]["transfer_mib_s"]
        for name, figures in pairs.items():
            if name != BASELINE.name:
                ratios[name] = round(figures["transfer_mib_s"] / base, 2)
    result["ratios_to_pylibp2p"] = ratios
    raw = pairs[RAW.name]["transfer_mib_s"]
    result["ratios_to_raw"] = {
        name: round(figures["transfer_mib_s"] / raw, 3)
        for name, figures in pairs.items()
        if name != RAW.name
    }
    to_raw = result["ratios_to_raw"][PAIRS[0].name]
    result["target_raw"] = {
        "name": f"{PAIRS[0].name} / {RAW.name}, transfer",
        "goal": TARGET_RAW,
        "value": to_raw,
        "met": to_raw >= TARGET_RAW,
    }
    ours = ratios.get(PAIRS[0].name)
    result["target"] = {
        "name": f"{PAIRS[0].name} / {BASELINE.name}, transfer",
        "goal": TARGET,
        "value": ours,
        "met": None if ours is None else ours >= TARGET,
    }
    return result


# -- report ------------------------------------------------------------------------------------


def _cell(value: Any, fmt: str = "{:.1f}") -> str:
    if value is None:
        return "n/a"
    return fmt.format(value)


def render(result: dict[str, Any]) -> str:
    """The human-readable table."""
    sizes, env = result["sizes"], result["environment"]
    lines = [
        f"perf benchmark (/perf/1.0.0), 127.0.0.1, {env['cpus']} CPUs, Python {env['python']},"
        f" trio {env['trio']}",
        f"  py-libp2p: {env['pylibp2p']}",
        f"  {sizes['upload'] // MIB} MiB up + {sizes['download'] // MIB} MiB down per run,"
        f" {sizes['iterations']} runs per pair (interleaved), each a new client process and"
        " connection; medians",
        "",
        f"  {'client -> server':<36}{'transfer':>10}{'range':>13}{'upload':>9}{'download':>10}"
        f"{'transfer':>10}{'connect':>9}{'ratio':>7}",
        f"  {'':<36}{'MiB/s':>10}{'MiB/s':>13}{'MiB/s':>9}{'MiB/s':>10}{'s':>10}{'ms':>9}{'':>7}",
    ]
    ratios = result["ratios_to_pylibp2p"]
    for name, f in result["pairs"].items():
        span = f["transfer_range_mib_s"]
        ratio = "1.00" if name == BASELINE.name and ratios else _cell(ratios.get(name), "{:.2f}")
        lines.append(
            f"  {name:<36}{_cell(f['transfer_mib_s']):>10}"
            f"{'n/a' if span is None else f'{span[0]:.0f}-{span[1]:.0f}':>13}"
            f"{_cell(f['upload_mib_s']):>9}{_cell(f['download_mib_s']):>10}"
            f"{f['transfer_s']:>10.3f}{f['connect_ms']:>9.2f}{ratio:>7}"
        )
    lines.append("")
    for name, ratio in result["ratios_to_raw"].items():
        lines.append(f"  {name:<36} / raw trio TCP: {ratio:.3f}")
    raw_target = result["target_raw"]
    verdict = "met" if raw_target["met"] else "MISSED"
    lines.append(
        f"target {raw_target['name']} >= {TARGET_RAW:g}: {raw_target['value']:.3f}  {verdict}"
    )
    target = result["target"]
    lines.append("")
    if target["value"] is None:
        lines.append(f"target {target['name']} >= {TARGET:g}: not evaluated (no py-libp2p)")
    else:
        verdict = "met" if target["met"] else "MISSED"
        lines.append(f"target {target['name']} >= {TARGET:g}: {target['value']:.2f}  {verdict}")
    lines += [
        "",
        "transfer = (up + down bytes) / (client's first write -> server's end of stream), the",
        "same span on both clients; ratio = transfer / py-libp2p -> py-libp2p transfer.",
        "upload/download: ours split at the first response byte; py-libp2p's script splits when",
        "its close_write returned, so its upload may leave up to one yamux window in flight.",
    ]
    return "\n".join(line.rstrip() for line in lines)


# -- driver ------------------------------------------------------------------------------------


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


async def _main(args: argparse.Namespace) -> None:
    base = QUICK if args.quick else FULL
    sizes = Sizes(
        upload=base.upload if args.upload_mib is None else args.upload_mib * MIB,
        download=base.download if args.download_mib is None else args.download_mib * MIB,
        iterations=args.iterations or base.iterations,
    )
    result = await run_all(sizes, not args.no_pylibp2p, not args.no_threads)
    print(json.dumps(result) if args.json else render(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="32 MiB each way, 3 runs")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--upload-mib", type=_non_negative, help="MiB up per run (256)")
    parser.add_argument("--download-mib", type=_non_negative, help="MiB down per run (256)")
    parser.add_argument("--iterations", type=_positive, help="runs per pair (5)")
    parser.add_argument("--no-pylibp2p", action="store_true", help="only p2pchat -> p2pchat")
    parser.add_argument(
        "--no-threads", action="store_true", help="skip the worker-threads pair (older trees)"
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client", nargs=3, metavar=("ADDR", "UP", "DOWN"), help=argparse.SUPPRESS)
    parser.add_argument("--worker-threads", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-raw", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--client-raw", nargs=3, metavar=("ADDR", "UP", "DOWN"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.serve:
        run_bench("bench_perf", serve, args.worker_threads)
    elif args.client:
        addr, up, down = args.client
        run_bench("bench_perf", client, addr, int(up), int(down), args.worker_threads)
    elif args.serve_raw:
        run_bench("bench_perf", serve_raw)
    elif args.client_raw:
        addr, up, down = args.client_raw
        run_bench("bench_perf", client_raw, addr, int(up), int(down))
    else:
        run_bench("bench_perf", _main, args)


if __name__ == "__main__":
    main()
