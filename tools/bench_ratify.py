"""Benchmark: ratified group chat throughput and latency, five nodes on 127.0.0.1.

Five chat nodes, each a separate process running ``open_host`` + ``open_store`` +
``open_chat_node`` on 127.0.0.1 with its own data dir: three ratifiers (``ratifier1`` is the
group's owner; quorum 2 of 3, the default majority), a ``user`` and a ``viewer``. One author (the
user, the common case; with ``--ratifier-author`` also ``ratifier2``, in phases of its own) sends
as fast as the protocol allows, and every member notes when each message is delivered to it.

What is measured
----------------
0. **Ed25519 bound**, first, before any node runs: verifications per second on one core with
   ``cryptography`` (a loaded ``Ed25519PublicKey``, an 89-byte vote message), best of 3 rounds
   of 0.5 s; for reference also through ``PublicKey.verify`` (which loads the key from its bytes
   each time) and signatures per second. The bound is ``verify/s x os.cpu_count() / V``, where
   ``V`` is the number of verifications one message costs across the five nodes, counted from
   ``chat/node.py``, ``validate.py`` and ``quorum.py`` (the breakdown is printed):

   - each ratifier checks the author's signature before it votes (``mrat``;
     ``check_for_ratification``): ``R x 1``;
   - the author checks each vote as it arrives until the quorum (``QuorumCollector.add_vote``);
     the remaining request is cancelled then, so ``q`` (``q + 1`` only when two votes arrive in
     the same scheduling batch);
   - every member except the author checks the certificate (``verify_certificate`` stops at
     ``q`` valid votes) and the author's signature when ``smsg`` delivers it
     (``check_for_delivery``): ``(M - 1) x (q + 1)``;
   - the author's own ``_accept`` verifies nothing, and the connections are up before the
     phases start (each Noise handshake verifies one signature).

   With R = 3, q = 2, M = 5: 3 + 2 + 12 = 17. Each node also counts its calls of
   ``PublicKey.verify`` and ``KeyPair.sign`` (and its chat queries by code, and its store's
   transactions, writes and reads), and phase 1 prints the measured figures per message beside
   the count: a ratifier asked to vote for a message whose parent it does not hold yet fetches
   the parent (``get``) and verifies it, so the measured count is higher.
1. **Saturation** (``--duration``, 20 s; ``--quick`` 5 s): the author keeps ``--window``
   messages in flight: W tasks, each calling ``ChatNode.send(group, payload)`` in a loop
   (``wait=True``: it returns once the message is ratified at the author). Throughput is the
   number of messages ratified *and delivered at all five members* (the author included) per
   second, counted by the time the last member got each one, over the steady part of the phase
   (from 10% of the duration, at least 1 s, to the end of sending). Latency runs from just before
   ``send`` is called (the author's clock) to the moment each member's subscriber channel
   (``ChatNode.subscribe``) yields the ratified message: p50/p99 per member, pooled over all
   members, and to the *last* member (the message is then everywhere). A 2 s warm-up (all
   connections up) comes before each phase 1 and is not counted.
2. **Half rate** (``--paced-duration``, 10 s; quick 5 s): the author starts one send every
   ``1 / r`` seconds, ``r`` half the phase-1 throughput, each in its own task (open loop, at
   most 1,024 in flight), and the same latencies are taken.

Clocks: all processes share one machine, and ``time.monotonic_ns`` (``CLOCK_MONOTONIC``) is one
system-wide clock on Linux, so a send time in one process and a delivery time in another
compare directly. Each phase also reports, per node, CPU time over wall time while sending
(``time.process_time``: all threads), CPU ms per message, and the event loop thread's share of
it (the rest is the store's SQLite threads): with two cores, 200% in total is a saturated box.

Window. The default ``--window`` is 32, the node's own limit of attempts in flight
(``outbox_concurrency``, specs/chat.md §21): a send returns once its message is certified at
the author, after the author's commit of the message, a round to the ratifiers (each commits)
and the author's commit of the certificate, so throughput is about W divided by that latency,
and with fewer in flight the batches stay small (with W = 8 a batch holds at most 8 messages;
measured on this machine under load: about 120 msg/s at W = 8, 250 at W = 32). Before batches
the default was 8, since one ``mrat`` per message per ratifier then filled a stream's 32
queries in flight (specs/chat.md §2) and drew "too many queries" refusals; with batches each
ratifier has one request in flight per author (each node still counts the refusals it got, by
code and reason, and phase 1 prints them per message). ``--send-mode queue`` measures
``send(wait=False)`` + ``wait_ratified`` instead, where the node's outbox task asks for the votes,
one message at a time.

Batches (specs/chat.md §21). The author asks each ratifier for the messages queued when its
previous request returns (``mratb``, up to 64), and delivers to each member likewise
(``smsgb``); so the window bounds the batches (32, the outbox's attempts in flight, half a
ratifier's pending quota). A batch costs each ratifier one commit and one signature, and each
member ``q`` vote checks (its verified batch signatures are remembered), so the measured
verifications per message fall below the count above, which is the unbatched one (every batch
of one).

Targets: throughput at least 50% of the bound; p99 latency to the last member under 50 ms at
half the phase-1 rate.

Diagnostics, by environment variable (they slow the nodes down; measure without them):

* ``P2PCHAT_BENCH_PROFILE=<dir>``: each node runs cProfile over phase 1 (the event loop's
  thread, on its CPU clock), writes ``<dir>/<node>.prof``, and the own time by module and the
  top functions are printed;
* ``P2PCHAT_BENCH_TIMING=1``: wall time (awaits included) of the node's main steps and queries,
  per message and per call;
* ``P2PCHAT_BENCH_LOG=<level>``: the nodes log to stderr at that level.

Coordination: the nodes are this script in a hidden ``--worker`` mode; the coordinator writes
one JSON command per line to a node's stdin and reads one JSON reply per line from its stdout. A
node exits when its stdin closes; every step has a deadline, and on any exit (an error,
Ctrl-C, SIGTERM) the coordinator stops or kills the nodes and removes their data dirs.

    python tools/bench_ratify.py [--quick] [--json] [--duration 20] [--paced-duration 10]
        [--window 32] [--size 100] [--send-mode wait|queue] [--ratifier-author]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import math
import os
import pstats
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import IO, Any, Final

import attrs
import cryptography
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from benchlib import BenchError, run_bench
from p2pchat.chat.core.packet import vote_signing_bytes
from p2pchat.chat.core.roster import Role
from p2pchat.chat.core.wire import Response
from p2pchat.chat.node import ChatError, ChatNode, open_chat_node
from p2pchat.chat.services.chat_client import ChatClient
from p2pchat.chat.services.runtime import Runtime
from p2pchat.chat.services.writes import GroupCommits
from p2pchat.chat.store import ChatStore, open_store
from p2pchat.identity import KeyPair, PeerID, PublicKey
from p2pchat.multiaddr import Multiaddr
from p2pchat.net.host import HostConfig, open_host
from p2pchat.net.peerstore import PERMANENT

RATIFIERS: Final = ("ratifier1", "ratifier2", "ratifier3")
OWNER: Final = RATIFIERS[0]
USER: Final = "user"
VIEWER: Final = "viewer"
NODES: Final = (*RATIFIERS, USER, VIEWER)
ROLES: Final = {"ratifier2": Role.RATIFIER, "ratifier3": Role.RATIFIER, USER: Role.USER}
ROLES_ALL: Final = {**ROLES, VIEWER: Role.VIEWER}

DEFAULT_WINDOW: Final = 32  # sends in flight in phase 1 (see the top)
DEFAULT_SIZE: Final = 100  # plaintext bytes per message
PACED_IN_FLIGHT: Final = 1024  # open-loop sends in flight at most, in phase 2
WARMUP_SECONDS: Final = 2.0
KEY_HEX: Final = 16  # a message is named by the first 8 bytes of its hash, in hex

# Bounds: every command has a deadline; a node also exits after WORKER_LIFETIME seconds.
STARTUP_TIMEOUT: Final = 30.0
COMMAND_TIMEOUT: Final = 60.0
DRAIN_TIMEOUT: Final = 30.0
EXIT_TIMEOUT: Final = 15.0
WORKER_LIFETIME: Final = 1800.0
PROFILE_ENV: Final = "P2PCHAT_BENCH_PROFILE"
TIMING_ENV: Final = "P2PCHAT_BENCH_TIMING"  # time the steps of TIMED in every node
LOG_ENV: Final = "P2PCHAT_BENCH_LOG"  # a logging level for the nodes (stderr)
PROFILE_TOP: Final = 12
SCRIPT: Final = str(Path(__file__).resolve())


def _emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def _key(message_hash: bytes) -> str:
    return message_hash.hex()[:KEY_HEX]


# -- the node (worker) side --------------------------------------------------------------------

# The node's steps timed with P2PCHAT_BENCH_TIMING (wall clock, awaits included).
TIMED: Final = (
    (ChatNode, ("_submit",)),
    (Runtime, ("vote", "vote_batch", "receive", "receive_batch", "commit_all", "fetch")),
    (ChatStore, ("commit", "get_vote", "get_message")),
    (GroupCommits, ("commit", "_commit_group")),
)


@attrs.define
class Counters:
    """Signature operations made by this process, and the chat queries it sent (by code, and
    the refused ones by code and reason)."""

    verify: int = 0
    sign: int = 0
    queries: dict[str, int] = attrs.Factory(dict)
    #: With ``P2PCHAT_BENCH_TIMING``: calls and seconds spent (wall clock) by step.
    timing: dict[str, list[float]] = attrs.Factory(dict)

    def count(self, query: str) -> None:
        self.queries[query] = self.queries.get(query, 0) + 1

    def timed(self, name: str, began: float) -> None:
        entry = self.timing.setdefault(name, [0, 0.0])
        entry[0] += 1
        entry[1] += time.perf_counter() - began


def _count_calls(timing: bool) -> Counters:
    """Wrap ``PublicKey.verify``, ``KeyPair.sign`` and ``ChatClient.query`` so that every call
    is counted, and with ``timing`` the steps of :data:`TIMED` too (the node's code is not
    changed; a step that no longer exists is skipped)."""
    counters = Counters()
    verify = PublicKey.verify
    sign = KeyPair.sign
    query = ChatClient.query

    async def counted_query(
        self: ChatClient, code: str, body: dict[str, Any], **kwargs: Any
    ) -> Response:
        counters.count(code)
        began = time.perf_counter()
        try:
            response = await query(self, code, body, **kwargs)
        finally:
            if timing:
                counters.timed(f"query {code}", began)
        if not response.ok:
            counters.count(f"{code} refused: {response.reason}")
        return response

    if timing:
        for cls, names in TIMED:
            for name in names:
                method = getattr(cls, name, None)
                if method is not None:
                    setattr(cls, name, _timed(counters, f"{cls.__name__}.{name}", method))

    def counted_verify(self: PublicKey, signature: bytes, message: bytes) -> bool:
        counters.verify += 1
        return verify(self, signature, message)

    def counted_sign(self: KeyPair, message: bytes) -> bytes:
        counters.sign += 1
        return sign(self, message)

    setattr(PublicKey, "verify", counted_verify)  # noqa: B010
    setattr(KeyPair, "sign", counted_sign)  # noqa: B010
    setattr(ChatClient, "query", counted_query)  # noqa: B010
    return counters


def _timed(
    counters: Counters, name: str, method: Callable[..., Awaitable[Any]]
) -> Callable[..., Awaitable[Any]]:
    async def timed(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return await method(*args, **kwargs)
        finally:
            counters.timed(name, began)

    return timed


@attrs.define(eq=False)
class Node:
    """One chat node serving the coordinator's commands."""

    name: str
    chat: ChatNode
    counters: Counters
    nursery: trio.Nursery
    profiler: cProfile.Profile | None
    #: When each ratified (non-roster) message reached our subscriber, by key.
    delivered: dict[str, int] = attrs.Factory(dict)
    changed: trio.Event = attrs.Factory(trio.Event)

    async def run_command(self, command: dict[str, Any]) -> dict[str, Any]:
        handler = getattr(self, "cmd_" + str(command.get("cmd")), None)
        if handler is None:
            raise BenchError(f"unknown command {command.get('cmd')!r}")
        result: dict[str, Any] = await handler(command)
        return result

    async def cmd_peers(self, command: dict[str, Any]) -> dict[str, Any]:
        now = trio.current_time()
        for peer, addr in command["peers"]:
            self.chat.host.peer_store.add_addrs(
                PeerID.from_string(peer), [Multiaddr.from_string(addr)], PERMANENT, now
            )
        return {}

    async def cmd_create(self, command: dict[str, Any]) -> dict[str, Any]:
        group_id = await self.chat.create_group("bench")
        return {"group": group_id.hex()}

    async def cmd_invite(self, command: dict[str, Any]) -> dict[str, Any]:
        group_id = bytes.fromhex(command["group"])
        await self.chat.invite(group_id, PeerID.from_string(command["peer"]), command["role"])
        return {}

    async def cmd_join(self, command: dict[str, Any]) -> dict[str, Any]:
        group_id = bytes.fromhex(command["group"])
        await self.chat.join(group_id, PeerID.from_string(command["via"]))
        state = self.chat.group_state(group_id)
        roster = state.current_roster
        return {"epoch": state.current_epoch, "quorum": roster.quorum}

    async def cmd_watch(self, command: dict[str, Any]) -> dict[str, Any]:
        await self.nursery.start(self._record, bytes.fromhex(command["group"]))
        return {}

    async def _record(
        self, group_id: bytes, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        async with self.chat.subscribe(group_id) as messages:
            task_status.started()
            async for message in messages:
                if message.ratified and message.message_type != "roster":
                    self.delivered.setdefault(_key(message.message_hash), time.monotonic_ns())
                    self.changed.set()

    async def cmd_usage(self, command: dict[str, Any]) -> dict[str, Any]:
        store = self.chat.store.statistics()
        return {
            "cpu": time.process_time(),
            "loop_cpu": time.thread_time(),  # the event loop's thread; the rest is SQLite's
            "wall": time.monotonic(),
            "verify": self.counters.verify,
            "sign": self.counters.sign,
            "queries": dict(self.counters.queries),
            "timing": self.counters.timing,
            "store": {
                "transactions": store.transactions,
                "writes": store.writes,
                "reads": store.reads,
            },
        }

    async def cmd_profile(self, command: dict[str, Any]) -> dict[str, Any]:
        if self.profiler is not None:
            if command["on"]:
                self.profiler.enable()
            else:
                self.profiler.disable()
        return {"profiling": self.profiler is not None}

    async def cmd_load(self, command: dict[str, Any]) -> dict[str, Any]:
        """Send for ``duration`` s: ``window`` closed loops, or paced at ``rate`` per second."""
        group_id = bytes.fromhex(command["group"])
        duration: float = command["duration"]
        rate: float | None = command.get("rate")
        queue_mode = command.get("mode") == "queue"
        payload_size: int = command["size"]
        sent: list[tuple[str, int]] = []
        failures: list[str] = []
        counter = 0
        start = time.monotonic_ns()
        end = start + int(duration * 1e9)
        max_lag = 0

        async def one() -> None:
            nonlocal counter
            counter += 1
            payload = f"{counter:010d} ".encode().ljust(payload_size, b".")
            began = time.monotonic_ns()
            try:
                message_hash = await self.chat.send(group_id, payload, wait=not queue_mode)
                if queue_mode:
                    with trio.fail_after(self.chat.config.send_timeout):
                        await self.chat.wait_ratified(group_id, message_hash)
            except (ChatError, trio.TooSlowError) as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
                pending = getattr(exc, "message_hash", None)
                if isinstance(pending, bytes):  # queued: it may still be delivered
                    sent.append((_key(pending), began))
                return
            sent.append((_key(message_hash), began))

        async def closed_loop() -> None:
            while time.monotonic_ns() < end:
                await one()

        async def paced(limit: trio.CapacityLimiter) -> None:
            async with limit:
                await one()

        async with trio.open_nursery() as nursery:
            if rate is None:
                for _ in range(int(command["window"])):
                    nursery.start_soon(closed_loop)
            else:
                limit = trio.CapacityLimiter(PACED_IN_FLIGHT)
                for i in range(math.ceil(duration * rate)):
                    target = start + int(i * 1e9 / rate)
                    await trio.sleep(max(0, target - time.monotonic_ns()) / 1e9)
                    await limit.acquire()
                    limit.release()
                    max_lag = max(max_lag, time.monotonic_ns() - target)
                    nursery.start_soon(paced, limit)
            stopped = time.monotonic_ns()
        return {
            "sent": sent,
            "failures": len(failures),
            "failure_examples": failures[:3],
            "start": start,
            "end": end if rate is None else stopped,
            "finished": time.monotonic_ns(),
            "max_lag_ms": max_lag / 1e6,
        }

    async def cmd_collect(self, command: dict[str, Any]) -> dict[str, Any]:
        """Wait until every key given has been delivered (or ``timeout``); return the times."""
        keys: list[str] = command["keys"]
        with trio.move_on_after(command["timeout"]):
            while not all(k in self.delivered for k in keys):
                self.changed = trio.Event()
                await self.changed.wait()
        times = {k: self.delivered[k] for k in keys if k in self.delivered}
        return {"delivered": times, "missing": len(keys) - len(times)}


async def _read_commands(
    send: trio.MemorySendChannel[dict[str, Any]], cancel: trio.CancelScope
) -> None:
    """Feed the commands read on stdin to ``send``; stdin's end stops the node."""
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    buffer = b""
    async with stdin, send:
        while True:
            chunk = await stdin.receive_some(65536)
            if not chunk:
                cancel.cancel()
                return
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.strip():
                    await send.send(json.loads(line))


async def _worker(name: str, data_dir: str, profiler: cProfile.Profile | None) -> None:
    counters = _count_calls(bool(os.environ.get(TIMING_ENV)))
    identity = KeyPair.generate()
    listen = Multiaddr.from_string("/ip4/127.0.0.1/tcp/0")
    with trio.move_on_after(WORKER_LIFETIME):
        async with (
            open_host(identity, HostConfig(listen=(listen,))) as host,
            open_store(data_dir) as store,
            open_chat_node(host, store) as chat,
            trio.open_nursery() as nursery,
        ):
            node = Node(name, chat, counters, nursery, profiler)
            commands_in, commands_out = trio.open_memory_channel[dict[str, Any]](16)
            nursery.start_soon(_read_commands, commands_in, nursery.cancel_scope)
            _emit("ready", peer=str(identity.peer_id), addr=str(host.addrs[0]))
            async with commands_out:
                async for command in commands_out:
                    try:
                        result = await node.run_command(command)
                    except Exception as exc:  # reported to the coordinator, which stops
                        _emit("error", cmd=command.get("cmd"), error=f"{type(exc).__name__}: {exc}")
                    else:
                        _emit("done", cmd=command.get("cmd"), **result)


def _worker_main(name: str, data_dir: str) -> None:
    # Ctrl-C reaches the whole process group: the coordinator alone handles it and stops us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    level = os.environ.get(LOG_ENV)
    if level:
        logging.basicConfig(
            level=level.upper(), format=f"%(relativeCreated)d {name} %(name)s: %(message)s"
        )
    profile_dir = os.environ.get(PROFILE_ENV)
    # CPU time of the event loop's thread, so that time spent waiting for the CPU (five
    # processes share two cores) is not charged to the call that was running.
    profiler = cProfile.Profile(time.thread_time) if profile_dir else None
    try:
        trio.run(_worker, name, data_dir, profiler)
    finally:
        if profiler is not None and profile_dir:
            profiler.disable()
            profiler.dump_stats(str(Path(profile_dir) / f"{name}.prof"))


# -- the coordinator side ----------------------------------------------------------------------


class Worker:
    """A node process: one JSON command per line in, one JSON reply per line out."""

    def __init__(self, name: str, process: trio.Process, stderr: IO[bytes] | None) -> None:
        self.name = name
        self.process = process
        self._stderr = stderr
        self._buffer = b""
        self._lock = trio.Lock()
        self.peer = ""
        self.addr = ""

    def stderr_tail(self, limit: int = 3000) -> str:
        """The end of what the process wrote on stderr (when it went to a file)."""
        if self._stderr is None:
            return "(stderr: see above)"
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-limit:]

    async def _line(self, limit: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        with trio.move_on_after(limit):
            while b"\n" not in self._buffer:
                chunk = await self.process.stdout.receive_some(1 << 20)
                if not chunk:
                    raise BenchError(f"{self.name} exited early:\n{self.stderr_tail()}")
                self._buffer += chunk
            line, _, self._buffer = self._buffer.partition(b"\n")
            found: dict[str, Any] = json.loads(line)
            return found
        raise BenchError(f"{self.name}: no answer within {limit:g} s\n{self.stderr_tail()}")

    async def started(self) -> None:
        """Wait for the node's ``ready`` line.

        Raises:
            BenchError: it did not come in time.
        """
        ready = await self._line(STARTUP_TIMEOUT)
        if ready.get("event") != "ready":
            raise BenchError(f"{self.name}: expected ready, got {ready}")
        self.peer, self.addr = ready["peer"], ready["addr"]

    async def call(self, cmd: str, limit: float = COMMAND_TIMEOUT, **fields: Any) -> dict[str, Any]:
        """Run one command on the node and return its reply.

        Raises:
            BenchError: the node refused, failed, died, or did not answer within ``limit`` s.
        """
        assert self.process.stdin is not None
        async with self._lock:
            line = json.dumps({"cmd": cmd, **fields}).encode() + b"\n"
            try:
                await self.process.stdin.send_all(line)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                raise BenchError(f"{self.name} exited early:\n{self.stderr_tail()}") from None
            reply = await self._line(limit)
        if reply.get("event") != "done":
            raise BenchError(f"{self.name}: {cmd} failed: {reply.get('error', reply)}")
        return reply

    async def stop(self) -> None:
        """Close stdin (the signal to stop) and wait for the exit; kill after a deadline."""
        with trio.CancelScope(shield=True):
            if self.process.stdin is not None:
                await self.process.stdin.aclose()
            with trio.move_on_after(EXIT_TIMEOUT):
                await self.process.wait()
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()
            if self.process.stdout is not None:
                await self.process.stdout.aclose()


@asynccontextmanager
async def _spawn(name: str, data_dir: Path) -> AsyncIterator[Worker]:
    """A node process for the block; stopped (killed if need be) on any exit. Its stderr goes
    to a temporary file, or to ours when the nodes log (``P2PCHAT_BENCH_LOG``)."""
    with tempfile.TemporaryFile() as file:
        stderr = None if os.environ.get(LOG_ENV) else file
        cmd = [sys.executable, SCRIPT, "--worker", name, str(data_dir)]
        process = await trio.lowlevel.open_process(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr
        )
        worker = Worker(name, process, stderr)
        try:
            yield worker
        finally:
            await worker.stop()


# -- figures ---------------------------------------------------------------------------------


def _percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of ``values`` (nan when empty)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def _latency(values_ms: Sequence[float]) -> dict[str, float | int]:
    return {
        "n": len(values_ms),
        "p50": round(_percentile(values_ms, 0.50), 2),
        "p99": round(_percentile(values_ms, 0.99), 2),
        "max": round(max(values_ms), 2) if values_ms else math.nan,
    }


def measure_ed25519(seconds: float = 0.5, rounds: int = 3) -> dict[str, Any]:
    """Ed25519 signature operations per second on one core (best of ``rounds``)."""
    private = Ed25519PrivateKey.generate()
    public = private.public_key()
    ours = KeyPair.generate()
    message = vote_signing_bytes(bytes(32), 1, bytes(32))
    signature = private.sign(message)
    our_signature = ours.sign(message)
    our_public = ours.public_key

    def rate(op: Callable[[], object]) -> float:
        best = 0.0
        for _ in range(rounds):
            count = 0
            began = time.perf_counter()
            deadline = began + seconds
            while True:
                for _ in range(100):
                    op()
                count += 100
                now = time.perf_counter()
                if now >= deadline:
                    break
            best = max(best, count / (now - began))
        return best

    return {
        "verify_per_s": round(rate(lambda: public.verify(signature, message))),
        "verify_ours_per_s": round(rate(lambda: our_public.verify(our_signature, message))),
        "sign_per_s": round(rate(lambda: private.sign(message))),
        "message_bytes": len(message),
        "cryptography": cryptography.__version__,
    }


def verification_count(ratifiers: int, quorum: int, members: int) -> list[tuple[str, int]]:
    """The Ed25519 verifications one message costs across the group, by step."""
    return [
        (
            f"ratifiers check the author's signature before voting (mrat): {ratifiers} x 1",
            ratifiers,
        ),
        (f"the author checks votes until the quorum (mratR): {quorum}", quorum),
        (
            f"other members check certificate ({quorum}) + author signature (smsg): "
            f"{members - 1} x {quorum + 1}",
            (members - 1) * (quorum + 1),
        ),
    ]


@attrs.frozen
class Usage:
    cpu: float
    loop_cpu: float
    wall: float
    verify: int
    sign: int
    #: Chat queries sent, by code, and store transactions, writes and reads.
    counts: dict[str, int]
    #: Step name -> (calls, seconds), with P2PCHAT_BENCH_TIMING.
    timing: dict[str, tuple[int, float]]


def _counts(reply: dict[str, Any]) -> dict[str, int]:
    return {
        **{f"query {code}": n for code, n in reply["queries"].items()},
        **{f"store {what}": n for what, n in reply["store"].items()},
    }


async def _usage(workers: Sequence[Worker]) -> dict[str, Usage]:
    found: dict[str, Usage] = {}

    async def one(worker: Worker) -> None:
        reply = await worker.call("usage")
        found[worker.name] = Usage(
            reply["cpu"],
            reply["loop_cpu"],
            reply["wall"],
            reply["verify"],
            reply["sign"],
            _counts(reply),
            {step: (int(n), float(t)) for step, (n, t) in reply["timing"].items()},
        )

    async with trio.open_nursery() as nursery:
        for worker in workers:
            nursery.start_soon(one, worker)
    return found


async def _everywhere(
    workers: Sequence[Worker], cmd: str, limit: float = COMMAND_TIMEOUT, **fields: Any
) -> dict[str, dict[str, Any]]:
    replies: dict[str, dict[str, Any]] = {}

    async def one(worker: Worker) -> None:
        replies[worker.name] = await worker.call(cmd, limit, **fields)

    async with trio.open_nursery() as nursery:
        for worker in workers:
            nursery.start_soon(one, worker)
    return replies


def _phase_figures(
    load: dict[str, Any], delivered: dict[str, dict[str, int]], skip_s: float
) -> dict[str, Any]:
    """Throughput and latencies of one phase from the author's send times and each member's
    delivery times (all ``time.monotonic_ns``)."""
    sent: dict[str, int] = dict(load["sent"])
    start: int = load["start"]
    end: int = load["end"]
    steady_from = start + int(skip_s * 1e9)
    everywhere: dict[str, int] = {}
    for key in sent:
        times = [delivered[name].get(key) for name in NODES]
        if all(t is not None for t in times):
            everywhere[key] = max(t for t in times if t is not None)
    in_window = sum(1 for t in everywhere.values() if steady_from <= t <= end)
    window_s = (end - steady_from) / 1e9
    steady = [k for k, t in sent.items() if t >= steady_from]
    per_member = {
        name: _latency(
            [(delivered[name][k] - sent[k]) / 1e6 for k in steady if k in delivered[name]]
        )
        for name in NODES
    }
    pooled = [
        (delivered[name][k] - sent[k]) / 1e6
        for name in NODES
        for k in steady
        if k in delivered[name]
    ]
    last = [(everywhere[k] - sent[k]) / 1e6 for k in steady if k in everywhere]
    sent_rate = sum(1 for t in sent.values() if t >= steady_from) / window_s if window_s > 0 else 0
    return {
        "sent": len(sent),
        "failures": load["failures"],
        "failure_examples": load["failure_examples"],
        "missing_somewhere": len(sent) - len(everywhere),
        "missing_by_node": {
            name: sum(1 for k in sent if k not in delivered[name]) for name in NODES
        },
        "steady_s": round(window_s, 2),
        "throughput": round(in_window / window_s, 1) if window_s > 0 else 0.0,
        "send_rate": round(sent_rate, 1),
        "latency_ms": {**per_member, "pooled": _latency(pooled), "last member": _latency(last)},
        "max_lag_ms": round(load["max_lag_ms"], 1),
    }


def _cpu(
    before: dict[str, Usage], after: dict[str, Usage], messages: int
) -> dict[str, dict[str, float]]:
    """Per node: CPU time over wall time (%), CPU ms per message sent, and the event loop
    thread's share of that CPU time (the rest is the store's threads)."""
    found: dict[str, dict[str, float]] = {}
    for name in NODES:
        cpu = after[name].cpu - before[name].cpu
        loop = after[name].loop_cpu - before[name].loop_cpu
        wall = after[name].wall - before[name].wall
        found[name] = {
            "percent": round(100 * cpu / wall, 1) if wall > 0 else 0.0,
            "ms_per_message": round(1000 * cpu / max(1, messages), 2),
            "loop_percent": round(100 * loop / cpu, 1) if cpu > 0 else 0.0,
        }
    return found


def _timing(
    before: dict[str, Usage], after: dict[str, Usage], messages: int
) -> dict[str, dict[str, tuple[float, float]]]:
    """Step -> node -> (calls per message, mean ms per call) over a phase."""
    found: dict[str, dict[str, tuple[float, float]]] = {}
    for name in NODES:
        for step, (calls, seconds) in after[name].timing.items():
            calls0, seconds0 = before[name].timing.get(step, (0, 0.0))
            if calls > calls0:
                found.setdefault(step, {})[name] = (
                    round((calls - calls0) / max(1, messages), 2),
                    round(1000 * (seconds - seconds0) / (calls - calls0), 2),
                )
    return dict(sorted(found.items()))


@attrs.frozen
class Settings:
    duration: float
    paced_duration: float
    window: int
    size: int
    mode: str
    ratifier_author: bool
    profile_dir: str | None


async def _run_phase(
    workers: dict[str, Worker],
    group: str,
    author: str,
    settings: Settings,
    *,
    duration: float,
    rate: float | None,
    profile: bool = False,
) -> tuple[dict[str, Any], dict[str, Usage], dict[str, Usage]]:
    everyone = [workers[name] for name in NODES]
    before = await _usage(everyone)
    if profile:
        await _everywhere(everyone, "profile", on=True)
    load = await workers[author].call(
        "load",
        COMMAND_TIMEOUT + duration * 2,
        group=group,
        duration=duration,
        rate=rate,
        window=settings.window,
        size=settings.size,
        mode=settings.mode,
    )
    sending = await _usage(everyone)  # CPU shares: over the sending only
    if profile:
        await _everywhere(everyone, "profile", on=False)
    keys = [key for key, _ in load["sent"]]
    replies = await _everywhere(
        everyone, "collect", DRAIN_TIMEOUT + 10, keys=keys, timeout=DRAIN_TIMEOUT
    )
    after = await _usage(everyone)  # signature counts: until every delivery is in
    delivered = {name: reply["delivered"] for name, reply in replies.items()}
    skip = min(max(1.0, 0.1 * duration), duration / 2)
    figures = _phase_figures(load, delivered, skip)
    figures["author"] = author
    figures["duration_s"] = duration
    figures["cpu"] = _cpu(before, sending, len(load["sent"]))
    return figures, before, after


async def run_all(settings: Settings) -> dict[str, Any]:
    """Measure the Ed25519 bound, start the five nodes, build the group and run the phases."""
    cores = os.cpu_count() or 1
    ed = measure_ed25519()
    result: dict[str, Any] = {
        "setup": {
            "nodes": list(NODES),
            "cores": cores,
            "python": sys.version.split()[0],
            "window": settings.window,
            "size": settings.size,
            "send_mode": settings.mode,
        },
        "ed25519": ed,
    }
    with tempfile.TemporaryDirectory(prefix="bench_ratify-") as root:
        async with AsyncExitStack() as stack:
            workers: dict[str, Worker] = {}
            for name in NODES:
                workers[name] = await stack.enter_async_context(_spawn(name, Path(root) / name))
            for worker in workers.values():
                await worker.started()
            everyone = list(workers.values())
            for worker in everyone:
                others = [[w.peer, w.addr] for w in everyone if w is not worker]
                await worker.call("peers", peers=others)
            owner = workers[OWNER]
            group = (await owner.call("create"))["group"]
            for name, role in ROLES_ALL.items():
                await owner.call("invite", group=group, peer=workers[name].peer, role=role.value)
                joined = await workers[name].call("join", group=group, via=owner.peer)
            result["setup"]["epoch"] = joined["epoch"]
            quorum = result["setup"]["quorum"] = joined["quorum"]
            await _everywhere(everyone, "watch", group=group)

            counted = verification_count(len(RATIFIERS), quorum, len(NODES))
            needed = sum(n for _, n in counted)
            bound = ed["verify_per_s"] * cores / needed
            result["bound"] = {
                "verifications_per_message": needed,
                "breakdown": counted,
                "msgs_per_s": round(bound, 1),
            }

            authors = [USER, "ratifier2"] if settings.ratifier_author else [USER]
            for author in authors:
                # Warm-up: connections between every pair, caches; not part of the figures.
                await _run_phase(
                    workers, group, author, settings, duration=WARMUP_SECONDS, rate=None
                )
                profile = settings.profile_dir is not None and author == USER
                phase1, before, after = await _run_phase(
                    workers,
                    group,
                    author,
                    settings,
                    duration=settings.duration,
                    rate=None,
                    profile=profile,
                )
                verifies = sum(after[n].verify - before[n].verify for n in NODES)
                signs = sum(after[n].sign - before[n].sign for n in NODES)
                phase1["verifications_per_message"] = round(verifies / max(1, phase1["sent"]), 2)
                phase1["signatures_per_message"] = round(signs / max(1, phase1["sent"]), 2)
                phase1["verifications_by_node"] = {
                    n: round((after[n].verify - before[n].verify) / max(1, phase1["sent"]), 2)
                    for n in NODES
                }
                phase1["per_message"] = _per_message(before, after, phase1["sent"])
                phase1["timing"] = _timing(before, after, phase1["sent"])
                phase1["of_bound_percent"] = round(100 * phase1["throughput"] / bound, 1)
                rate = phase1["throughput"] / 2
                phase2, before2, after2 = await _run_phase(
                    workers,
                    group,
                    author,
                    settings,
                    duration=settings.paced_duration,
                    rate=rate if rate > 0 else 1.0,
                )
                phase2["rate"] = round(rate, 1)
                phase2["per_message"] = _per_message(before2, after2, phase2["sent"])
                result.setdefault("phases", []).append({"saturation": phase1, "half_rate": phase2})
    if settings.profile_dir is not None:
        result["profile"] = _profiles(settings.profile_dir)
    main = result["phases"][0]
    result["targets"] = [
        {
            "name": "throughput >= 50% of the Ed25519 bound",
            "value": main["saturation"]["of_bound_percent"],
            "unit": "%",
            "met": main["saturation"]["of_bound_percent"] >= 50.0,
        },
        {
            "name": "p99 (send to last member) < 50 ms at half the phase-1 rate",
            "value": main["half_rate"]["latency_ms"]["last member"]["p99"],
            "unit": "ms",
            "met": main["half_rate"]["latency_ms"]["last member"]["p99"] < 50.0,
        },
    ]
    return result


def _per_message(before: dict[str, Usage], after: dict[str, Usage], sent: int) -> dict[str, float]:
    """The queries (by code, and refusals by reason) and store operations of all nodes over a
    phase, per message sent."""
    totals: dict[str, int] = {}
    for n in NODES:
        for what, count in after[n].counts.items():
            totals[what] = totals.get(what, 0) + count - before[n].counts.get(what, 0)
    return {what: round(n / max(1, sent), 2) for what, n in sorted(totals.items()) if n}


def _module_of(filename: str, function: str) -> str:
    """A short name for where a profiled function lives: a p2pchat module, a package, the
    standard library, or a C function."""
    if filename == "~":  # "<method 'verify' of 'a.b.Key' objects>", "<built-in method x.y>"
        method = re.fullmatch(r"<method '(\w+)' of '(?:[\w.]+\.)?(\w+)' objects>", function)
        if method is not None:
            return f"C {method[2]}.{method[1]}"
        return "C " + function.strip("<>").removeprefix("built-in method ")
    parts = Path(filename).parts
    if "site-packages" in parts:
        i = parts.index("site-packages")
        return "/".join(parts[i + 1 : i + 3])
    if "p2pchat" in parts:
        return "/".join(parts[parts.index("p2pchat") :])
    return "stdlib " + parts[-1]


def _profiles(profile_dir: str) -> dict[str, dict[str, Any]]:
    """Each node's profile: CPU seconds, own time by module, and the top functions."""
    found: dict[str, dict[str, Any]] = {}
    for name in NODES:
        path = Path(profile_dir) / f"{name}.prof"
        if not path.exists():
            continue
        stats = pstats.Stats(str(path), stream=io.StringIO())
        entries: dict[tuple[str, int, str], tuple[int, int, float, float, Any]]
        entries = stats.stats  # type: ignore[attr-defined]
        total: float = stats.total_tt  # type: ignore[attr-defined]
        by_module: dict[str, float] = {}
        functions = []
        for (filename, line, function), (_, calls, own, cumulative, _) in entries.items():
            module = _module_of(filename, function)
            by_module[module] = by_module.get(module, 0.0) + own
            where = module if filename == "~" else f"{module}:{line}({function})"
            functions.append((where, calls, round(own, 4), round(cumulative, 4)))
        functions.sort(key=lambda f: -f[2])
        modules = sorted(by_module.items(), key=lambda m: -m[1])[:PROFILE_TOP]
        found[name] = {
            "cpu_s": round(total, 3),
            "by_module": [(m, round(t, 4), round(100 * t / total, 1)) for m, t in modules],
            "functions": functions[:PROFILE_TOP],
        }
    return found


# -- output ------------------------------------------------------------------------------------


def _fmt(value: float) -> str:
    return "n/a" if isinstance(value, float) and math.isnan(value) else f"{value:,.1f}"


def render(result: dict[str, Any]) -> str:
    setup, ed, bound = result["setup"], result["ed25519"], result["bound"]
    out = [
        f"bench_ratify: 5 nodes on 127.0.0.1 (3 ratifiers, quorum {setup['quorum']}, 1 user, "
        f"1 viewer), each its own process; {setup['cores']} cores, Python {setup['python']}",
        f"window {setup['window']} in flight, {setup['size']}-byte messages, "
        f"send mode {setup['send_mode']!r}",
        "",
        f"Ed25519, one core (cryptography {ed['cryptography']}, {ed['message_bytes']}-byte "
        f"message): verify {ed['verify_per_s']:,}/s "
        f"(through PublicKey.verify {ed['verify_ours_per_s']:,}/s), sign {ed['sign_per_s']:,}/s",
        "Verifications per message (counted from the code):",
    ]
    out += [f"  {text:<82} {n:>3}" for text, n in bound["breakdown"]]
    out += [
        f"  {'total':<82} {bound['verifications_per_message']:>3}",
        f"Bound: {ed['verify_per_s']:,} x {setup['cores']} cores / "
        f"{bound['verifications_per_message']} = {bound['msgs_per_s']:,.1f} msg/s",
    ]
    for phases in result["phases"]:
        sat, half = phases["saturation"], phases["half_rate"]
        out += ["", f"Phase 1: {sat['author']} sends as fast as it can, {sat['duration_s']:g} s"]
        out += _render_phase(sat)
        out += [
            f"  throughput / bound: {sat['of_bound_percent']}%",
            f"  measured per message: {sat['verifications_per_message']} verifications "
            f"(count {bound['verifications_per_message']}), "
            f"{sat['signatures_per_message']} signatures; by node: "
            + ", ".join(f"{n} {v}" for n, v in sat["verifications_by_node"].items()),
        ]
        counts = ", ".join(f"{what} {n}" for what, n in sat["per_message"].items())
        out += textwrap.wrap(
            "per message, all nodes: " + counts,
            width=100,
            initial_indent="  ",
            subsequent_indent="    ",
        )
        if sat["timing"]:
            out += _render_timing(sat["timing"])
        out += [
            "",
            f"Phase 2: {half['author']} paced at {half['rate']:,.1f} msg/s (half of phase 1), "
            f"{half['duration_s']:g} s; largest lag behind schedule {half['max_lag_ms']} ms",
        ]
        out += _render_phase(half)
        if half.get("per_message"):
            counts = ", ".join(f"{what} {n}" for what, n in half["per_message"].items())
            out += textwrap.wrap(
                "per message, all nodes: " + counts,
                width=100,
                initial_indent="  ",
                subsequent_indent="    ",
            )
    out += ["", "Targets"]
    for target in result["targets"]:
        mark = "met" if target["met"] else "NOT MET"
        out.append(f"  {target['name']:<62} {_fmt(target['value'])} {target['unit']:<3} {mark}")
    for name, profile in result.get("profile", {}).items():
        out += [
            "",
            f"Profile of {name} over phase 1: {profile['cpu_s']} s of CPU in the event loop's "
            "thread (cProfile, own time, thread CPU clock; profiling slows the node down)",
            f"  {'by module':<60} {'s':>7} {'%':>6}",
        ]
        out += [f"  {m[:60]:<60} {t:>7.3f} {p:>5.1f}%" for m, t, p in profile["by_module"]]
        out.append(f"  {'by function':<60} {'own s':>7} {'cum s':>7} {'calls':>8}")
        out += [
            f"  {where[-60:]:<60} {own:>7.3f} {cum:>7.3f} {calls:>8}"
            for where, calls, own, cum in profile["functions"]
        ]
    return "\n".join(out)


def _render_timing(timing: dict[str, dict[str, list[float]]]) -> list[str]:
    out = [
        "  wall time by step (P2PCHAT_BENCH_TIMING): calls per message / mean ms per call",
        f"  {'step':<32}" + "".join(f"{name:>16}" for name in NODES),
    ]
    for step, by_node in timing.items():
        cells = [
            f"{by_node[n][0]:>7.2f} /{by_node[n][1]:>6.1f}" if n in by_node else " " * 15
            for n in NODES
        ]
        out.append(f"  {step:<32}" + "".join(f"{cell:>16}" for cell in cells))
    return out


def _render_phase(figures: dict[str, Any]) -> list[str]:
    out = [
        f"  sent {figures['sent']:,} ({figures['send_rate']:,.1f}/s in the steady part), "
        f"failed {figures['failures']}, not delivered everywhere {figures['missing_somewhere']}",
        f"  ratified and delivered at all 5 members: {figures['throughput']:,.1f} msg/s "
        f"(steady part, {figures['steady_s']:g} s)",
        f"  {'latency, ms':<16} {'p50':>8} {'p99':>8} {'max':>8} {'n':>7}"
        f"   {'cpu':>6} {'cpu ms/msg':>10} {'in loop':>8}",
    ]
    for name, row in figures["latency_ms"].items():
        cpu = figures["cpu"].get(name)
        cpu_text = (
            f"   {cpu['percent']:5.1f}% {cpu['ms_per_message']:>10.2f} {cpu['loop_percent']:>7.1f}%"
            if cpu is not None
            else ""
        )
        out.append(
            f"  {name:<16} {_fmt(row['p50']):>8} {_fmt(row['p99']):>8} {_fmt(row['max']):>8} "
            f"{row['n']:>7}{cpu_text}"
        )
    total = sum(c["percent"] for c in figures["cpu"].values())
    per_message = sum(c["ms_per_message"] for c in figures["cpu"].values())
    out.append(
        f"  cpu, all nodes: {total:.1f}% of {100 * (os.cpu_count() or 1)}%, "
        f"{per_message:.2f} ms per message ('in loop': the event loop's thread, the rest is "
        "SQLite's threads)"
    )
    if figures["missing_somewhere"]:
        missing = ", ".join(f"{n} {m}" for n, m in figures["missing_by_node"].items() if m)
        out.append(f"  not delivered within {DRAIN_TIMEOUT:g} s after the phase: {missing}")
    for example in figures["failure_examples"]:
        out.append(f"  failure: {example}")
    return out


# -- main --------------------------------------------------------------------------------------


async def _main(settings: Settings, as_json: bool) -> None:
    result: dict[str, Any] | None = None
    async with trio.open_nursery() as nursery:

        async def on_signal() -> None:
            # SIGTERM/SIGHUP unwind like an error, so the nodes and data dirs are cleaned up.
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGHUP) as signals:
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    return

        nursery.start_soon(on_signal)
        result = await run_all(settings)
        nursery.cancel_scope.cancel()
    if result is None:
        raise BenchError("terminated by a signal")
    print(json.dumps(result) if as_json else render(result))


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="5 s phases, for a quick look")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--duration", type=_positive, help="phase 1 seconds (20; quick 5)")
    parser.add_argument("--paced-duration", type=_positive, help="phase 2 seconds (10; quick 5)")
    parser.add_argument(
        "--window", type=int, default=DEFAULT_WINDOW, help="sends in flight in phase 1 (32)"
    )
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help="bytes per message (100)")
    parser.add_argument(
        "--send-mode",
        choices=["wait", "queue"],
        default="wait",
        help="send(wait=True) loops, or send(wait=False) + wait_ratified (wait)",
    )
    parser.add_argument(
        "--ratifier-author", action="store_true", help="also measure ratifier2 as the author"
    )
    parser.add_argument("--worker", nargs=2, metavar=("NAME", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker_main(*args.worker)
        return
    if args.window < 1 or args.size < 1:
        parser.error("--window and --size must be >= 1")
    settings = Settings(
        duration=args.duration or (5.0 if args.quick else 20.0),
        paced_duration=args.paced_duration or (5.0 if args.quick else 10.0),
        window=args.window,
        size=args.size,
        mode=args.send_mode,
        ratifier_author=args.ratifier_author,
        profile_dir=os.environ.get(PROFILE_ENV) or None,
    )
    run_bench("bench_ratify", _main, settings, args.json)


if __name__ == "__main__":
    main()
