"""``p2pchat conformance`` as a user runs it: exit status, table, JSON, JUnit XML."""

from __future__ import annotations

import json
import socket
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from cli.nodes import cli, running_node

from .broken import Fault, switch_on
from .broken import running_node as node_in_process

pytestmark = pytest.mark.timeout(120)


async def test_a_node_that_keeps_every_must_exits_0_with_json_and_junit(tmp_path: Path) -> None:
    junit = tmp_path / "report.xml"
    async with running_node(tmp_path / "node") as node:
        result = await cli(
            tmp_path / "me",
            "conformance",
            str(node.addr),
            "--suite",
            "ping",
            "--json",
            "--junit",
            str(junit),
        )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {c["id"] for c in report["cases"]} == {
        "ping.echo",
        "ping.several",
        "ping.close",
        "ping.short",
    }
    assert all(c["result"] == "pass" for c in report["cases"])
    assert {"id", "suite", "level", "result", "spec", "detail"} <= set(report["cases"][0])
    root = ET.fromstring(junit.read_bytes())
    assert [s.get("name") for s in root.findall("testsuite")] == ["ping"]
    assert root.find("testsuite").get("tests") == "4"  # type: ignore[union-attr]


async def test_a_failed_must_exits_1_and_the_table_says_what_came_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    switch_on(monkeypatch, Fault.IDENTIFY_WRONG_KEY)
    async with node_in_process(tmp_path / "node") as addr:
        result = await cli(tmp_path / "me", "conformance", str(addr), "--case", "identify.pub*")
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["identify.public-key", "MUST", "FAIL"]
    assert "the Noise handshake authenticated" in lines[1]
    assert lines[-1] == "1 cases: 0 passed, 1 failed, 0 skipped; 1 MUST failed"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_an_unreachable_target_exits_2_with_one_line(tmp_path: Path) -> None:
    addr = f"/ip4/127.0.0.1/tcp/{_closed_port()}"
    result = await cli(tmp_path, "conformance", addr, "--timeout", "2")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"p2pchat: error: cannot connect to {addr}")
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    "args",
    [
        ["/ip4/127.0.0.1/tcp/1", "--suite", "kad"],
        ["not-a-multiaddr"],
        ["/ip4/127.0.0.1/tcp/1", "--case", "no-such-case"],
        ["/ip4/127.0.0.1/tcp/1", "--timeout", "0"],
    ],
)
async def test_a_usage_error_exits_2_with_one_line(tmp_path: Path, args: list[str]) -> None:
    result = await cli(tmp_path, "conformance", *args)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "error" in result.stderr
