"""Benchmark: what reading a long history costs: the fold (edits, deletes, reactions applied;
specs/chat.md §17), the names (§18), and the full-text index (app/reading.py) built and asked.

    python tools/bench_reading.py [--messages 20000] [--runs 5] [--json]

The history is made up in memory: a tenth of the messages are edits, a tenth reactions, one in
fifty deletes, and one in a hundred profiles, by 20 authors. Prints the median time of each step
and the peak memory of the fold (tracemalloc). The index is incremental: a search takes in what
the store holds beyond what it last read (``search_ms``: nothing new; the last figure: the last
100 messages arrived since). No network, no node.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import trio

from p2pchat.app.reading import Reading
from p2pchat.chat.core.packet import sha256
from p2pchat.chat.core.profiles import PROFILE, display_labels
from p2pchat.chat.core.refs import DELETE, EDIT, REACTION, Item, fold
from p2pchat.chat.node import ChatMessage
from p2pchat.identity import KeyPair

WORDS = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
]


def make_history(count: int) -> list[ChatMessage]:
    authors = [KeyPair.generate().peer_id for _ in range(20)]
    messages: list[ChatMessage] = []
    texts: list[int] = []
    for n in range(count):
        author = authors[n % len(authors)]
        kind, ref, content = "text", None, " ".join(WORDS[(n * k) % len(WORDS)] for k in (1, 3, 7))
        if texts and n % 10 == 3:
            kind, ref = EDIT, texts[-1]
            author = messages[ref].author
        elif texts and n % 10 == 6:
            kind, ref, content = REACTION, texts[n % len(texts)], "+1"
        elif texts and n % 50 == 9:
            kind, ref, content = DELETE, texts[-1], ""
            author = messages[ref].author
        elif n % 100 == 1:
            kind, content = PROFILE, f"member {n % 20}"
        messages.append(
            ChatMessage(
                group_id=bytes(32),
                message_hash=sha256(n.to_bytes(8, "big")),
                author=author,
                message_type=kind,
                mime="text/plain",
                time_stamp=1_700_000_000_000 + n,
                epoch=0,
                ref_hash=None if ref is None else messages[ref].message_hash,
                content=content.encode(),
                ratified=True,
            )
        )
        if kind == "text":
            texts.append(n)
    return messages


#: Messages that arrive after the index was built, taken in by the next search.
NEW = 100


def timed(fn: Any, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    history = make_history(args.messages)
    owner = history[0].author
    items = [Item(m.message_hash, m.author, m.message_type, m.ref_hash, m.content) for m in history]
    fold_s = timed(lambda: fold(items, owner), args.runs)
    tracemalloc.start()
    fold(items, owner)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    names_s = timed(
        lambda: display_labels((m.author, m.content) for m in history if m.message_type == PROFILE),
        args.runs,
    )
    with tempfile.TemporaryDirectory() as tmp:
        reading = Reading(Path(tmp))
        held = history[: len(history) - NEW]  # the rest arrives between two searches

        async def since(seq: int) -> list[tuple[int, ChatMessage]]:
            return [(n, m) for n, m in enumerate(held, start=1) if n > seq]

        groups = [(bytes(32), since)]

        async def build() -> float:
            start = time.perf_counter()
            await reading.search(groups, "bravo", 20)  # first search: builds the index
            return time.perf_counter() - start

        async def ask() -> float:
            start = time.perf_counter()
            await reading.search(groups, "bravo AND kilo", 20)  # index up to date
            return time.perf_counter() - start

        build_s = trio.run(build)
        ask_s = statistics.median(trio.run(ask) for _ in range(args.runs))
        held = history
        after_new_s = trio.run(ask)  # takes in the NEW messages first
    figures = {
        "messages": args.messages,
        "fold_ms": round(fold_s * 1000, 2),
        "fold_peak_kib": round(peak / 1024, 1),
        "names_ms": round(names_s * 1000, 2),
        "index_build_ms": round(build_s * 1000, 2),
        "search_ms": round(ask_s * 1000, 2),
        f"search_after_{NEW}_new_ms": round(after_new_s * 1000, 2),
    }
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:>16}: {value}")


if __name__ == "__main__":
    main()
