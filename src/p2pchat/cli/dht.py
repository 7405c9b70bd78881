"""``p2pchat dht find-peer ID | providers KEY | status``: the running node's DHT, one request
on the control socket each (specs/control.md "DHT")."""

from __future__ import annotations

import argparse
from typing import Final

from .common import Command, call


def cmd_dht(args: argparse.Namespace) -> int:
    """Run one ``dht`` action.

    Raises:
        ControlError: no node runs, or it refused (the DHT is off, a bad argument).
    """
    from .render import clean, print_json  # not at import: cli/entry.py imports this module

    action = args.dht_command
    if action == "find-peer":
        answer = call(args, "dht.peer", peer=args.peer)
        if args.json:
            print_json(answer)
        elif not answer["found"]:
            print(f"{clean(answer['peer_id'])}: not found in the DHT")
        else:
            for addr in answer["addrs"]:
                print(clean(addr))
        return 0 if answer["found"] else 1
    if action == "providers":
        answer = call(args, "dht.providers", key=args.key)
        if args.json:
            print_json(answer)
        elif not answer["providers"]:
            print("no providers found")
        for provider in [] if args.json else answer["providers"]:
            addrs = " ".join(clean(a) for a in provider["addrs"]) or "-"
            print(f"{clean(provider['peer_id'])}  {addrs}")
        return 0
    status = call(args, "dht.status")
    if args.json:
        print_json(status)
        return 0
    print(f"reachable: {clean(status['reachability'])}")
    if not status["enabled"]:
        print("dht:       off (set [dht] enabled = true in the config)")
        return 0
    print(f"dht:       {clean(status['mode'])} (configured: {clean(status['configured_mode'])})")
    print(f"routing:   {status['routing_table_size']} peers in {len(status['buckets'])} buckets")
    print(f"stored:    {status['records']} records, {status['providers']} provider records")
    print(f"providing: {status['provided_keys']} keys")
    print(f"requests:  {status['requests_sent']} sent, {status['requests_failed']} failed")
    for addr in status["bootstrap"]:
        print(f"bootstrap: {clean(addr)}")
    return 0


def add_parser(
    command: argparse.ArgumentParser,
    parser_class: type[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """The ``dht`` actions, under ``command`` (made by cli/entry.py)."""
    actions = command.add_subparsers(
        dest="dht_command", metavar="ACTION", parser_class=parser_class
    )
    actions.required = True
    p = actions.add_parser("find-peer", parents=[common], help="where a peer is, by its peer id")
    p.add_argument("peer", help="the peer id")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = actions.add_parser("providers", parents=[common], help="who provides a key (hex)")
    p.add_argument("key", help="the key, a multihash in hex")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = actions.add_parser("status", parents=[common], help="DHT mode, routing table, stores")
    p.add_argument("--json", action="store_true", help="print JSON")


COMMANDS: Final[dict[str, Command]] = {"dht": cmd_dht}
