"""AutoNAT across a real (virtual) NAT: a node on the "internet" is public, a node behind an
nftables masquerade is private (tools/autonat_node.py ``nat_internet``: namespaces made for
this test only). Three AutoNAT servers and each client run as subprocesses
(``ip netns exec <ns> python tools/autonat_node.py``). Skipped, with the reason, where
namespaces or nftables are missing (``make netns-deps`` installs them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Final

import pytest

TOOLS: Final = Path(__file__).resolve().parents[2] / "tools"
sys.path.insert(0, str(TOOLS))

from autonat_node import PRIVATE_ADDR, NatInternet, nat_internet, nat_unavailable_reason  # noqa: E402
from mdns_node import NodeProcess, pump  # noqa: E402

pytestmark = [pytest.mark.timeout(120)]

NODE: Final = str(TOOLS / "autonat_node.py")
SERVERS: Final = 3
DEADLINE: Final = 40.0


@pytest.fixture(scope="module")
def nat_ok() -> None:
    reason = nat_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)


def _python() -> list[str]:
    """This interpreter, importing p2pchat from this tree's ``src``."""
    src = str(TOOLS.parent / "src")
    path = src + os.pathsep + os.environ.get("PYTHONPATH", "")
    return ["env", f"PYTHONPATH={path}", sys.executable]


def _probe(net: NatInternet, namespace: str, address: str, servers: list[str]) -> dict[str, object]:
    argv = [*_python(), NODE, "probe", "--listen", f"/ip4/{address}/tcp/0"]
    for server in servers:
        argv += ["--server", server]
    done = subprocess.run(
        net.command(namespace, argv), capture_output=True, timeout=DEADLINE, check=False
    )
    lines = done.stdout.decode().splitlines()
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    result: dict[str, object] = json.loads(lines[-1])
    return result


@pytest.mark.usefixtures("nat_ok")
def test_public_node_is_public_and_natted_node_is_private() -> None:
    with nat_internet(SERVERS + 1) as net:
        nodes = [
            NodeProcess(
                net.command(
                    net.public[i],
                    [*_python(), NODE, "serve", "--listen",
                     f"/ip4/{net.public_address(i)}/tcp/0"],
                ),
                label=f"server{i}",
            )
            for i in range(SERVERS)
        ]  # fmt: skip
        try:
            assert pump(nodes, lambda: all(n.first("listening") or n.eof for n in nodes), DEADLINE)
            servers = []
            for node in nodes:
                listening = node.first("listening")
                assert listening is not None, node.stop()
                servers.append(str(listening["addrs"][0]))
            public = _probe(net, net.public[SERVERS], net.public_address(SERVERS), servers)
            private = _probe(net, net.private, PRIVATE_ADDR, servers)
        finally:
            for node in nodes:
                node.kill()
    assert public["status"] == "public", public
    assert public["counts"] == [3, 0]
    assert private["status"] == "private", private
    assert private["counts"] == [0, 3]
    # The servers saw the NATed node at the router's address, never at its own.
    observed = private["observed"]
    assert isinstance(observed, list)
    assert observed
    assert all("/ip4/203.0.113.1/" in str(a) for a in observed)
