"""Nodes behind two NATs, a relay between them, and the namespaces to run them in. Used by
tests/net/test_dcutr_netns.py, tests/app/test_relaying_netns.py and tools/bench_holepunch.py.

Theory of operation
-------------------
:func:`two_nats` builds, inside namespaces made for it only (names carry the process id and a
random token; the ``with`` block deletes them all, whatever happens):

* a **public** namespace with a bridge ``br0`` at ``203.0.113.1/24`` (the "internet"; the relay
  listens there);
* two **router** namespaces, ``a`` and ``b``, each with ``wan`` on the bridge
  (``203.0.113.2`` and ``.3``) and ``lan`` to its home (``192.168.1.1/24``, ``192.168.2.1/24``),
  IPv4 forwarding on, nftables masquerading the home behind ``wan`` and dropping (not
  refusing) every new connection from ``wan``: a home router. With ``symmetric`` the
  masquerade picks a random port for every connection (``fully-random``), which no hole punch
  can predict;
* two **home** namespaces at ``192.168.1.2`` and ``192.168.2.2``, routed through their router.

``python tools/holepunch_node.py relay --listen ADDR`` serves circuit relay v2 and prints
``listening``. ``listen --listen ADDR --relay R`` reserves on R, runs DCUtR and prints
``reserved`` (its circuit address), then ``direct`` or ``relayed`` each time a hole punch ends.
``dial --listen ADDR --relay R --target CIRCUIT`` connects to R, dials CIRCUIT, runs DCUtR and
prints ``connected`` (relayed), then ``result``: the connection it ends with (its remote address
and whether it is relayed) and a ping's round trip. Every node runs until stdin reaches EOF or
``--lifetime``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import attrs

sys.path.insert(0, str(Path(__file__).resolve().parent))

from netns import (
    in_namespace,
    ip,
    make_router,
    namespaces,
    veth,
)
from netns import nat_unavailable_reason as nat_unavailable_reason  # for the tests

RELAY_ADDR: Final = "203.0.113.1"
HOME_ADDRS: Final = ("192.168.1.2", "192.168.2.2")
WAN_ADDRS: Final = ("203.0.113.2", "203.0.113.3")
SINK: Final = "/p2pchat-bench/sink/1.0.0"
SRC: Final = Path(__file__).resolve().parents[1] / "src"


def _rules(home: str, *, symmetric: bool) -> str:
    mode = " fully-random" if symmetric else ""
    return f"""
table ip p2pchat_nat {{
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr {home} oifname "wan" masquerade{mode}
  }}
  chain forward {{
    type filter hook forward priority filter; policy accept;
    iifname "wan" ct state new drop
  }}
  chain input {{
    type filter hook input priority filter; policy accept;
    iifname "wan" ct state new drop
  }}
}}
"""


@attrs.frozen
class TwoNats:
    public: str
    routers: tuple[str, str]
    homes: tuple[str, str]

    @staticmethod
    def command(namespace: str, argv: Sequence[str]) -> list[str]:
        return in_namespace(namespace, argv)


@contextmanager
def two_nats(*, symmetric: bool = False) -> Iterator[TwoNats]:
    """Build the namespaces of the module docstring; delete them on exit.

    Raises:
        NetnsError: a command failed (what was made is deleted).
    """
    with namespaces("p2php", ["p", "ra", "rb", "ha", "hb"]) as names:
        net = TwoNats(
            public=names["p"],
            routers=(names["ra"], names["rb"]),
            homes=(names["ha"], names["hb"]),
        )
        p = net.public
        ip("-n", p, "link", "add", "br0", "type", "bridge")
        ip("-n", p, "addr", "add", f"{RELAY_ADDR}/24", "dev", "br0")
        ip("-n", p, "link", "set", "br0", "up")
        for i, (router, home) in enumerate(zip(net.routers, net.homes, strict=True)):
            port = f"v{i}"
            veth(p, port, router, "wan")
            ip("-n", p, "link", "set", port, "master", "br0", "up")
            ip("-n", router, "addr", "add", f"{WAN_ADDRS[i]}/24", "dev", "wan")
            ip("-n", router, "link", "set", "wan", "up")
            veth(router, "lan", home, "eth0")
            ip("-n", router, "addr", "add", f"192.168.{i + 1}.1/24", "dev", "lan")
            ip("-n", router, "link", "set", "lan", "up")
            ip("-n", home, "addr", "add", f"{HOME_ADDRS[i]}/24", "dev", "eth0")
            ip("-n", home, "link", "set", "eth0", "up")
            ip("-n", home, "route", "add", "default", "via", f"192.168.{i + 1}.1")
            make_router(router, _rules(f"192.168.{i + 1}.0/24", symmetric=symmetric))
        yield net


# -- a p2pchat node in a namespace -----------------------------------------------------------------


@contextmanager
def chat_node(
    namespace: str,
    data_dir: Path,
    config: str,
    *,
    autonat: bool,
    bootstrap: Sequence[str] = (),
    src: Path = SRC,
) -> Iterator[subprocess.Popen[bytes]]:
    """A ``p2pchat node`` (from the sources at ``src``) in ``namespace`` on ``data_dir``, made
    here (mode 0700) with ``config`` and mDNS off, ``bootstrap`` peers and AutoNAT on or off.
    On exit it is asked to stop over its control socket, and killed after 15 s."""
    data_dir.mkdir(mode=0o700)
    peers = ", ".join(f'"{p}"' for p in bootstrap)
    (data_dir / "config.toml").write_text(
        f"{config}\n[discovery]\nmdns = false\nbootstrap = [{peers}]\n"
        f"[autonat]\nenabled = {'true' if autonat else 'false'}\n"
    )
    python_path = f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    argv = ["env", f"PYTHONPATH={python_path}", sys.executable, "-m", "p2pchat"]
    argv += ["--data-dir", str(data_dir), "node"]
    process = subprocess.Popen(
        in_namespace(namespace, argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield process
    finally:
        from p2pchat.app import client
        from p2pchat.app.control import ControlError

        try:
            client.call(data_dir, "stop")
        except ControlError:
            pass
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- one run -------------------------------------------------------------------------------------


def punch(
    net: TwoNats,
    python: Sequence[str],
    *,
    deadline: float = 40.0,
    dcutr: bool = True,
    send_mib: int = 0,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the relay, the node behind NAT a (reserving) and the one behind NAT b (dialing it
    through the relay) in ``net``; return b's ``connected`` and ``result`` events.

    Raises:
        AssertionError: a node failed or missed the deadline (its stderr in the message).
    """
    from mdns_node import NodeProcess, pump

    node = str(Path(__file__).resolve())
    extra = ["--circuit-data", str(max(1 << 17, (send_mib + 1) << 20))]
    relay = NodeProcess(
        net.command(net.public, [*python, node, "relay", "--listen",
                                 f"/ip4/{RELAY_ADDR}/tcp/4001", *extra]),
        label="relay",
    )  # fmt: skip
    nodes = [relay]
    flags = [] if dcutr else ["--no-dcutr", "--wait", "0"]
    try:
        assert pump(nodes, lambda: relay.first("listening") is not None or relay.eof, deadline)
        listening = relay.first("listening")
        assert listening is not None, relay.stop()
        relay_addr = str(listening["addrs"][0])
        a = NodeProcess(
            net.command(net.homes[0], [*python, node, "listen", "--listen",
                                       f"/ip4/{HOME_ADDRS[0]}/tcp/4002", "--relay", relay_addr,
                                       *flags]),
            label="a",
        )  # fmt: skip
        nodes.append(a)
        assert pump(nodes, lambda: a.first("reserved") is not None or a.eof, deadline)
        reserved = a.first("reserved")
        assert reserved is not None, a.stop()
        b = NodeProcess(
            net.command(net.homes[1], [*python, node, "dial", "--listen",
                                       f"/ip4/{HOME_ADDRS[1]}/tcp/4003", "--relay", relay_addr,
                                       "--target", str(reserved["circuit"]),
                                       "--send-mib", str(send_mib), *flags]),
            label="b",
        )  # fmt: skip
        nodes.append(b)
        assert pump(nodes, lambda: b.first("result") is not None or b.eof, deadline)
        result = b.first("result")
        assert result is not None, b.stop()
        connected = b.first("connected")
        assert connected is not None
        return connected, result
    finally:
        for each in nodes:
            each.stop()


# -- the nodes -----------------------------------------------------------------------------------


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


async def run_node(args: argparse.Namespace) -> None:
    import trio

    from p2pchat.identity import KeyPair
    from p2pchat.multiaddr import Multiaddr
    from p2pchat.net.dcutr import DCUtRConfig, open_dcutr
    from p2pchat.net.host import HostConfig, open_host
    from p2pchat.net.identify import identify_peer
    from p2pchat.net.muxer import MuxedStream
    from p2pchat.net.ping import open_ping
    from p2pchat.net.relay import (
        RelayServiceConfig,
        is_relayed,
        open_relay_client,
        open_relay_service,
    )
    from p2pchat.protocols.relay import RelayLimits

    config = HostConfig(listen=(Multiaddr.from_string(args.listen),), reuse_port=True)

    async def wait_stdin_eof() -> None:
        async with trio.lowlevel.FdStream(os.dup(sys.stdin.fileno())) as stdin:
            while await stdin.receive_some(4096):
                pass

    start = time.monotonic()
    with trio.move_on_after(args.lifetime):
        async with open_host(KeyPair.generate(), config) as host:
            if args.command == "relay":
                limits = RelayLimits(circuit_data=args.circuit_data, circuit_duration=600)
                async with open_relay_service(host, RelayServiceConfig(limits)):
                    emit("listening", addrs=[str(a) for a in host.addrs])
                    await wait_stdin_eof()
                return

            async def sink(stream: MuxedStream) -> None:
                count = 0
                while data := await stream.receive_some(65536):
                    count += len(data)
                await stream.send_all(count.to_bytes(8, "big"))

            host.set_stream_handler(SINK, sink)
            attempts = 0 if args.no_dcutr else 3
            async with (
                open_relay_client(host) as client,
                open_dcutr(host, DCUtRConfig(grace=1.0, attempts=attempts)) as dcutr,
            ):
                relay_conn = await host.connect(Multiaddr.from_string(args.relay))
                await identify_peer(host, relay_conn)
                if args.command == "listen":
                    await client.reserve(Multiaddr.from_string(args.relay))
                    circuit = client.book.circuit_addrs(time.time())[0]
                    emit("reserved", circuit=str(circuit.with_peer_id(host.peer_id)))
                    async with trio.open_nursery() as nursery:

                        async def report() -> None:
                            while True:
                                await dcutr.done.wait()
                                emit("punched", upgraded=dcutr.stats.upgraded,
                                     failed=dcutr.stats.failed)  # fmt: skip

                        nursery.start_soon(report)
                        await wait_stdin_eof()
                        nursery.cancel_scope.cancel()
                    return
                target = Multiaddr.from_string(args.target)
                conn = await host.connect(target)
                emit("connected", relayed=is_relayed(conn.remote_addr),
                     seconds=time.monotonic() - start)  # fmt: skip
                peer = conn.remote_peer
                # The inbound side drives the hole punch; wait for its outcome (bounded).
                with trio.move_on_after(args.wait):
                    while True:
                        live = host.connection(peer)
                        if live is not None and not is_relayed(live.remote_addr):
                            break
                        await trio.sleep(0.05)
                live = host.connection(peer)
                assert live is not None
                direct_at = time.monotonic() - start
                async with open_ping(host, peer) as pinger:
                    rtt = await pinger.ping()
                throughput = None
                if args.send_mib:
                    stream = await host.new_stream(peer, [SINK])
                    chunk = bytes(65536)
                    began = time.monotonic()
                    for _ in range(args.send_mib * 16):
                        await stream.send_all(chunk)
                    await stream.send_eof()
                    reply = b""
                    while len(reply) < 8 and (data := await stream.receive_some(8)):
                        reply += data
                    took = time.monotonic() - began
                    assert int.from_bytes(reply, "big") == args.send_mib * (1 << 20)
                    throughput = args.send_mib / took
                    await stream.aclose()
                emit(
                    "result",
                    relayed=is_relayed(live.remote_addr),
                    remote=str(live.remote_addr),
                    seconds=direct_at,
                    ping=rtt,
                    mib_per_s=throughput,
                )
                await wait_stdin_eof()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("relay", "listen", "dial"):
        p = sub.add_parser(name)
        p.add_argument("--listen", required=True)
        p.add_argument("--lifetime", type=float, default=60.0)
        p.add_argument("--relay", default="")
        p.add_argument("--target", default="")
        p.add_argument("--wait", type=float, default=20.0)
        p.add_argument("--circuit-data", type=int, default=1 << 17)
        p.add_argument("--no-dcutr", action="store_true")
        p.add_argument("--send-mib", type=int, default=0)
    args = parser.parse_args(argv)
    import trio

    trio.run(run_node, args)


if __name__ == "__main__":
    main()
