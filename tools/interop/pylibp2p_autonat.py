"""A py-libp2p 0.8.1 AutoNAT v1 peer (``/libp2p/autonat/1.0.0``), driven as a subprocess by
tests/interop/test_autonat.py.

Runs only in the interop virtualenv (see pylibp2p_peer.py and pylibp2p_service.py)::

    $P2PCHAT_INTEROP_PYTHON tools/interop/pylibp2p_autonat.py serve
    $P2PCHAT_INTEROP_PYTHON tools/interop/pylibp2p_autonat.py ask ADDR

``serve`` answers dial-back requests (py-libp2p's ``AutoNATService``): it prints ``listening``
and runs until stdin reaches EOF or ``--lifetime``. ``ask`` connects to ADDR, asks it to dial
this host back at its listen address and prints ``answer`` (``status``: the ResponseStatus
number, ``addr``: the address reported reached). Errors print ``{"event": "error", ...}``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from libp2p.host.autonat.autonat import AutoNATService
from multiaddr import Multiaddr
from pylibp2p_peer import emit
from pylibp2p_service import common_options, parse_commands, run_main, serve_or_ask


@asynccontextmanager
async def serve(host: Any) -> AsyncIterator[None]:
    AutoNATService(host, serve=True)
    yield


async def ask(host: Any, info: Any) -> None:
    service = AutoNATService(host, serve=False)
    status, addr = await service.query_server(info.peer_id)
    emit("answer", status=int(status), addr=str(Multiaddr(addr)) if addr else None)


async def run(args: argparse.Namespace) -> int:
    return await serve_or_ask(args, max_conns_per_peer=1, serve=serve, ask=ask)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    commands = [
        ("serve", "answer dial-back requests", False),
        ("ask", "ask ADDR to dial us back", True),
    ]
    return parse_commands(argv, __doc__, common_options(), commands)


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(run, parse_args, argv)


if __name__ == "__main__":
    sys.exit(main())
