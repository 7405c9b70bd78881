"""The commands that ask the running node about itself: ``status``, ``stop``, ``peers`` and
``connect``, each one request on the control socket (specs/control.md "Operations")."""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from typing import Final

from .common import Command, call, data_dir
from .render import clean, print_json


def cmd_status(args: argparse.Namespace) -> int:
    """Show the running node: peer ID, listen addresses, connected peers, groups.

    Raises:
        ControlError: no node runs, or it refused.
    """
    status = call(args, "status")
    if args.json:
        print_json(status)
        return 0
    print(f"peer id:   {status['peer_id']}")
    for addr in status["addrs"]:
        print(f"listening: {clean(addr)}")
    print(f"data dir:  {status['data_dir']} (pid {status['pid']})")
    print(f"peers:     {status['connected']} connected")
    print(f"groups:    {status['groups']}")
    print(f"mdns:      {'on' if status['mdns'] else 'off'}")
    print(f"reachable: {clean(str(status.get('reachability', 'unknown')))}")
    print(f"dht:       {clean(str(status.get('dht', 'off')))}")
    for addr in status.get("advertised", []):
        print(f"advertise: {clean(addr)}")
    for entry in status["bootstrap"]:
        print(f"bootstrap: {clean(entry)}")
    _print_relay(status.get("relay", {}))
    return 0


def _print_relay(relay: dict[str, object]) -> None:
    for line in relay_lines(relay):
        print(line)


def relay_lines(relay: Mapping[str, object]) -> list[str]:
    """The relay lines of ``status`` (specs/cli.md "Relay"): ``relay:`` on a relay, ``punched:``
    once hole punching (DCUtR) has something to tell, one ``reserved:`` per reservation."""
    lines = []
    if relay.get("serving"):
        lines.append(
            f"relay:     serving ({relay.get('reserved_here', 0)} reservations, "
            f"{relay.get('circuits', 0)} circuits)"
        )
    raw = relay.get("reservations", [])
    reservations = [h for h in raw if isinstance(h, dict)] if isinstance(raw, list) else []
    punches = relay.get("hole_punches")
    if isinstance(punches, dict):
        upgraded, failed = punches.get("upgraded", 0), punches.get("failed", 0)
        # A node that has punched nothing and holds no reservation (nobody can reach it
        # through a relay) has nothing to say about hole punching.
        if upgraded or failed or reservations:
            lines.append(f"punched:   {upgraded} direct, {failed} stayed relayed")
    for held in reservations:
        lines.append(
            f"reserved:  on {clean(str(held.get('relay')))} (expires in {held.get('expires_in')} s)"
        )
    return lines


def cmd_stop(args: argparse.Namespace) -> int:
    """Ask the running node to stop (as on SIGTERM).

    Raises:
        ControlError: no node runs.
    """
    call(args, "stop")
    print(f"stopping the node on {data_dir(args)}")
    return 0


def cmd_peers(args: argparse.Namespace) -> int:
    """List the connected peers, then the known ones that are not connected.

    Raises:
        ControlError: no node runs.
    """
    peers = call(args, "peers")
    if args.json:
        print_json(peers)
        return 0
    if not peers["connected"] and not peers["known"]:
        print("no peers yet (connect with: p2pchat connect MULTIADDR)")
    for peer in peers["connected"]:
        fields = (
            peer["peer_id"],
            peer["addr"] or "-",
            peer["direction"],
            str(peer.get("via", "direct")),
            peer["agent"],
        )
        print("  ".join(clean(f) for f in fields).rstrip())
    for peer in peers["known"]:
        seen = time.strftime("%Y-%m-%d %H:%M", time.localtime(peer["last_seen"] / 1000))
        addr = peer["addrs"][0] if peer["addrs"] else "-"
        print(f"{clean(peer['peer_id'])}  {clean(addr)}  not connected (last seen {seen})")
    return 0


def cmd_connect(args: argparse.Namespace) -> int:
    """Connect the running node to a peer.

    Raises:
        ControlError: no node runs, or the node could not connect (its reason).
    """
    answer = call(args, "connect", peer=args.peer)
    peer = clean(answer["peer_id"])
    if answer.get("already_connected"):
        via = answer.get("via")
        where = f" (via {clean(via)})" if isinstance(via, str) else ""
        print(f"already connected to {peer}{where}; no new connection was dialed")
    else:
        print(f"connected to {peer}")
    return 0


COMMANDS: Final[dict[str, Command]] = {
    "status": cmd_status,
    "stop": cmd_stop,
    "peers": cmd_peers,
    "connect": cmd_connect,
}
