"""Signed peer records with py-libp2p 0.8.1, both ways (specs/peer-record.md)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Final

import pytest

from p2pchat.identity import KeyPair
from p2pchat.multiaddr import Multiaddr
from p2pchat.records import make_peer_record, open_peer_record

pytestmark = pytest.mark.interop

SCRIPT: Final = Path(__file__).resolve().parents[2] / "tools" / "interop" / "pylibp2p_record.py"


def _python() -> str:
    python = os.environ.get("P2PCHAT_INTEROP_PYTHON", "")
    if not python or not Path(python).exists():
        pytest.skip("P2PCHAT_INTEROP_PYTHON names no py-libp2p interpreter (make unit sets it)")
    return python


def _run(*args: str) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        [_python(), str(SCRIPT), *args], capture_output=True, text=True, timeout=60, check=False
    )
    return done.returncode, json.loads(done.stdout.splitlines()[-1])


def test_we_open_a_record_py_libp2p_sealed() -> None:
    seed = os.urandom(32)
    code, made = _run("make", seed.hex(), "42", "/ip4/127.0.0.1/tcp/4001", "/ip6/::1/tcp/4002")
    assert code == 0, made
    record, _ = open_peer_record(bytes.fromhex(made["envelope"]))
    assert str(record.peer) == made["peer"] == str(KeyPair.from_seed(seed).peer_id)
    assert record.seq == 42
    assert [str(a) for a in record.addresses] == ["/ip4/127.0.0.1/tcp/4001", "/ip6/::1/tcp/4002"]


def test_py_libp2p_opens_a_record_we_sealed() -> None:
    pair = KeyPair.generate()
    addrs = [Multiaddr.from_string("/ip4/127.0.0.1/tcp/4001")]
    code, opened = _run("open", make_peer_record(pair, 9, addrs).encode().hex())
    assert code == 0, opened
    assert opened == {"peer": str(pair.peer_id), "seq": 9, "addrs": ["/ip4/127.0.0.1/tcp/4001"]}


def test_py_libp2p_refuses_a_record_we_forged() -> None:
    pair = KeyPair.generate()
    sealed = bytearray(make_peer_record(pair, 9, []).encode())
    sealed[-1] ^= 1  # the last byte of the signature
    code, opened = _run("open", bytes(sealed).hex())
    assert code == 1
    assert "error" in opened
