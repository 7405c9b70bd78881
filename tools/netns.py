"""Network namespaces with NAT routers, for the tools that run nodes behind NATs
(tools/autonat_node.py ``nat_internet``, tools/holepunch_node.py ``two_nats``).

Built on tools/mdns_node.py's ``ip`` runner and namespace check. :func:`namespaces` makes
namespaces (loopback up) whose names carry the process id and a random token, and deletes them
all when its ``with`` block ends, whatever happens; :func:`veth` links two of them;
:func:`make_router` turns one into a router: IPv4 forwarding on and an nftables rule set.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Final

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mdns_node import NetnsError, _ip, netns_unavailable_reason

#: Seconds one command run inside a namespace (sysctl, nft) may take.
NFT_TIMEOUT: Final = 10.0

__all__ = [
    "NFT_TIMEOUT",
    "NetnsError",
    "in_namespace",
    "ip",
    "make_router",
    "namespaces",
    "nat_unavailable_reason",
    "run_in",
    "veth",
]

ip = _ip


def nat_unavailable_reason() -> str | None:
    """Why namespaces with a NAT cannot be built here (None if they can)."""
    reason = netns_unavailable_reason()
    if reason is not None:
        return reason
    if shutil.which("nft") is None:
        return "the 'nft' command (nftables) is not installed: run `make netns-deps`"
    return None


def in_namespace(namespace: str, argv: Sequence[str]) -> list[str]:
    """``argv`` run inside ``namespace``."""
    return ["ip", "netns", "exec", namespace, *argv]


def run_in(namespace: str, *argv: str, stdin: str | None = None) -> None:
    """Run ``argv`` inside ``namespace`` within :data:`NFT_TIMEOUT`.

    Raises:
        NetnsError: it failed.
    """
    done = subprocess.run(
        in_namespace(namespace, argv),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=NFT_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        raise NetnsError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")


@contextmanager
def namespaces(prefix: str, roles: Sequence[str]) -> Iterator[dict[str, str]]:
    """One namespace per role, named ``<prefix>-<role>-<pid>-<token>``, loopback up; all are
    deleted on exit.

    Raises:
        NetnsError: a command failed (what was made is deleted).
    """
    tag = f"{os.getpid()}-{secrets.token_hex(2)}"
    names = {role: f"{prefix}-{role}-{tag}" for role in roles}
    made: list[str] = []
    try:
        for name in names.values():
            ip("netns", "add", name)
            made.append(name)
            ip("-n", name, "link", "set", "lo", "up")
        yield names
    finally:
        for name in reversed(made):
            try:
                ip("netns", "del", name)
            except (NetnsError, OSError, subprocess.TimeoutExpired):
                pass


def veth(a: str, a_name: str, b: str, b_name: str) -> None:
    """A veth pair: ``a_name`` in namespace ``a``, ``b_name`` in ``b`` (both still down)."""
    ip("-n", a, "link", "add", a_name, "type", "veth", "peer", "name", b_name, "netns", b)


def make_router(namespace: str, nft_rules: str) -> None:
    """IPv4 forwarding on in ``namespace`` and ``nft_rules`` loaded there."""
    run_in(namespace, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
    run_in(namespace, "nft", "-f", "-", stdin=nft_rules)
