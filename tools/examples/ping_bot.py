"""A bot that answers ``!ping`` with ``pong`` in a group, driving a running node through its
control socket with :mod:`p2pchat.client` (the same code under trio or asyncio).

    .venv/bin/python tools/examples/ping_bot.py DATA_DIR GROUP [--asyncio] [--count N]

It prints ``ready`` once subscribed, then one line per answer; with ``--count`` it stops after
that many answers.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import trio

import p2pchat.client


async def run(data_dir: Path, group: str, count: int | None) -> None:
    async with (
        p2pchat.client.connect(data_dir) as node,
        node.subscribe(group) as messages,
    ):
        print("ready", flush=True)
        answered = 0
        async for message in messages:
            if message.ratified and not message.from_me and message.text == "!ping":
                sent = await node.send(group, "pong")  # returns once ratified
                answered += 1
                print(f"pong to {message.author} ({sent['status']})", flush=True)
                if count is not None and answered >= count:
                    return


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("group")
    parser.add_argument("--asyncio", action="store_true", help="run under asyncio, not trio")
    parser.add_argument("--count", type=int, default=None, help="stop after N answers")
    args = parser.parse_args()
    try:
        if args.asyncio:
            asyncio.run(run(args.data_dir, args.group, args.count))
        else:
            trio.run(run, args.data_dir, args.group, args.count)
    except p2pchat.client.ControlError as exc:
        print(f"ping_bot: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
