"""The names a handler author needs are exported (specs/plugins.md "Handlers without traps"),
and ``import p2pchat`` alone stays cheap (the CLI imports it for ``--version``)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

EXPORTS = {
    "p2pchat": [
        "KeyPair",
        "PeerID",
        "Multiaddr",
        "Host",
        "open_host",
        "MuxedStream",
        "HandlerExistsError",
        "ChatNode",
        "ChatMessage",
        "open_chat_node",
        "open_store",
        "Dispatcher",
        "Handler",
        "QueryContext",
        "Refusal",
        "install_chat",
        "ChatClient",
        "open_chat",
        "PluginContext",
        "P2PChatError",
    ],
    "p2pchat.net": ["Host", "open_host", "MuxedStream", "StreamHandler", "HandlerExistsError"],
    "p2pchat.chat": [
        "Dispatcher",
        "Handler",
        "QueryContext",
        "Refusal",
        "install_chat",
        "ChatClient",
        "open_chat",
        "QueryRefusedError",
        "ChatNode",
    ],
    "p2pchat.client": ["connect", "Client", "Message", "RemoteCommandError"],
}


@pytest.mark.parametrize("module", sorted(EXPORTS))
def test_the_names_a_handler_author_needs_are_exported(module: str) -> None:
    loaded = importlib.import_module(module)
    missing = [name for name in EXPORTS[module] if getattr(loaded, name, None) is None]
    assert missing == []


def test_importing_p2pchat_loads_no_layer() -> None:
    code = "import json, sys, p2pchat\nprint(json.dumps(sorted(sys.modules)))\n"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = [m for m in json.loads(done.stdout) if m.startswith("p2pchat.") or m == "trio"]
    assert loaded == []


def test_an_unknown_name_is_an_attribute_error() -> None:
    import p2pchat

    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = p2pchat.Nope
