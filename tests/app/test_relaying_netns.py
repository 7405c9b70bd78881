"""Two members behind NATs (tools/holepunch_node.py ``two_nats``: namespaces made for this test
only), each a ``p2pchat node`` with ``[relay] hole_punch``: they meet through a relay node in
the public namespace, form a group and ratify a message over the relayed connection; DCUtR then
gives them a direct connection (its remote address is the other router's) over which they
ratify again. The nodes are driven through their control sockets (the data dirs are shared
across namespaces). Skipped, with the reason, where namespaces or nftables are missing."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Final

import pytest

from p2pchat.app import client
from p2pchat.app.control import ControlError

TOOLS: Final = Path(__file__).resolve().parents[2] / "tools"
sys.path.insert(0, str(TOOLS))

from holepunch_node import (  # noqa: E402
    HOME_ADDRS,
    RELAY_ADDR,
    WAN_ADDRS,
    chat_node,
    nat_unavailable_reason,
    two_nats,
)

pytestmark = [pytest.mark.timeout(150), pytest.mark.slow]

DEADLINE: Final = 40.0


@pytest.fixture(scope="module")
def nat_ok() -> None:
    reason = nat_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)


def _wait(what: str, check: Callable[[], Any], deadline: float = DEADLINE) -> Any:
    """``check()``'s first true value, polled for at most ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            value = check()
        except ControlError:
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def node(
    namespace: str,
    data_dir: Path,
    config: str,
    *,
    autonat: bool = False,
    bootstrap: Sequence[str] = (),
) -> Iterator[Path]:
    """A node in ``namespace`` (see ``chat_node``), once it answers on its control socket."""
    with chat_node(namespace, data_dir, config, autonat=autonat, bootstrap=bootstrap):
        _wait(f"the node in {namespace}", lambda: client.call(data_dir, "status"))
        yield data_dir


def _peer_entry(data_dir: Path, peer: str) -> dict[str, Any] | None:
    for entry in client.call(data_dir, "peers")["connected"]:
        if entry["peer_id"] == peer:
            return dict(entry)
    return None


@pytest.mark.usefixtures("nat_ok")
def test_members_behind_nats_ratify_through_the_relay_then_directly(tmp_path: Path) -> None:
    with two_nats() as net, ExitStack() as stack:
        relay = stack.enter_context(
            node(net.public, tmp_path / "r",
                 f'[node]\nlisten = ["/ip4/{RELAY_ADDR}/tcp/4001"]\n[relay]\nenabled = true')
        )  # fmt: skip
        relay_id = client.call(relay, "status")["peer_id"]
        relay_addr = f"/ip4/{RELAY_ADDR}/tcp/4001/p2p/{relay_id}"
        a = stack.enter_context(
            node(net.homes[0], tmp_path / "a",
                 f'[node]\nlisten = ["/ip4/{HOME_ADDRS[0]}/tcp/4002"]\n'
                 f'[relay]\nhole_punch = true\nreserve = ["{relay_addr}"]')
        )  # fmt: skip
        b = stack.enter_context(
            node(net.homes[1], tmp_path / "b",
                 f'[node]\nlisten = ["/ip4/{HOME_ADDRS[1]}/tcp/4003"]\n[relay]\nhole_punch = true')
        )  # fmt: skip
        a_id = client.call(a, "status")["peer_id"]
        b_id = client.call(b, "status")["peer_id"]
        circuit = _wait(
            "a's reservation",
            lambda: [x for x in client.call(a, "status")["advertised"] if "p2p-circuit" in x],
        )[0]
        client.call(b, "connect", peer=relay_addr)
        client.call(b, "connect", peer=f"{circuit}/p2p/{a_id}")

        created = client.call(a, "group.create", name="behind-nats")
        group = created["group_id"]
        client.call(a, "group.invite", group=group, peer=b_id)
        client.call(b, "group.join", group=group, via=f"{circuit}/p2p/{a_id}")
        first = client.call(b, "send", group=group, text="through the relay")
        assert first["status"] == "ratified"

        direct = _wait(
            "a direct connection",
            lambda: (e := _peer_entry(b, a_id)) is not None and e["via"] == "direct" and e,
        )
        assert direct["addr"].startswith(f"/ip4/{WAN_ADDRS[0]}/tcp/4002")  # a's router
        second = client.call(b, "send", group=group, text="directly")
        assert second["status"] == "ratified"
        punches = client.call(a, "status")["relay"]["hole_punches"]
        assert punches["upgraded"] == 1


@pytest.mark.usefixtures("nat_ok")
def test_a_member_behind_a_nat_reserves_on_a_relay_by_itself(tmp_path: Path) -> None:
    """No ``[relay] reserve``: the member behind NAT A knows three public nodes (one of them a
    relay); AutoNAT's dial-backs to its router are dropped, so it is private, and it reserves on
    the relay by itself; the member behind NAT B reaches it through the relay."""
    with two_nats() as net, ExitStack() as stack:
        public = []
        for i, port in enumerate((4001, 4004, 4005)):
            relay = "\n[relay]\nenabled = true" if i == 0 else ""
            data = stack.enter_context(
                node(net.public, tmp_path / f"p{i}",
                     f'[node]\nlisten = ["/ip4/{RELAY_ADDR}/tcp/{port}"]{relay}', autonat=True)
            )  # fmt: skip
            peer = client.call(data, "status")["peer_id"]
            public.append(f"/ip4/{RELAY_ADDR}/tcp/{port}/p2p/{peer}")
        a = stack.enter_context(
            node(net.homes[0], tmp_path / "a",
                 f'[node]\nlisten = ["/ip4/{HOME_ADDRS[0]}/tcp/4002"]',
                 autonat=True, bootstrap=public)
        )  # fmt: skip
        b = stack.enter_context(
            node(net.homes[1], tmp_path / "b",
                 f'[node]\nlisten = ["/ip4/{HOME_ADDRS[1]}/tcp/4003"]')
        )  # fmt: skip
        a_id = client.call(a, "status")["peer_id"]
        # AutoNAT probes once it knows servers (within 30 s), dial-backs time out (15 s).
        circuit = _wait(
            "a's own reservation",
            lambda: [x for x in client.call(a, "status")["advertised"] if "p2p-circuit" in x],
            deadline=100.0,
        )[0]
        assert client.call(a, "status")["reachability"] == "private"
        assert public[0].split("/p2p/")[1] in circuit  # the relay, not the other two
        client.call(b, "connect", peer=f"{circuit}/p2p/{a_id}")
        entry = _peer_entry(b, a_id)
        assert entry is not None
        assert entry["via"] == "relayed"
