"""``p2pchat dht`` and the reachability lines of ``p2pchat status``, against a real node."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.nodes import cli, ok, running_node
from p2pchat.identity import KeyPair

pytestmark = pytest.mark.timeout(90)


async def test_dht_commands_against_a_node_with_the_dht_on(tmp_path: Path) -> None:
    data = tmp_path / "node"
    data.mkdir(mode=0o700)
    (data / "config.toml").write_text('[dht]\nenabled = true\nmode = "server"\n')
    async with running_node(data):
        status = (await ok(data, "dht", "status")).stdout
        assert "dht:       server (configured: server)" in status
        assert "reachable: unknown" in status
        node_status = (await ok(data, "status")).stdout
        assert "dht:       server" in node_status
        assert "reachable: unknown" in node_status
        nobody = KeyPair.generate().peer_id
        missing = await cli(data, "dht", "find-peer", str(nobody))
        assert (missing.returncode, missing.stdout) == (1, f"{nobody}: not found in the DHT\n")
        bad = await cli(data, "dht", "providers", "zz")
        assert bad.returncode == 1
        assert bad.stderr.count("\n") == 1
        assert "the key must be hex" in bad.stderr
        assert (await ok(data, "dht", "providers", "1220" + "00" * 32)).stdout == (
            "no providers found\n"
        )


async def test_dht_status_says_when_the_dht_is_off(tmp_path: Path) -> None:
    data = tmp_path / "node"
    async with running_node(data):
        out = (await ok(data, "dht", "status")).stdout
        assert "dht:       off (set [dht] enabled = true in the config)" in out
        refused = await cli(data, "dht", "find-peer", str(KeyPair.generate().peer_id))
        assert refused.returncode == 1
        assert "the DHT is off" in refused.stderr
