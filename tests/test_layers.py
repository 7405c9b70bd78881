"""The layers show in the imports: a sans-IO core loads no trio, no sqlite3 and no driver."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest

import p2pchat.chat.core
import p2pchat.protocols

FORBIDDEN = ("trio", "sqlite3", "p2pchat.net", "p2pchat.chat.services", "p2pchat.chat.store")
TOP_LEVEL_CORES = (
    "p2pchat.errors",
    "p2pchat.identity",
    "p2pchat.multiaddr",
    "p2pchat.multibase",
    "p2pchat.protobuf",
    "p2pchat.varint",
    # The conformance suite's table and reports (its cases and runner use trio).
    "p2pchat.conformance",
    "p2pchat.conformance.registry",
    "p2pchat.conformance.report",
)


def _modules(package: object) -> list[str]:
    path = package.__path__  # type: ignore[attr-defined]
    prefix = package.__name__ + "."  # type: ignore[attr-defined]
    return sorted(m.name for m in pkgutil.walk_packages(path, prefix))


CORES = [*TOP_LEVEL_CORES, *_modules(p2pchat.protocols), *_modules(p2pchat.chat.core)]


def test_every_core_package_is_listed() -> None:
    assert "p2pchat.chat.core.engine" in CORES
    assert "p2pchat.chat.core.artifact" in CORES
    assert "p2pchat.protocols.noise" in CORES
    assert "p2pchat.protocols.yamux" in CORES
    assert "p2pchat.protocols.kad.lookup" in CORES
    assert "p2pchat.protocols.autonat" in CORES
    assert "p2pchat.protocols.relay.messages" in CORES
    assert "p2pchat.protocols.relay.state" in CORES
    assert "p2pchat.protocols.relay.voucher" in CORES
    assert "p2pchat.protocols.dcutr" in CORES


@pytest.mark.parametrize("module", CORES)
def test_importing_a_core_loads_no_driver(module: str) -> None:
    code = (
        "import importlib, json, sys\n"
        f"importlib.import_module({module!r})\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = set(json.loads(done.stdout))
    leaked = sorted(
        name for name in loaded if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)
    )
    assert leaked == [], f"importing {module} loads {leaked}"
