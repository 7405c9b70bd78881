"""An AutoNAT node, and a small internet of network namespaces with a NAT to run it in. Used
by tests/net/test_autonat_netns.py.

Theory of operation
-------------------
:func:`nat_internet` builds, inside namespaces made for it only (names carry the process id
and a random token; the ``with`` block deletes them all, whatever happens):

* a **router** namespace with a bridge ``br0`` (``203.0.113.1/24``, the "internet") and a
  veth ``vpriv`` (``192.168.77.1/24``) to a private LAN, IPv4 forwarding on, and nftables
  rules that masquerade the private LAN behind ``203.0.113.1`` and drop new connections from
  the internet into it (a home NAT);
* ``public`` namespaces on the bridge, at ``203.0.113.<10+i>``;
* one ``private`` namespace at ``192.168.77.2``, whose default route is the router.

``python tools/autonat_node.py serve --listen /ip4/IP/tcp/0`` (run with
``ip netns exec <ns>``) runs a host serving AutoNAT and prints ``listening`` (its addresses)
until stdin reaches end of file. ``probe --listen ... --server ADDR ...`` connects to each
server, identifies it, asks them all to dial it back and prints ``probed``: the verdict
(public, private, unknown), the counts and the observed addresses.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
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

PRIVATE_ADDR: Final = "192.168.77.2"
NFT_RULES: Final = """
table ip p2pchat_nat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr 192.168.77.0/24 oifname "br0" masquerade
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    iifname "br0" oifname "vpriv" ct state established,related accept
    iifname "br0" oifname "vpriv" drop
  }
}
"""


@attrs.frozen
class NatInternet:
    router: str
    public: tuple[str, ...]
    private: str

    def public_address(self, index: int) -> str:
        return f"203.0.113.{10 + index}"

    @staticmethod
    def command(namespace: str, argv: Sequence[str]) -> list[str]:
        return in_namespace(namespace, argv)


@contextmanager
def nat_internet(public: int) -> Iterator[NatInternet]:
    """Build the namespaces of the module docstring; delete them on exit.

    Raises:
        NetnsError: a command failed (what was made is deleted).
    """
    roles = ["r", *(f"p{i}" for i in range(public)), "n"]
    with namespaces("p2pan", roles) as names:
        net = NatInternet(
            router=names["r"],
            public=tuple(names[f"p{i}"] for i in range(public)),
            private=names["n"],
        )
        r = net.router
        ip("-n", r, "link", "add", "br0", "type", "bridge")
        ip("-n", r, "addr", "add", "203.0.113.1/24", "dev", "br0")
        ip("-n", r, "link", "set", "br0", "up")
        for i, ns in enumerate(net.public):
            port = f"v{i}"
            veth(r, port, ns, "eth0")
            ip("-n", r, "link", "set", port, "master", "br0", "up")
            ip("-n", ns, "addr", "add", f"{net.public_address(i)}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
        n = net.private
        veth(r, "vpriv", n, "eth0")
        ip("-n", r, "addr", "add", "192.168.77.1/24", "dev", "vpriv")
        ip("-n", r, "link", "set", "vpriv", "up")
        ip("-n", n, "addr", "add", f"{PRIVATE_ADDR}/24", "dev", "eth0")
        ip("-n", n, "link", "set", "eth0", "up")
        ip("-n", n, "route", "add", "default", "via", "192.168.77.1")
        make_router(r, NFT_RULES)
        yield net


# -- the node ------------------------------------------------------------------------------------


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


async def run_node(args: argparse.Namespace) -> None:
    import trio

    from p2pchat.identity import KeyPair
    from p2pchat.multiaddr import Multiaddr
    from p2pchat.net.autonat import AutoNATConfig, open_autonat
    from p2pchat.net.host import HostConfig, open_host
    from p2pchat.net.identify import identify_peer

    config = HostConfig(listen=(Multiaddr.from_string(args.listen),))
    serve = args.command == "serve"
    autonat_config = AutoNATConfig(
        serve=serve,
        threshold=args.threshold,
        probe_interval=3600.0,
        dial_timeout=5.0,
        eager_asks=0,  # ``probe`` asks the servers itself, once each
    )
    with trio.move_on_after(args.lifetime):
        async with (
            open_host(KeyPair.generate(), config) as host,
            open_autonat(host, autonat_config) as autonat,
        ):
            if serve:
                emit("listening", addrs=[str(a) for a in host.addrs])
                async with trio.lowlevel.FdStream(os.dup(sys.stdin.fileno())) as stdin:
                    while await stdin.receive_some(4096):
                        pass
                return
            servers = []
            for text in args.server:
                conn = await host.connect(Multiaddr.from_string(text))
                await identify_peer(host, conn)
                servers.append(conn.remote_peer)
            status = await autonat.probe(servers)
            emit(
                "probed",
                status=status.value,
                counts=list(autonat.reachability.counts),
                observed=[str(a) for a in autonat.observed.all()],
                advertised=[str(a) for a in autonat.advertised_addrs()],
            )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("serve", "probe"):
        p = sub.add_parser(name)
        p.add_argument("--listen", required=True)
        p.add_argument("--lifetime", type=float, default=60.0)
        p.add_argument("--threshold", type=int, default=3)
        p.add_argument("--server", action="append", default=[])
    args = parser.parse_args(argv)
    import trio

    trio.run(run_node, args)


if __name__ == "__main__":
    main()
