"""A p2pchat node that finds its peers through mDNS alone, and a LAN of network namespaces
to run such nodes in. Used by tests/test_mdns_netns.py and tools/bench_mdns.py.

Theory of operation
-------------------
:func:`netns_lan` builds a private LAN that touches nothing outside it: a "switch" namespace
holding a bridge ``br0``, and one namespace per node whose interface ``lan0`` is a veth whose
other end (``p<i>``) is a port of that bridge. Each veth is created inside the switch
namespace with its peer end placed straight into the node's namespace, so the machine's own
namespace never sees an interface, an address or a route of the LAN. Node ``i`` has
``10.199.0.<i+1>/24`` (the third octet can be chosen). Every namespace name carries the
process id and a random token, and the ``with`` block deletes them all, whatever happens.

``python tools/mdns_node.py run --listen /ip4/10.199.0.1/tcp/0 --interface lan0 --expect 2``
(run with ``ip netns exec <ns>``) starts a host listening there and mDNS on that interface,
and prints JSON lines on stdout:

* ``ready``: peer id, listen addresses and four clock readings (``time.monotonic``, the same
  clock in every namespace): ``main()`` entered (before p2pchat and trio are imported),
  imports done, host listening, and ``t``, mDNS running;
* ``discovered`` for each peer mDNS reports, with its addresses; ``connected`` or
  ``dial_error`` for each dial when ``--connect`` is given (a dial uses the peer store only);
* ``done`` once ``--expect`` peers are discovered (and connected, with ``--connect``);
* ``exit`` with the mDNS statistics, when stdin reaches end of file or ``--lifetime`` ends.

The node knows no other peer's address when it starts: whatever it dials, mDNS told it.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import selectors
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any, Final

import attrs

if TYPE_CHECKING:
    from p2pchat.discovery.mdns import DiscoveredPeer
    from p2pchat.identity import PeerID

#: Each ``ip`` command gets this long.
IP_TIMEOUT: Final = 10.0
#: How long a new veth may take to report its carrier.
LINK_UP_TIMEOUT: Final = 5.0


# -- the LAN ------------------------------------------------------------------------------------


class NetnsError(RuntimeError):
    """An ``ip`` command failed while building the LAN."""


def _ip(*args: str) -> str:
    done = subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT, check=False
    )
    if done.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def netns_unavailable_reason() -> str | None:
    """Why namespaces cannot be made here (None if they can): not root, no ``ip``, or the
    kernel refuses (checked by making and deleting one)."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    if shutil.which("ip") is None:
        return "the 'ip' command (iproute2) is not installed"
    probe = f"p2pmd-probe-{os.getpid()}-{secrets.token_hex(3)}"
    try:
        _ip("netns", "add", probe)
    except (NetnsError, OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot make a network namespace: {exc}"
    try:
        _ip("netns", "del", probe)
    except (NetnsError, OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot delete network namespace {probe}: {exc}"
    return None


@attrs.frozen
class NetnsLan:
    """Node namespaces on one bridge; see :func:`netns_lan`."""

    switch: str
    nodes: tuple[str, ...]
    subnet: str  # the first three octets, e.g. "10.199.0"

    def address(self, index: int) -> str:
        """The IPv4 address of node ``index`` (on its ``lan0``)."""
        return f"{self.subnet}.{index + 1}"

    def command(self, index: int, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside node ``index``'s namespace."""
        return ["ip", "netns", "exec", self.nodes[index], *argv]


@contextmanager
def netns_lan(size: int, *, subnet: str = "10.199.0") -> Iterator[NetnsLan]:
    """``size`` namespaces joined by a bridge, deleted on exit.

    Raises:
        NetnsError: an ``ip`` command failed (what was made is deleted first).
        ValueError: ``size`` is not 1-250.
    """
    if not 1 <= size <= 250:
        raise ValueError(f"a LAN of {size} nodes")
    tag = f"p2pmd-{os.getpid()}-{secrets.token_hex(3)}"
    lan = NetnsLan(f"{tag}-sw", tuple(f"{tag}-n{i}" for i in range(size)), subnet)
    made: list[str] = []
    try:
        _ip("netns", "add", lan.switch)
        made.append(lan.switch)
        _ip("-n", lan.switch, "link", "add", "br0", "type", "bridge")
        # 224.0.0.251 is link-local and flooded anyway; no snooping keeps it that way.
        _ip("-n", lan.switch, "link", "set", "br0", "type", "bridge", "mcast_snooping", "0")
        _ip("-n", lan.switch, "link", "set", "br0", "up")
        for index, ns in enumerate(lan.nodes):
            _ip("netns", "add", ns)
            made.append(ns)
            port = f"p{index}"
            _ip("-n", lan.switch, "link", "add", port, "type", "veth", "peer", "name", "lan0",
                "netns", ns)  # fmt: skip
            _ip("-n", lan.switch, "link", "set", port, "master", "br0")
            _ip("-n", lan.switch, "link", "set", port, "up")
            _ip("-n", ns, "addr", "add", f"{lan.address(index)}/24", "dev", "lan0")
            _ip("-n", ns, "link", "set", "lan0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        _wait_links_up(lan)
        yield lan
    finally:
        for ns in reversed(made):
            try:
                _ip("netns", "del", ns)
            except (NetnsError, OSError, subprocess.TimeoutExpired) as exc:
                print(f"warning: could not delete namespace {ns}: {exc}", file=sys.stderr)


def _wait_links_up(lan: NetnsLan) -> None:
    deadline = time.monotonic() + LINK_UP_TIMEOUT
    for ns in lan.nodes:
        while "state UP" not in _ip("-n", ns, "-o", "link", "show", "lan0"):
            if time.monotonic() > deadline:
                raise NetnsError(f"lan0 in {ns} did not come up")
            time.sleep(0.01)


# -- driving node processes ----------------------------------------------------------------------


class NodeProcess:
    """A subprocess printing JSON lines; :func:`pump` collects them into ``events``."""

    def __init__(self, argv: Sequence[str], *, label: str = "") -> None:
        self.label = label
        self.spawned_at = time.monotonic()
        self.process: subprocess.Popen[bytes] = subprocess.Popen(
            list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.events: list[dict[str, Any]] = []
        self._partial = b""
        self.eof = False

    def first(self, event: str) -> dict[str, Any] | None:
        """The first event named ``event`` so far."""
        return next((e for e in self.events if e.get("event") == event), None)

    def all(self, event: str) -> list[dict[str, Any]]:
        """Every event named ``event`` so far."""
        return [e for e in self.events if e.get("event") == event]

    def _feed(self, chunk: bytes) -> None:
        if not chunk:
            self.eof = True
            return
        self._partial += chunk
        *lines, self._partial = self._partial.split(b"\n")
        for line in lines:
            if line.strip():
                self.events.append(json.loads(line))

    def stop(self, timeout: float = 10.0) -> tuple[int, str]:
        """Close stdin, read what is left, wait; kill if it does not exit in ``timeout``.
        Returns the exit status and the tail of stderr."""
        try:  # communicate() closes stdin, then reads to EOF
            out, err = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, err = self.process.communicate()
        self._feed(out)
        self._feed(b"")
        return self.process.returncode, err.decode(errors="replace")[-3000:]

    def kill(self) -> None:
        """Kill the process if it still runs (for ``finally`` blocks)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


def pump(nodes: Sequence[NodeProcess], until: Callable[[], bool], timeout: float) -> bool:
    """Read the nodes' output until ``until()`` holds (True) or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        for node in nodes:
            stdout: IO[bytes] | None = node.process.stdout
            if stdout is not None and not node.eof:
                selector.register(stdout, selectors.EVENT_READ, node)
        while not until():
            left = deadline - time.monotonic()
            if left <= 0 or not selector.get_map():
                return until()
            for key, _ in selector.select(left):
                node = key.data
                node._feed(os.read(key.fd, 65536))
                if node.eof:
                    selector.unregister(key.fileobj)
    return True


# -- the node ------------------------------------------------------------------------------------


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, "t": time.monotonic(), **fields}), flush=True)


async def _wait_stdin_eof() -> None:
    """Return when stdin reaches end of file (never, if stdin is not a pipe or a socket)."""
    import trio

    fd = sys.stdin.fileno()
    mode = os.fstat(fd).st_mode
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        await trio.sleep_forever()
    async with trio.lowlevel.FdStream(os.dup(fd)) as stream:
        while await stream.receive_some(4096):
            pass


async def run_node(args: argparse.Namespace, t_start: float, t_imported: float) -> None:
    """The ``run`` command (see the module docstring)."""
    import trio

    from p2pchat.discovery.mdns import MdnsConfig, open_mdns
    from p2pchat.identity import KeyPair
    from p2pchat.multiaddr import Multiaddr
    from p2pchat.net.host import DialError, HostConfig, open_host

    listen = tuple(Multiaddr.from_string(a) for a in args.listen)
    async with open_host(KeyPair.generate(), HostConfig(listen=listen)) as host:
        t_listening = time.monotonic()
        discovered: set[PeerID] = set()
        connected: set[PeerID] = set()
        finished = False

        def check_done() -> None:
            nonlocal finished
            ok = len(discovered) >= args.expect
            if args.connect:
                ok = ok and len(connected) >= args.expect
            if ok and not finished and args.expect > 0:
                finished = True
                emit("done", discovered=len(discovered), connected=len(connected))

        async def dial(peer: PeerID) -> None:
            try:
                with trio.fail_after(args.dial_timeout):
                    conn = await host.connect(peer)
            except (DialError, trio.TooSlowError) as exc:
                emit("dial_error", peer_id=str(peer), error=str(exc) or "timeout")
                return
            connected.add(conn.remote_peer)
            emit("connected", peer_id=str(conn.remote_peer), remote=str(conn.remote_addr))
            check_done()

        async with trio.open_nursery() as nursery:

            def on_discovered(peer: DiscoveredPeer) -> None:
                discovered.add(peer.peer_id)
                emit(
                    "discovered",
                    peer_id=str(peer.peer_id),
                    addrs=[str(a) for a in peer.addrs],
                    ttl=peer.ttl,
                )
                if args.connect:
                    nursery.start_soon(dial, peer.peer_id)
                check_done()

            config = MdnsConfig(
                interface=args.interface,
                port=args.port,
                min_response_interval=args.min_response_interval,
            )
            async with open_mdns(host, config, on_discovered=on_discovered) as mdns:
                emit(
                    "ready",
                    peer_id=str(host.peer_id),
                    addrs=[str(a) for a in host.addrs],
                    peer_name=mdns.peer_name,
                    interface=mdns.interface,
                    t_start=t_start,
                    t_imported=t_imported,
                    t_listening=t_listening,
                )
                with trio.move_on_after(args.lifetime):
                    await _wait_stdin_eof()
                emit("exit", stats=attrs.asdict(mdns.statistics()))
            nursery.cancel_scope.cancel()


def main(argv: Sequence[str] | None = None) -> None:
    t_start = time.monotonic()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run one node until stdin closes")
    run.add_argument("--listen", action="append", required=True, help="multiaddr (repeatable)")
    run.add_argument("--interface", default="lo", help="mDNS interface (name or IPv4 address)")
    run.add_argument("--port", type=int, default=5353, help="mDNS UDP port")
    run.add_argument("--expect", type=int, default=0, help="print 'done' after this many peers")
    run.add_argument("--connect", action="store_true", help="dial every discovered peer")
    run.add_argument("--dial-timeout", type=float, default=10.0)
    run.add_argument(
        "--min-response-interval",
        type=float,
        default=1.0,
        help="seconds between two multicasts of our response (RFC 6762 section 6: 1)",
    )
    run.add_argument("--lifetime", type=float, default=60.0, help="exit after this long")
    args = parser.parse_args(argv)
    # The stack is imported here so that the node can report what importing it costs.
    import trio

    import p2pchat.discovery
    import p2pchat.net.host  # noqa: F401

    trio.run(run_node, args, t_start, time.monotonic())


if __name__ == "__main__":
    main()
